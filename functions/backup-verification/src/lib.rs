//! `backup-verification`: nightly Cloud Run job (Cloud Scheduler,
//! `scheduler/backup-verification.yaml`) proving that a backup restores. On Cloud SQL
//! (`SQL_INSTANCE` set) the managed backups and point-in-time recovery are checked and the
//! newest backup run is restored into the scratch instance through the Admin API, then checked
//! there; elsewhere a consistent dump goes to Cloud Storage, is restored into a scratch database
//! and compared with the source as of its snapshot. Both re-apply the erasure ledger to the
//! restored copy and report erased users absent. One verification record per logical date; the
//! run exits non-zero when any check fails.

pub mod cloudsql;
pub mod drill;
pub mod erasure;
pub mod managed;

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use common::config::{DbConfig, PlatformConfig};
use common::job::{JobConfig, Outcome, RunReport, Task};
use common::storage::{Storage, StorageConfig};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use sqlx::PgPool;

use crate::drill::{Limits, PgTools, StoredBackup, Verification};

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "backup-verification",
    about = "Proves the newest backup restores"
)]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub job: JobConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
    /// Bucket the local drill's dumps go to (short retention; never the log archive); required
    /// without `SQL_INSTANCE`.
    #[arg(long, env = "BACKUP_BUCKET")]
    pub bucket: Option<String>,
    /// Object prefix of the drill's dumps.
    #[arg(long, env = "BACKUP_PREFIX", default_value = "restore-drill")]
    pub prefix: String,
    /// Server the scratch databases are created on (a maintenance database URL); defaults to
    /// the source's server.
    #[arg(long, env = "RESTORE_DATABASE_URL")]
    pub restore_database_url: Option<SecretString>,
    /// Directory holding pg_dump and pg_restore; found automatically when unset.
    #[arg(long, env = "PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Directory for the dump while it is made and restored.
    #[arg(long, env = "BACKUP_WORK_DIR", default_value = "/tmp")]
    pub work_dir: PathBuf,
    /// A backup older than this many hours is stale.
    #[arg(long, env = "BACKUP_MAX_AGE_HOURS", default_value_t = 26)]
    pub max_age_hours: i64,
    /// Recovery time objective in seconds; a slower restore fails the check.
    #[arg(long, env = "RTO_SECONDS", default_value_t = 4 * 3600)]
    pub rto_seconds: u64,
    /// Cloud SQL instance whose managed backups are checked (production); unset locally.
    #[arg(long, env = "SQL_INSTANCE")]
    pub sql_instance: Option<String>,
    /// Cloud SQL Admin API endpoint.
    #[arg(
        long,
        env = "SQLADMIN_ENDPOINT",
        default_value = "https://sqladmin.googleapis.com"
    )]
    pub sqladmin_endpoint: String,
    /// Where the Admin API's access token comes from (the metadata server on Cloud Run); empty
    /// sends none.
    #[arg(long, env = "SQLADMIN_TOKEN_URL", default_value = cloudsql::METADATA_TOKEN_URL)]
    pub sqladmin_token_url: String,
    /// Cloud SQL scratch instance the newest backup run is restored into (production; its data
    /// is overwritten every night). Required with `SQL_INSTANCE`.
    #[arg(long, env = "RESTORE_CHECK_INSTANCE")]
    pub restore_check_instance: Option<String>,
    /// The restored database on the scratch instance, e.g.
    /// `postgres://U:P@10.0.0.5:5432/DB?sslmode=require`. Required with `SQL_INSTANCE`.
    #[arg(long, env = "RESTORE_CHECK_DATABASE_URL")]
    pub restore_check_database_url: Option<SecretString>,
    /// The restore operation fails when not done within this many seconds (inside the job's
    /// task timeout, and well inside the 4 h RTO).
    #[arg(long, env = "RESTORE_DEADLINE_SECONDS", default_value_t = 2700.0)]
    pub restore_deadline_seconds: f64,
    /// Seconds between two polls of the restore operation.
    #[arg(long, env = "RESTORE_POLL_SECONDS", default_value_t = 15.0)]
    pub restore_poll_seconds: f64,
    /// A scratch database of the local drill older than this many seconds that no drill holds
    /// is left over from a killed run and dropped (a flag only: production keeps the default).
    #[arg(long, default_value_t = 600)]
    pub stale_scratch_seconds: i64,
    /// Create the bucket when it is missing (local runs; Terraform owns production buckets).
    #[arg(long, env = "BACKUP_CREATE_BUCKET", default_value_t = false)]
    pub create_bucket: bool,
}

/// Runs the job: logs the report, stores it and the verification record, returns the report.
pub async fn run(config: Config) -> RunReport {
    let started = Utc::now();
    let task = match config.job.task("backup-verification", started) {
        Ok(task) => task,
        Err(e) => {
            let task = Task {
                job: "backup-verification".into(),
                execution: config
                    .job
                    .execution
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                index: config.job.task_index,
                count: config.job.task_count,
                attempt: config.job.task_attempt,
                logical_date: started.date_naive(),
            };
            let mut report = RunReport::new(&task, started);
            report.fail(e.to_string()).finish(Utc::now());
            report.log();
            // Stored like every other run, so the refusal is on record beside the log entry.
            if let Ok(pool) = common::db::connect(&config.db).await {
                if let Err(e) = common::job::store_report(&pool, &report).await {
                    tracing::error!(error = %e, "run report not stored");
                }
                pool.close().await;
            }
            return report;
        }
    };
    let mut report = RunReport::new(&task, started);
    let pool = match common::db::connect(&config.db).await {
        Ok(pool) => pool,
        Err(e) => {
            report.fail(e.to_string()).finish(Utc::now());
            report.log();
            return report;
        }
    };
    if let Err(e) = verify_date(&config, &task, &pool, &mut report).await {
        report.fail(e);
    }
    report.finish(Utc::now());
    report.log();
    if let Err(e) = common::job::store_report(&pool, &report).await {
        tracing::error!(error = %e, "run report not stored");
    }
    pool.close().await;
    report
}

/// The existing record of a date, if its verification passed.
pub async fn passed_record(pool: &PgPool, date: NaiveDate) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT backup_id FROM backup_verifications WHERE logical_date = $1 AND passed",
    )
    .bind(date)
    .fetch_optional(pool)
    .await
}

async fn verify_date(
    config: &Config,
    task: &Task,
    pool: &PgPool,
    report: &mut RunReport,
) -> Result<(), String> {
    // Two triggers of one date: the second waits here, then finds the record and stops.
    let mut lock = pool.acquire().await.map_err(|e| e.to_string())?;
    let key = common::job::shard_of(
        &format!("backup-verification/{}", task.logical_date),
        u32::MAX,
    );
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(i64::from(key))
        .execute(&mut *lock)
        .await
        .map_err(|e| e.to_string())?;
    let result = verify_locked(config, task, pool, report).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(i64::from(key))
        .execute(&mut *lock)
        .await;
    result
}

async fn verify_locked(
    config: &Config,
    task: &Task,
    pool: &PgPool,
    report: &mut RunReport,
) -> Result<(), String> {
    if let Some(backup_id) = passed_record(pool, task.logical_date)
        .await
        .map_err(|e| e.to_string())?
    {
        report.outcome = Outcome::Skipped;
        report.figure("backup_id", backup_id);
        report.figure("note", "already verified for this logical date");
        return Ok(());
    }
    let source_url = config.db.database_url.expose_secret().to_owned();
    let limits = Limits {
        max_age: chrono::Duration::hours(config.max_age_hours),
        rto: std::time::Duration::from_secs(config.rto_seconds),
        stale_scratch: chrono::Duration::seconds(config.stale_scratch_seconds),
    };
    // The live ledger: it also names the people erased after the backup was taken.
    let ledger = erasure::ledger(pool).await.map_err(|e| e.to_string())?;
    report.figure("rto_secs", config.rto_seconds);
    let (verification, dump_object) = match &config.sql_instance {
        Some(instance) => (
            managed_drill(config, instance, &source_url, &limits, &ledger).await?,
            None,
        ),
        None => {
            let (v, stored) =
                local_drill(config, task, &source_url, &limits, &ledger, report).await?;
            (v, Some(stored.dump_object))
        }
    };
    let failures = verification.failures.clone();
    record(
        pool,
        task,
        dump_object.as_deref(),
        &verification,
        &failures,
        report,
    )
    .await
    .map_err(|e| e.to_string())?;
    for f in failures {
        report.fail(f);
    }
    Ok(())
}

/// Production: the Admin API check and the restore drill into the scratch instance.
async fn managed_drill(
    config: &Config,
    instance: &str,
    source_url: &str,
    limits: &Limits,
    ledger: &[String],
) -> Result<Verification, String> {
    let (Some(scratch), Some(scratch_url)) = (
        &config.restore_check_instance,
        &config.restore_check_database_url,
    ) else {
        return Err(
            "RESTORE_CHECK_INSTANCE and RESTORE_CHECK_DATABASE_URL are required with SQL_INSTANCE"
                .into(),
        );
    };
    let duration = |name: &str, secs: f64| {
        std::time::Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{name} must be a non-negative number of seconds"))
    };
    let restore = cloudsql::RestoreSettings {
        scratch_instance: scratch.clone(),
        deadline: duration("RESTORE_DEADLINE_SECONDS", config.restore_deadline_seconds)?,
        poll: duration("RESTORE_POLL_SECONDS", config.restore_poll_seconds)?,
    };
    let admin = cloudsql::RestAdmin {
        endpoint: config.sqladmin_endpoint.clone(),
        project: config.platform.project.clone().unwrap_or_default(),
        instance: instance.to_owned(),
        token_url: Some(config.sqladmin_token_url.clone()).filter(|u| !u.is_empty()),
        // Every Admin API call is bounded; the restore's own deadline covers the polling.
        http: reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("http client: {e}"))?,
    };
    let drill = managed::ManagedDrill {
        source_url,
        scratch_url: scratch_url.expose_secret(),
        restore: &restore,
        limits,
        ledger,
    };
    managed::verify(&admin, &drill, Utc::now())
        .await
        .map_err(|e| e.to_string())
}

/// Elsewhere: the pg_dump drill through Cloud Storage into a scratch database.
async fn local_drill(
    config: &Config,
    task: &Task,
    source_url: &str,
    limits: &Limits,
    ledger: &[String],
    report: &mut RunReport,
) -> Result<(Verification, StoredBackup), String> {
    let bucket = config
        .bucket
        .as_deref()
        .ok_or("BACKUP_BUCKET is required without SQL_INSTANCE")?;
    let server_url = config
        .restore_database_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned())
        .unwrap_or_else(|| source_url.to_owned());
    let tools = PgTools::locate(config.pg_bin_dir.as_deref());
    let storage = Storage::connect(&config.storage, bucket)
        .await
        .map_err(|e| e.to_string())?;
    if config.create_bucket {
        let project = config
            .platform
            .project
            .clone()
            .unwrap_or_else(|| "local".into());
        storage
            .ensure_bucket(&project)
            .await
            .map_err(|e| e.to_string())?;
    }
    let prefix = format!(
        "{}/{}",
        config.prefix.trim_end_matches('/'),
        task.logical_date
    );

    let backup = drill::take_backup(source_url, &tools, &config.work_dir, &[])
        .await
        .map_err(|e| e.to_string())?;
    let clock = std::time::Instant::now();
    let stored = drill::store_backup(&storage, &prefix, &backup).await;
    report.figure("upload_secs", clock.elapsed().as_secs_f64());
    let _ = tokio::fs::remove_file(&backup.path).await;
    let stored = stored.map_err(|e| e.to_string())?;
    report.figure("dump_secs", backup.description.dump_secs);
    let verification = drill::verify_backup(
        &storage,
        &stored,
        &tools,
        &server_url,
        &config.work_dir,
        limits,
        ledger,
        Utc::now(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((verification, stored))
}

/// Writes the date's one verification record (a rerun after a failure replaces it) and puts
/// the figures on the report.
async fn record(
    pool: &PgPool,
    task: &Task,
    dump_object: Option<&str>,
    v: &Verification,
    failures: &[String],
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
    let figures = json!({
        "backup_id": v.backup_id,
        "dump_object": dump_object,
        "restore_operation": v.restore_operation,
        "bytes": v.bytes,
        "age_hours": v.age_hours,
        "download_secs": v.download_secs,
        "restore_secs": v.restore_secs,
        "compare_secs": v.compare_secs,
        "tables": v.tables,
        "rows": v.rows,
        "erasure_ledger_subjects": v.ledger_subjects,
        "erased_subjects_recleaned": v.erased_found,
        "erased_rows_removed": v.erased_rows_removed,
        "erased_subjects_remaining": v.erased_remaining,
        "stale_scratch_dropped": v.stale_scratch_dropped,
    });
    if let serde_json::Value::Object(map) = &figures {
        report.figures.extend(map.clone());
    }
    report.figure("backup_verification_passed", failures.is_empty());
    let taken_at: DateTime<Utc> = v.taken_at.unwrap_or_else(Utc::now);
    sqlx::query(
        "INSERT INTO backup_verifications
             (logical_date, backup_id, passed, backup_taken_at, restore_secs, figures, failures, execution)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (logical_date) DO UPDATE SET
             backup_id = EXCLUDED.backup_id, passed = EXCLUDED.passed,
             backup_taken_at = EXCLUDED.backup_taken_at, restore_secs = EXCLUDED.restore_secs,
             figures = EXCLUDED.figures, failures = EXCLUDED.failures,
             execution = EXCLUDED.execution, verified_at = now()",
    )
    .bind(task.logical_date)
    .bind(&v.backup_id)
    .bind(failures.is_empty())
    .bind(taken_at)
    .bind(v.restore_secs)
    .bind(&figures)
    .bind(json!(failures))
    .bind(&task.execution)
    .execute(pool)
    .await?;
    Ok(())
}
