//! The production drill on Cloud SQL: the managed-backup check, then the newest successful
//! backup run restored into the scratch instance through the Admin API, then the checks of the
//! local drill that need no dump file, on the restored copy: every table of the source present,
//! row counts, the schema's invariants, erased users absent.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};

use crate::cloudsql::{self, CloudSqlAdmin, RestoreSettings};
use crate::drill::{DrillError, Limits, Verification};

/// What the managed drill needs besides the Admin API.
#[derive(Debug, Clone)]
pub struct ManagedDrill<'a> {
    /// The live database (expected tables, foreign keys).
    pub source_url: &'a str,
    /// The restored database on the scratch instance.
    pub scratch_url: &'a str,
    /// Scratch instance, deadline, poll interval.
    pub restore: &'a RestoreSettings,
    /// Age and RTO limits.
    pub limits: &'a Limits,
    /// The live erasure ledger's pseudonyms.
    pub ledger: &'a [String],
}

/// Runs the check and, when it passes, the restore drill. Findings go into the returned
/// verification's `failures`; an error means the drill itself could not run.
pub async fn verify(
    admin: &impl CloudSqlAdmin,
    drill: &ManagedDrill<'_>,
    now: DateTime<Utc>,
) -> Result<Verification, DrillError> {
    let mut v = Verification {
        backup_id: "none".into(),
        ..Default::default()
    };
    let managed = match cloudsql::verify(admin, now, drill.limits.max_age).await {
        Ok(managed) => managed,
        Err(e) => {
            v.failures.push(e.to_string());
            return Ok(v);
        }
    };
    let Some(run) = managed.newest.clone() else {
        v.failures = managed.failures;
        return Ok(v);
    };
    v.backup_id = run.id.clone();
    v.taken_at = run.end_time;
    if let Some(end) = run.end_time {
        v.age_hours = (now - end).num_seconds() as f64 / 3600.0;
    }
    if !managed.failures.is_empty() {
        v.failures = managed.failures;
        v.failures
            .push("restore drill not run: the managed-backup check failed".into());
        return Ok(v);
    }

    // Before anything is written: the scratch database must not be the source (a re-clean
    // there would delete live rows, and a comparison with itself proves nothing). Reachable now
    // (not on the very first night), it gets a marker that a real restore overwrites.
    let marker = match prepare_scratch(drill).await? {
        Ok(marker) => marker,
        Err(refusal) => {
            v.failures.push(refusal);
            return Ok(v);
        }
    };

    let restored = match cloudsql::restore(admin, &run, drill.restore).await {
        Ok(restored) => restored,
        Err(e) => {
            v.failures.push(e.to_string());
            return Ok(v);
        }
    };
    let restore = restored.elapsed;
    v.restore_operation = Some(restored.operation);
    v.restore_secs = Some(restore.as_secs_f64());
    if restore > drill.limits.rto {
        v.failures.push(format!(
            "restore took {:.0} s, more than the RTO of {} s",
            restore.as_secs_f64(),
            drill.limits.rto.as_secs()
        ));
    }

    if same_database(drill.source_url, drill.scratch_url).await? {
        v.failures.push(SAME_DATABASE.into());
        return Ok(v);
    }
    if let Some(token) = &marker
        && marker_present(drill.scratch_url, token).await?
    {
        v.failures.push(format!(
            "restore operation {} reported DONE, but the scratch database still holds the marker written before the restore: nothing was restored",
            v.restore_operation.as_deref().unwrap_or("")
        ));
        return Ok(v);
    }

    let clock = std::time::Instant::now();
    let mut source = PgConnection::connect(drill.source_url).await?;
    let expected = crate::drill::tables(&mut source).await?;
    let foreign_keys: i64 = sqlx::query_scalar(crate::drill::FOREIGN_KEYS_SQL)
        .fetch_one(&mut source)
        .await?;
    let _ = source.close().await;

    let mut conn = PgConnection::connect(drill.scratch_url).await?;
    let restored_tables = crate::drill::tables(&mut conn).await?;
    for table in &expected {
        if !restored_tables.contains(table) {
            v.failures
                .push(format!("table {table} missing from the restored database"));
            continue;
        }
        // The name comes from the catalog, quoted by `quote_ident`.
        let rows: i64 = sqlx::query_scalar(&["SELECT count(*) FROM ", table].concat())
            .fetch_one(&mut conn)
            .await?;
        v.tables += 1;
        v.rows += rows;
    }
    for table in restored_tables.iter().filter(|t| !expected.contains(t)) {
        v.failures.push(format!(
            "table {table} restored but not in the source database"
        ));
    }
    // The source moved on since the backup, so counts are not compared table by table; a
    // restore without a single row while the source has rows is a bad backup.
    if v.rows == 0 {
        let mut source = PgConnection::connect(drill.source_url).await?;
        let mut source_rows = 0i64;
        for table in &expected {
            let sql = ["SELECT count(*) FROM ", table].concat();
            source_rows += sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&mut source)
                .await?;
        }
        let _ = source.close().await;
        if source_rows > 0 {
            v.failures.push(format!(
                "the restored database holds no rows, the source {source_rows}"
            ));
        }
    }
    for finding in crate::drill::invariants(&mut conn, foreign_keys).await? {
        v.failures.push(finding);
    }
    v.reclean_erased(&mut conn, drill.ledger).await?;
    let _ = conn.close().await;
    v.compare_secs = clock.elapsed().as_secs_f64();
    Ok(v)
}

const SAME_DATABASE: &str = "RESTORE_CHECK_DATABASE_URL reaches the source database itself: refusing to check and re-clean it as the restored copy";

/// The marker table a restore must overwrite.
const MARKER_TABLE: &str = "public.backup_verification_marker";

/// Whether `scratch_url` reaches the very database `source_url` does (same server and
/// database, whatever the URLs say: host names, poolers, proxies). The source session holds an
/// advisory lock with a random key; `pg_locks` is the server's, and names the database. A
/// restored copy cannot fake it: locks are not part of a backup, while the system identifier
/// of a Cloud SQL restore is the source's.
pub async fn same_database(source_url: &str, scratch_url: &str) -> Result<bool, DrillError> {
    let key = uuid::Uuid::new_v4().as_u128();
    let (a, b) = (
        i64::from((key as u32) & 0x7fff_ffff),
        i64::from(((key >> 32) as u32) & 0x7fff_ffff),
    );
    let mut source = PgConnection::connect(source_url).await?;
    sqlx::query("SELECT pg_advisory_lock($1::int4, $2::int4)")
        .bind(a)
        .bind(b)
        .execute(&mut source)
        .await?;
    let seen = async {
        let mut scratch = PgConnection::connect(scratch_url).await?;
        let seen: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                            WHERE locktype = 'advisory' AND granted AND objsubid = 2
                              AND classid = $1::int8::oid AND objid = $2::int8::oid
                              AND database = (SELECT oid FROM pg_database
                                              WHERE datname = current_database()))",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&mut scratch)
        .await?;
        let _ = scratch.close().await;
        Ok::<_, sqlx::Error>(seen)
    }
    .await;
    let _ = source.close().await;
    Ok(seen?)
}

/// Before the restore: refuses a scratch URL that reaches the source (`Ok(Err(reason))`), and
/// writes a marker into a reachable scratch database; `None` when it cannot be reached yet.
async fn prepare_scratch(
    drill: &ManagedDrill<'_>,
) -> Result<Result<Option<String>, String>, DrillError> {
    let Ok(mut scratch) = PgConnection::connect(drill.scratch_url).await else {
        return Ok(Ok(None));
    };
    if same_database(drill.source_url, drill.scratch_url).await? {
        let _ = scratch.close().await;
        return Ok(Err(SAME_DATABASE.into()));
    }
    let token = uuid::Uuid::new_v4().to_string();
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (token text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"
    ))
    .execute(&mut scratch)
    .await?;
    sqlx::query(&format!("INSERT INTO {MARKER_TABLE} (token) VALUES ($1)"))
        .bind(&token)
        .execute(&mut scratch)
        .await?;
    let _ = scratch.close().await;
    Ok(Ok(Some(token)))
}

/// Whether the marker written before the restore is still there.
async fn marker_present(scratch_url: &str, token: &str) -> Result<bool, DrillError> {
    let mut conn = PgConnection::connect(scratch_url).await?;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(MARKER_TABLE)
        .fetch_one(&mut conn)
        .await?;
    let present = match table {
        None => false,
        Some(_) => {
            sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {MARKER_TABLE} WHERE token = $1)"
            ))
            .bind(token)
            .fetch_one(&mut conn)
            .await?
        }
    };
    let _ = conn.close().await;
    Ok(present)
}
