//! `backup-verification`: nightly Cloud Run job (Cloud Scheduler,
//! `scheduler/backup-verification.yaml`) proving that a backup restores: a consistent dump goes
//! to Cloud Storage, is restored into a scratch database and compared with the source as of its
//! snapshot; on Cloud SQL the managed backups and point-in-time recovery are checked too. One
//! verification record per logical date; the run exits non-zero when any check fails.

pub mod cloudsql;
pub mod drill;

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
    /// Bucket the drill's dumps go to (short retention; never the log archive).
    #[arg(long, env = "BACKUP_BUCKET")]
    pub bucket: String,
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
                execution: "unknown".into(),
                index: config.job.task_index,
                count: config.job.task_count,
                attempt: config.job.task_attempt,
                logical_date: started.date_naive(),
            };
            let mut report = RunReport::new(&task, started);
            report.fail(e.to_string()).finish(Utc::now());
            report.log();
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
    let server_url = config
        .restore_database_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned())
        .unwrap_or_else(|| source_url.clone());
    let tools = PgTools::locate(config.pg_bin_dir.as_deref());
    let storage = Storage::connect(&config.storage, &config.bucket)
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
    let limits = Limits {
        max_age: chrono::Duration::hours(config.max_age_hours),
        rto: std::time::Duration::from_secs(config.rto_seconds),
    };
    let prefix = format!(
        "{}/{}",
        config.prefix.trim_end_matches('/'),
        task.logical_date
    );

    let backup = drill::take_backup(&source_url, &tools, &config.work_dir, &[])
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
        &limits,
        Utc::now(),
    )
    .await
    .map_err(|e| e.to_string())?;

    let mut failures = verification.failures.clone();
    if let Some(instance) = &config.sql_instance {
        let admin = cloudsql::RestAdmin {
            endpoint: config.sqladmin_endpoint.clone(),
            project: config.platform.project.clone().unwrap_or_default(),
            instance: instance.clone(),
            token_url: Some(cloudsql::METADATA_TOKEN_URL.to_owned()),
            http: reqwest::Client::new(),
        };
        match cloudsql::verify(&admin, Utc::now(), limits.max_age).await {
            Ok(managed) => {
                if let Some(run) = managed.newest {
                    report.figure("managed_backup_id", run.id);
                }
                failures.extend(managed.failures);
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    record(pool, task, &stored, &verification, &failures, report)
        .await
        .map_err(|e| e.to_string())?;
    for f in failures {
        report.fail(f);
    }
    Ok(())
}

/// Writes the date's one verification record (a rerun after a failure replaces it) and puts
/// the figures on the report.
async fn record(
    pool: &PgPool,
    task: &Task,
    stored: &StoredBackup,
    v: &Verification,
    failures: &[String],
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
    let figures = json!({
        "backup_id": v.backup_id,
        "dump_object": stored.dump_object,
        "bytes": v.bytes,
        "age_hours": v.age_hours,
        "download_secs": v.download_secs,
        "restore_secs": v.restore_secs,
        "compare_secs": v.compare_secs,
        "tables": v.tables,
        "rows": v.rows,
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
