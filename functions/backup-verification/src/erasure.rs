//! Erased users stay erased in a restore (GDPR Art. 17): a backup taken before an erasure still
//! holds the person. The erasure ledger of the live database names every erased person only by
//! pseudonym ([`pseudonym`], the value privacy's `erasure::subject_hash` writes); the drill
//! hashes every user id found in the restored copy the same way in SQL, erases the matches
//! again and then looks again: a subject still present fails the drill.
//!
//! Which tables: every base table with a `user_id` column, plus `users.id`, read from the
//! restored copy's own `information_schema`, rather than privacy's declared map. The restored
//! schema is the backup's, which may be older or newer than the code's map; reading it covers
//! exactly the tables the copy has, and a table added without an entry in the map is re-cleaned
//! all the same. (Privacy's test keeps that map equal to the same `information_schema` set, and
//! it declares no table kept; depending on privacy would also bring its Firestore and Redis
//! clients into this job.) Pending outbox events carry the id in their payload and go too,
//! as in privacy's erasure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// The ledger's pseudonym of a person: hex SHA-256 of `dta-wide-erasure:{id}`, as privacy's
/// erasure writes it into `erasure_ledger.subject_hash`.
pub fn pseudonym(id: uuid::Uuid) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(format!("dta-wide-erasure:{id}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`pseudonym`] in SQL over a text id column `id` (`uuid::text` is the same lowercase,
/// hyphenated form).
const PSEUDONYM_SQL: &str = "encode(sha256(convert_to('dta-wide-erasure:' || id, 'UTF8')), 'hex')";

/// What the re-clean found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reclean {
    /// Subjects in the live ledger.
    pub ledger_subjects: usize,
    /// Of those, how many the restored copy still held (and were re-cleaned).
    pub found: usize,
    /// Rows deleted from the restored copy.
    pub rows_removed: u64,
    /// Subjects still present after re-cleaning (must be 0).
    pub remaining: usize,
    /// Where rows of erased subjects are left, table → rows.
    pub left_in: BTreeMap<String, i64>,
}

/// The pseudonyms of every erasure requested, from the live database's ledger.
pub async fn ledger(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT subject_hash FROM erasure_ledger ORDER BY 1")
        .fetch_all(pool)
        .await
}

/// `(table, column)` of every id column naming a user, tables as `quote_ident` spells them.
async fn id_columns(conn: &mut PgConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT quote_ident(c.table_schema) || '.' || quote_ident(c.table_name), quote_ident(c.column_name)
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE t.table_type = 'BASE TABLE'
           AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
           AND (c.column_name = 'user_id' OR (c.table_name = 'users' AND c.column_name = 'id'))
         ORDER BY 1, 2",
    )
    .fetch_all(conn)
    .await
}

/// The ids (as text) of the ledger's subjects that have a row anywhere in `columns`. Names come
/// from the catalog, quoted by `quote_ident`, never from input.
async fn subjects_present(
    conn: &mut PgConnection,
    columns: &[(String, String)],
    ledger: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    if columns.is_empty() || ledger.is_empty() {
        return Ok(Vec::new());
    }
    let union = columns
        .iter()
        .map(|(table, column)| format!("SELECT {column}::text AS id FROM {table}"))
        .collect::<Vec<_>>()
        .join(" UNION ");
    let sql = format!(
        "SELECT id FROM ({union}) ids WHERE id IS NOT NULL AND {PSEUDONYM_SQL} = ANY($1) ORDER BY 1"
    );
    sqlx::query_scalar(&sql).bind(ledger).fetch_all(conn).await
}

/// The tables in an order that deletes every referencing table before the table it references
/// (foreign keys among them); tables in a cycle keep their catalog order at the end.
async fn deletion_order(
    conn: &mut PgConnection,
    tables: &BTreeSet<String>,
) -> Result<Vec<String>, sqlx::Error> {
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT quote_ident(cn.nspname) || '.' || quote_ident(cc.relname),
                quote_ident(pn.nspname) || '.' || quote_ident(pc.relname)
         FROM pg_constraint k
         JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
         JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE k.contype = 'f'",
    )
    .fetch_all(conn)
    .await?;
    let mut left: Vec<String> = tables.iter().cloned().collect();
    let mut order = Vec::new();
    while !left.is_empty() {
        let referenced = |t: &String| {
            edges
                .iter()
                .any(|(child, parent)| parent == t && child != t && left.contains(child))
        };
        let (ready, rest): (Vec<String>, Vec<String>) =
            left.iter().cloned().partition(|t| !referenced(t));
        if ready.is_empty() {
            order.extend(rest);
            break;
        }
        order.extend(ready);
        left = rest;
    }
    Ok(order)
}

/// Erases every ledger subject the restored copy holds, then looks again.
pub async fn reclean(conn: &mut PgConnection, ledger: &[String]) -> Result<Reclean, sqlx::Error> {
    let columns = id_columns(conn).await?;
    let found = subjects_present(conn, &columns, ledger).await?;
    let mut out = Reclean {
        ledger_subjects: ledger.len(),
        found: found.len(),
        ..Default::default()
    };
    if found.is_empty() {
        return Ok(out);
    }
    let tables: BTreeSet<String> = columns.iter().map(|(t, _)| t.clone()).collect();
    let order = deletion_order(conn, &tables).await?;
    let outbox: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = 'public' AND table_name = 'outbox'
                          AND column_name = 'payload' AND data_type = 'jsonb')",
    )
    .fetch_one(&mut *conn)
    .await?;

    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for table in &order {
        for (_, column) in columns.iter().filter(|(t, _)| t == table) {
            let sql = format!("DELETE FROM {table} WHERE {column}::text = ANY($1)");
            out.rows_removed += sqlx::query(&sql)
                .bind(&found)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
    }
    if outbox {
        out.rows_removed +=
            sqlx::query("DELETE FROM public.outbox WHERE payload->'data'->>'user_id' = ANY($1)")
                .bind(&found)
                .execute(&mut *tx)
                .await?
                .rows_affected();
    }
    tx.commit().await?;

    // The verification pass: the ledger's subjects are looked for again from scratch.
    let mut remaining: BTreeSet<String> = subjects_present(conn, &columns, ledger)
        .await?
        .into_iter()
        .collect();
    for (table, column) in &columns {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column}::text = ANY($1)");
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(&found)
            .fetch_one(&mut *conn)
            .await?;
        if n > 0 {
            *out.left_in.entry(table.clone()).or_default() += n;
        }
    }
    if outbox {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT payload->'data'->>'user_id' FROM public.outbox
             WHERE payload->'data'->>'user_id' = ANY($1)",
        )
        .bind(&found)
        .fetch_all(&mut *conn)
        .await?;
        if !ids.is_empty() {
            out.left_in.insert("public.outbox".into(), ids.len() as i64);
        }
        remaining.extend(ids);
    }
    out.remaining = remaining.len();
    Ok(out)
}

impl Reclean {
    /// The drill's finding when an erased subject is still in the restored copy.
    pub fn failure(&self) -> Option<String> {
        (self.remaining > 0).then(|| {
            format!(
                "{} erased subject(s) still present in the restore after re-cleaning (rows left in {:?})",
                self.remaining,
                self.left_in
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pseudonym_is_the_sha256_of_the_label_and_the_id() {
        // SHA-256 of "dta-wide-erasure:00000000-0000-0000-0000-000000000000".
        assert_eq!(
            super::pseudonym(uuid::Uuid::nil()),
            "a041a6bac8028eb7074f728f2e9c07b5df73290f1604a426c8ec38fbe2c77df5"
        );
    }
}
