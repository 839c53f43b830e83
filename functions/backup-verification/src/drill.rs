//! The restore drill: a consistent `pg_dump` of the source, stored in Cloud Storage, restored
//! into a scratch database and compared, table by table, with the source as of the dump's
//! snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use chrono::{DateTime, Utc};
use common::storage::Storage;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, PgConnection};
use tokio::io::AsyncReadExt as _;

/// What went wrong in the drill itself (not a finding about the backup).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A database call failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Cloud Storage failed.
    #[error(transparent)]
    Storage(#[from] common::storage::StorageError),
    /// A local file or a child process failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// pg_dump failed.
    #[error("pg_dump failed: {0}")]
    Dump(String),
    /// The stored backup description is unreadable.
    #[error("backup description {0} unreadable: {1}")]
    Description(String, String),
}

/// One table's figures at the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStat {
    /// Rows.
    pub rows: i64,
    /// md5 over the sorted md5s of every row's text form.
    pub checksum: String,
}

/// What a backup holds, recorded at backup time from the same snapshot as the dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupDescription {
    /// Backup id (also the object name stem).
    pub backup_id: String,
    /// Snapshot time (the dump transaction's start).
    pub taken_at: DateTime<Utc>,
    /// The exported snapshot the dump used.
    pub snapshot: String,
    /// Every base table, `schema.table` as the server quotes it.
    pub tables: BTreeMap<String, TableStat>,
    /// Foreign keys in the schema.
    pub foreign_keys: i64,
    /// Dump size in bytes.
    pub bytes: u64,
    /// SHA-256 of the dump, hex.
    pub sha256: String,
    /// Seconds pg_dump and the source figures took.
    pub dump_secs: f64,
}

/// A dump on local disk with its description.
#[derive(Debug, Clone)]
pub struct LocalBackup {
    /// The `pg_dump -Fc` file.
    pub path: PathBuf,
    /// What it holds.
    pub description: BackupDescription,
}

/// Where a stored backup is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBackup {
    /// Backup id.
    pub backup_id: String,
    /// The dump object.
    pub dump_object: String,
    /// The description object.
    pub description_object: String,
}

/// The PostgreSQL client tools.
#[derive(Debug, Clone)]
pub struct PgTools {
    /// pg_dump.
    pub pg_dump: PathBuf,
    /// pg_restore.
    pub pg_restore: PathBuf,
}

impl PgTools {
    /// Tools in `dir`, or else the newest `/usr/lib/postgresql/*/bin` (Debian's layout), or else
    /// whatever `pg_dump` the search path finds.
    pub fn locate(dir: Option<&Path>) -> Self {
        let dir = dir.map(Path::to_path_buf).or_else(|| {
            let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("pg_dump").exists().then_some((v, bin))
                })
                .collect();
            versions.sort();
            versions.pop().map(|(_, bin)| bin)
        });
        match dir {
            Some(dir) => Self {
                pg_dump: dir.join("pg_dump"),
                pg_restore: dir.join("pg_restore"),
            },
            None => Self {
                pg_dump: "pg_dump".into(),
                pg_restore: "pg_restore".into(),
            },
        }
    }
}

/// `url` with its database name replaced (`postgres://u:p@h:5432/db?x` and `postgres:///db?host=`).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, path_and_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // A `dbname` parameter wins over the path in libpq and sqlx alike: it would send the
    // restore and the re-clean to the database it names, so it is dropped.
    let params: Vec<&str> = path_and_query
        .find('?')
        .map(|i| &path_and_query[i + 1..])
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            !key.eq_ignore_ascii_case("dbname")
        })
        .collect();
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    format!("{scheme}://{authority}/{database}{query}")
}

const TABLES_SQL: &str = "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)
     FROM information_schema.tables
     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
     ORDER BY 1";

pub(crate) const FOREIGN_KEYS_SQL: &str = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'";

/// The figures of one table. The name comes from the catalog, quoted by `quote_ident`, never
/// from input, which is why it may be spliced into the statement.
async fn table_stat(conn: &mut PgConnection, table: &str) -> Result<TableStat, sqlx::Error> {
    let sql = ["SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM (SELECT md5(t::text) AS h FROM ", table, " t) rows"].concat();
    let (rows, checksum): (i64, String) = sqlx::query_as(&sql).fetch_one(conn).await?;
    Ok(TableStat { rows, checksum })
}

pub(crate) async fn tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(TABLES_SQL).fetch_all(conn).await
}

async fn all_stats(conn: &mut PgConnection) -> Result<BTreeMap<String, TableStat>, sqlx::Error> {
    let mut out = BTreeMap::new();
    for table in tables(conn).await? {
        let stat = table_stat(conn, &table).await?;
        out.insert(table, stat);
    }
    Ok(out)
}

async fn sha256_of(path: &Path) -> Result<(String, u64), DrillError> {
    let io = |e| DrillError::Io(path.display().to_string(), e);
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes a consistent backup of `source_url` into `dir`: one REPEATABLE READ transaction
/// exports its snapshot, pg_dump dumps exactly that snapshot (`--snapshot`) while the same
/// transaction computes every table's figures, so the description and the dump agree.
/// `extra_args` go to pg_dump as they are.
pub async fn take_backup(
    source_url: &str,
    tools: &PgTools,
    dir: &Path,
    extra_args: &[String],
) -> Result<LocalBackup, DrillError> {
    let clock = Instant::now();
    let backup_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let path = dir.join(format!("{backup_id}.dump"));
    let mut conn = PgConnection::connect(source_url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await?;
    let (snapshot, taken_at): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT pg_export_snapshot(), now()")
            .fetch_one(&mut conn)
            .await?;
    let mut dump = tokio::process::Command::new(&tools.pg_dump)
        .arg("--format=custom")
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg(format!("--file={}", path.display()))
        .args(extra_args)
        .arg(format!("--dbname={source_url}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DrillError::Io(tools.pg_dump.display().to_string(), e))?;
    let stats = all_stats(&mut conn).await;
    let foreign_keys: Result<i64, _> = sqlx::query_scalar(FOREIGN_KEYS_SQL)
        .fetch_one(&mut conn)
        .await;
    let mut stderr = String::new();
    if let Some(mut err) = dump.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let status = dump
        .wait()
        .await
        .map_err(|e| DrillError::Io("pg_dump".into(), e))?;
    // The snapshot must outlive pg_dump's import of it: commit only now.
    sqlx::query("COMMIT").execute(&mut conn).await?;
    let _ = conn.close().await;
    if !status.success() {
        return Err(DrillError::Dump(tail(&stderr)));
    }
    let (sha256, bytes) = sha256_of(&path).await?;
    Ok(LocalBackup {
        path,
        description: BackupDescription {
            backup_id,
            taken_at,
            snapshot,
            tables: stats?,
            foreign_keys: foreign_keys?,
            bytes,
            sha256,
            dump_secs: clock.elapsed().as_secs_f64(),
        },
    })
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Stores the dump (resumable upload) and then its description under `prefix`.
pub async fn store_backup(
    storage: &Storage,
    prefix: &str,
    backup: &LocalBackup,
) -> Result<StoredBackup, DrillError> {
    let id = &backup.description.backup_id;
    let dump_object = format!("{prefix}/{id}.dump");
    let description_object = format!("{prefix}/{id}.json");
    let mut metadata = HashMap::new();
    metadata.insert("sha256".to_owned(), backup.description.sha256.clone());
    metadata.insert(
        "taken_at".to_owned(),
        backup.description.taken_at.to_rfc3339(),
    );
    storage
        .put_file(
            &dump_object,
            &backup.path,
            "application/octet-stream",
            metadata,
        )
        .await?;
    let body = serde_json::to_vec_pretty(&backup.description).expect("description serialises");
    storage
        .put(
            &description_object,
            body,
            "application/json",
            HashMap::new(),
        )
        .await?;
    Ok(StoredBackup {
        backup_id: id.clone(),
        dump_object,
        description_object,
    })
}

/// Limits the verification holds a backup to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A backup older than this is stale.
    pub max_age: chrono::Duration,
    /// A restore slower than this misses the RTO.
    pub rto: std::time::Duration,
    /// A scratch database older than this whose drill holds no lock on it is left over from a
    /// killed drill and dropped.
    pub stale_scratch: chrono::Duration,
}

/// The findings of one verification.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verification {
    /// Backup id.
    pub backup_id: String,
    /// When the backup's snapshot was taken.
    pub taken_at: Option<DateTime<Utc>>,
    /// Age of the backup at verification, hours.
    pub age_hours: f64,
    /// Download seconds.
    pub download_secs: f64,
    /// pg_restore seconds.
    pub restore_secs: Option<f64>,
    /// Compare and invariant seconds.
    pub compare_secs: f64,
    /// Tables compared.
    pub tables: usize,
    /// Rows compared over all tables.
    pub rows: i64,
    /// Dump size.
    pub bytes: u64,
    /// The Admin API's restore operation (the managed path).
    pub restore_operation: Option<String>,
    /// Erased subjects in the live ledger, checked against the restore.
    pub ledger_subjects: usize,
    /// Of those, how many the restore still held and the drill re-cleaned.
    pub erased_found: usize,
    /// Rows the re-clean deleted.
    pub erased_rows_removed: u64,
    /// Erased subjects still present after re-cleaning (a failure unless 0).
    pub erased_remaining: usize,
    /// Scratch databases of earlier drills that died before dropping theirs, dropped now.
    pub stale_scratch_dropped: usize,
    /// One line per failed check; empty when the backup is good.
    pub failures: Vec<String>,
}

impl Verification {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Re-applies the erasures of `ledger` to the restored copy behind `conn` and records the
    /// figures; a subject still present afterwards is a failure.
    pub async fn reclean_erased(
        &mut self,
        conn: &mut PgConnection,
        ledger: &[String],
    ) -> Result<(), sqlx::Error> {
        let reclean = crate::erasure::reclean(conn, ledger).await?;
        self.ledger_subjects = reclean.ledger_subjects;
        self.erased_found = reclean.found;
        self.erased_rows_removed = reclean.rows_removed;
        self.erased_remaining = reclean.remaining;
        if let Some(failure) = reclean.failure() {
            self.failures.push(failure);
        }
        Ok(())
    }
}

/// Downloads a stored backup, restores it into a fresh scratch database on `scratch_server_url`'s
/// server, compares it with its description, re-applies the erasures of `ledger` (the live
/// database's erasure ledger, see [`crate::erasure`]) and drops the scratch database again.
#[allow(clippy::too_many_arguments)]
pub async fn verify_backup(
    storage: &Storage,
    stored: &StoredBackup,
    tools: &PgTools,
    scratch_server_url: &str,
    dir: &Path,
    limits: &Limits,
    ledger: &[String],
    now: DateTime<Utc>,
) -> Result<Verification, DrillError> {
    let mut v = Verification {
        backup_id: stored.backup_id.clone(),
        ..Default::default()
    };
    let bytes = storage.get(&stored.description_object).await?;
    let description: BackupDescription = serde_json::from_slice(&bytes)
        .map_err(|e| DrillError::Description(stored.description_object.clone(), e.to_string()))?;
    v.taken_at = Some(description.taken_at);
    let age = now - description.taken_at;
    v.age_hours = age.num_seconds() as f64 / 3600.0;
    if age > limits.max_age {
        v.failures.push(format!(
            "backup is stale: taken {:.1} h ago, the limit is {} h",
            v.age_hours,
            limits.max_age.num_hours()
        ));
    }

    let clock = Instant::now();
    let local = dir.join(format!("{}.restore.dump", stored.backup_id));
    if let Err(e) = storage.get_to_file(&stored.dump_object, &local).await {
        // A download cut short leaves part of a dump of health data on disk.
        let _ = tokio::fs::remove_file(&local).await;
        return Err(e.into());
    }
    v.download_secs = clock.elapsed().as_secs_f64();
    let (sha256, size) = sha256_of(&local).await?;
    v.bytes = size;
    if sha256 != description.sha256 || size != description.bytes {
        v.failures.push(format!(
            "dump differs from the one recorded at backup time ({size} of {} bytes, SHA-256 {}): truncated or altered",
            description.bytes,
            if sha256 == description.sha256 { "equal" } else { "differs" }
        ));
    }

    // Named with its creation time. From just after it exists until it is dropped, a session
    // connected to it holds an advisory lock there (advisory locks are per database); one older
    // than the grace period that nobody holds belongs to a drill that was killed, and is a full
    // copy of the data (erased people included) that would otherwise stay forever.
    let scratch = format!(
        "restore_check_{}_{}",
        Utc::now().timestamp(),
        uuid::Uuid::new_v4().simple()
    );
    let mut admin = PgConnection::connect(scratch_server_url).await?;
    v.stale_scratch_dropped = drop_stale_scratch(
        &mut admin,
        scratch_server_url,
        Utc::now(),
        limits.stale_scratch,
    )
    .await?;
    sqlx::query(&["CREATE DATABASE ", &scratch].concat())
        .execute(&mut admin)
        .await?;
    let holder = async {
        let mut holder =
            PgConnection::connect(&with_database(scratch_server_url, &scratch)).await?;
        sqlx::query("SELECT pg_advisory_lock($1, 0)")
            .bind(SCRATCH_LOCK)
            .execute(&mut holder)
            .await?;
        Ok::<_, sqlx::Error>(holder)
    }
    .await;
    let (result, holder) = match holder {
        Err(e) => (Err(DrillError::Db(e)), None),
        Ok(holder) => (
            restore_and_compare(
                &mut v,
                &description,
                tools,
                scratch_server_url,
                &scratch,
                &local,
                limits,
                ledger,
            )
            .await,
            Some(holder),
        ),
    };
    if let Some(holder) = holder {
        let _ = holder.close().await;
    }
    let dropped = sqlx::query(&["DROP DATABASE IF EXISTS ", &scratch, " WITH (FORCE)"].concat())
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    let _ = tokio::fs::remove_file(&local).await;
    result?;
    dropped?;
    Ok(v)
}

/// First key of the advisory locks that hold scratch databases (the second is the name's hash).
const SCRATCH_LOCK: i32 = 0x6276_0001;

/// Drops every `restore_check_*` database older than `grace` whose drill is gone (nobody holds
/// its lock); names without a creation time (older versions) only when nobody is connected.
async fn drop_stale_scratch(
    admin: &mut PgConnection,
    server_url: &str,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<usize, sqlx::Error> {
    let names: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.datname::text,
                (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
         FROM pg_database d WHERE d.datname LIKE 'restore\\_check\\_%'",
    )
    .fetch_all(&mut *admin)
    .await?;
    let mut dropped = 0;
    for (name, sessions) in names {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let created = name
            .strip_prefix("restore_check_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(secs, _)| secs.parse::<i64>().ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0));
        let stale = match created {
            Some(created) => {
                now - created > grace && {
                    match PgConnection::connect(&with_database(server_url, &name)).await {
                        Ok(mut conn) => {
                            let free: bool =
                                sqlx::query_scalar("SELECT pg_try_advisory_lock($1, 0)")
                                    .bind(SCRATCH_LOCK)
                                    .fetch_one(&mut conn)
                                    .await?;
                            let _ = conn.close().await;
                            free
                        }
                        Err(_) => false,
                    }
                }
            }
            None => sessions == 0,
        };
        if !stale {
            continue;
        }
        sqlx::query(&["DROP DATABASE IF EXISTS ", &name, " WITH (FORCE)"].concat())
            .execute(&mut *admin)
            .await?;
        tracing::warn!(database = %name, "dropped the scratch database of a drill that did not finish");
        dropped += 1;
    }
    Ok(dropped)
}

#[allow(clippy::too_many_arguments)]
async fn restore_and_compare(
    v: &mut Verification,
    description: &BackupDescription,
    tools: &PgTools,
    server_url: &str,
    scratch: &str,
    dump: &Path,
    limits: &Limits,
    ledger: &[String],
) -> Result<(), DrillError> {
    let scratch_url = with_database(server_url, scratch);
    // Whatever the URL says, the restore goes only into the scratch database just created.
    let mut probe = PgConnection::connect(&scratch_url).await?;
    let reached: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut probe)
        .await?;
    let _ = probe.close().await;
    if reached != scratch {
        v.failures.push(format!(
            "RESTORE_DATABASE_URL leads to database {reached:?}, not the scratch database: refusing to restore into it"
        ));
        return Ok(());
    }
    let clock = Instant::now();
    let output = tokio::process::Command::new(&tools.pg_restore)
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg(format!("--dbname={scratch_url}"))
        .arg(dump)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| DrillError::Io(tools.pg_restore.display().to_string(), e))?;
    let restore = clock.elapsed();
    v.restore_secs = Some(restore.as_secs_f64());
    if !output.status.success() {
        v.failures.push(format!(
            "restore failed: {}",
            tail(&String::from_utf8_lossy(&output.stderr))
        ));
        return Ok(());
    }
    if restore > limits.rto {
        v.failures.push(format!(
            "restore took {:.0} s, more than the RTO of {} s",
            restore.as_secs_f64(),
            limits.rto.as_secs()
        ));
    }

    let clock = Instant::now();
    let mut conn = PgConnection::connect(&scratch_url).await?;
    let restored = tables(&mut conn).await?;
    for (table, expected) in &description.tables {
        if !restored.contains(table) {
            v.failures
                .push(format!("table {table} missing from the restored database"));
            continue;
        }
        let got = table_stat(&mut conn, table).await?;
        v.tables += 1;
        v.rows += got.rows;
        if got.rows != expected.rows {
            v.failures.push(format!(
                "table {table}: {} rows restored, {} at the snapshot",
                got.rows, expected.rows
            ));
        } else if got.checksum != expected.checksum {
            v.failures.push(format!(
                "table {table}: content checksum differs from the snapshot"
            ));
        }
    }
    for table in restored
        .iter()
        .filter(|t| !description.tables.contains_key(*t))
    {
        v.failures.push(format!(
            "table {table} restored but not in the source snapshot"
        ));
    }
    for finding in invariants(&mut conn, description.foreign_keys).await? {
        v.failures.push(finding);
    }
    // After the comparison, which is with the snapshot as it was.
    v.reclean_erased(&mut conn, ledger).await?;
    let _ = conn.close().await;
    v.compare_secs = clock.elapsed().as_secs_f64();
    Ok(())
}

/// The schema's invariants on the restored copy.
pub(crate) async fn invariants(
    conn: &mut PgConnection,
    foreign_keys: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut findings = Vec::new();
    let restored_fks: i64 = sqlx::query_scalar(FOREIGN_KEYS_SQL)
        .fetch_one(&mut *conn)
        .await?;
    if restored_fks != foreign_keys {
        findings.push(format!(
            "{restored_fks} foreign keys restored, {foreign_keys} in the source"
        ));
    }
    let unvalidated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint WHERE contype IN ('f', 'c') AND NOT convalidated",
    )
    .fetch_one(&mut *conn)
    .await?;
    if unvalidated > 0 {
        findings.push(format!(
            "{unvalidated} constraints restored without validation"
        ));
    }
    // Orphans: nights and sessions whose user or import is gone. The restore re-creates the
    // foreign keys (and so validates them); these catch a dump taken without them.
    let orphans: &[(&str, &str)] = &[
        (
            "diary nights without their user",
            "SELECT count(*) FROM diary_entries d WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)",
        ),
        (
            "imported nights without their user or import",
            "SELECT count(*) FROM sleep_sessions s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id) OR NOT EXISTS (SELECT 1 FROM imports i WHERE i.id = s.import_id)",
        ),
    ];
    for (what, sql) in orphans {
        match sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(0) => {}
            Ok(n) => findings.push(format!("{n} {what}")),
            // A table missing altogether is reported by the table comparison.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_parameters_kept() {
        assert_eq!(
            with_database(
                "postgres://u:p@127.0.0.1:5432/app?sslmode=disable",
                "scratch"
            ),
            "postgres://u:p@127.0.0.1:5432/scratch?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres:///app?host=/cloudsql/p:r:i&user=u", "scratch"),
            "postgres:///scratch?host=/cloudsql/p:r:i&user=u"
        );
        assert_eq!(
            with_database("postgres://u@h", "scratch"),
            "postgres://u@h/scratch"
        );
        // A dbname parameter would win over the path: it goes.
        assert_eq!(
            with_database(
                "postgres://u@h:5432/postgres?sslmode=require&dbname=app&DBNAME=x",
                "scratch"
            ),
            "postgres://u@h:5432/scratch?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?dbname=app", "scratch"),
            "postgres://u@h/scratch"
        );
    }

    #[test]
    fn only_the_last_lines_of_a_tool_error_are_kept() {
        let err = "a\nb\n\nc\nd\ne\nf\n";
        assert_eq!(tail(err), "b | c | d | e | f");
    }
}
