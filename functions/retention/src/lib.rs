//! `retention`: daily Cloud Run job (scheduler/retention.yaml) deleting data whose documented
//! retention period has ended (TR-03161-3 O.Source_7, O.Data_2, O.Data_7; REFERENCE §5.5), and
//! finishing erasures left pending. Periods (each configurable, defaults documented here and in
//! the README):
//!
//! | data | kept | then |
//! |---|---|---|
//! | an account and all its health data | while in use; **24 months** after the last activity (login-free data writes, consents) | erased by the erasure walker, as `DELETE /v1/me` |
//! | e-mail verification and password-reset tokens | until used or expired, plus **7 days** | deleted |
//! | processed-event keys (duplicate detection) | **30 days** (Pub/Sub redelivers for at most 7) | deleted |
//! | undeliverable-event records (no payload) | **90 days** | deleted |
//! | job run reports | **400 days** | deleted |
//! | erasure ledger entries | **400 days**: longer than any backup (30 days + 7 days PITR) and the one-year log archive that may still hold the user | deleted |
//! | invoices / billing records | 8 years (§147 AO) | none exist in this database yet |

use chrono::{DateTime, Duration, Utc};
use common::config::{DbConfig, PlatformConfig};
use common::job::{JobConfig, RunReport, Task};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "retention", about = "Deletes data past its retention period")]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub job: JobConfig,
    #[command(flatten)]
    pub redis: common::cache::RedisConfig,
    #[command(flatten)]
    pub storage: common::storage::StorageConfig,
    #[command(flatten)]
    pub data_keys: common::crypto::KeyConfig,
    /// Firestore project (the emulator is used when FIRESTORE_EMULATOR_HOST is set).
    #[arg(long, env = "FIRESTORE_PROJECT", default_value = "dta-wide-local")]
    pub firestore_project: String,
    /// Buckets holding per-user objects under `users/{id}/`, comma-separated.
    #[arg(long, env = "ERASURE_BUCKETS", value_delimiter = ',')]
    pub erasure_buckets: Vec<String>,
    #[command(flatten)]
    pub archive: privacy::erasure::ArchiveConfig,
    #[command(flatten)]
    pub policy: Policy,
}

/// The retention periods, in days.
#[derive(Debug, Clone, Copy, clap::Args, Serialize)]
pub struct Policy {
    /// Days after an account's last activity after which it is erased (TR O.Data_7).
    #[arg(long, env = "RETENTION_INACTIVE_ACCOUNT_DAYS", default_value_t = 730)]
    pub inactive_account_days: i64,
    /// Days an expired or used account token is kept.
    #[arg(long, env = "RETENTION_AUTH_TOKEN_DAYS", default_value_t = 7)]
    pub auth_token_days: i64,
    /// Days a processed-event key is kept for duplicate detection.
    #[arg(long, env = "RETENTION_PROCESSED_EVENT_DAYS", default_value_t = 30)]
    pub processed_event_days: i64,
    /// Days an undeliverable-event record is kept.
    #[arg(long, env = "RETENTION_UNDELIVERABLE_DAYS", default_value_t = 90)]
    pub undeliverable_days: i64,
    /// Days a job run report is kept.
    #[arg(long, env = "RETENTION_JOB_RUN_DAYS", default_value_t = 400)]
    pub job_run_days: i64,
    /// Days an erasure ledger entry is kept (must exceed backup and archive retention).
    #[arg(long, env = "RETENTION_ERASURE_LEDGER_DAYS", default_value_t = 400)]
    pub erasure_ledger_days: i64,
}

/// What one sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub accounts_erased: u64,
    pub accounts_pending: u64,
    pub erasures_resumed: u64,
    pub auth_tokens: u64,
    pub processed_events: u64,
    pub undeliverable_events: u64,
    pub job_runs: u64,
    pub ledger_entries: u64,
}

/// Accounts whose newest activity is older than the cutoff.
pub async fn inactive_accounts(pool: &PgPool, cutoff: DateTime<Utc>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT u.id FROM users u WHERE GREATEST(u.created_at, \
           (SELECT max(updated_at) FROM diary_entries WHERE user_id = u.id), \
           (SELECT max(created_at) FROM imports WHERE user_id = u.id), \
           (SELECT max(created_at) FROM questionnaire_responses WHERE user_id = u.id), \
           (SELECT max(at) FROM consent_events WHERE user_id = u.id)) < $1",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

/// One sweep at `now`. Idempotent: a second run finds nothing more to do.
pub async fn sweep(
    stores: &privacy::erasure::Stores,
    policy: &Policy,
    now: DateTime<Utc>,
) -> sqlx::Result<Swept> {
    let pool = &stores.pool;
    let days = |d: i64| now - Duration::days(d);
    let mut swept = Swept {
        erasures_resumed: privacy::erasure::resume(stores).await? as u64,
        ..Swept::default()
    };
    for user in inactive_accounts(pool, days(policy.inactive_account_days)).await? {
        if privacy::erasure::erase(stores, user).await?.done() {
            swept.accounts_erased += 1;
        } else {
            swept.accounts_pending += 1;
        }
    }
    let delete = |sql: &'static str, cutoff: DateTime<Utc>| async move {
        sqlx::query(sql)
            .bind(cutoff)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    };
    swept.auth_tokens = delete(
        "DELETE FROM auth_tokens WHERE COALESCE(used_at, expires_at) < $1",
        days(policy.auth_token_days),
    )
    .await?;
    swept.processed_events = delete(
        "DELETE FROM processed_events WHERE processed_at < $1",
        days(policy.processed_event_days),
    )
    .await?;
    swept.undeliverable_events = delete(
        "DELETE FROM undeliverable_events WHERE received_at < $1",
        days(policy.undeliverable_days),
    )
    .await?;
    swept.job_runs = delete(
        "DELETE FROM job_runs WHERE finished_at < $1",
        days(policy.job_run_days),
    )
    .await?;
    swept.ledger_entries = delete(
        "DELETE FROM erasure_ledger WHERE completed_at < $1",
        days(policy.erasure_ledger_days),
    )
    .await?;
    Ok(swept)
}

async fn stores(
    config: &Config,
) -> Result<privacy::erasure::Stores, Box<dyn std::error::Error + Send + Sync>> {
    let pool = common::db::connect(&config.db).await?;
    let mut buckets = Vec::new();
    for bucket in config.erasure_buckets.iter().filter(|b| !b.is_empty()) {
        buckets.push(common::storage::Storage::connect(&config.storage, bucket).await?);
    }
    Ok(privacy::erasure::Stores {
        pool: pool.clone(),
        redis: common::cache::Redis::connect(&config.redis)?,
        firestore: firestore::FirestoreDb::new(&config.firestore_project).await?,
        buckets,
        keyring: common::crypto::Keyring::new(pool, config.data_keys.provider()?),
        archive: config.archive.connect(&config.storage).await?,
    })
}

/// Runs the job once and returns its report (stored in `job_runs` when the database answers).
pub async fn run(config: Config) -> RunReport {
    let started = Utc::now();
    let task = config
        .job
        .task("retention", started)
        .unwrap_or_else(|_| Task {
            job: "retention".into(),
            execution: "unknown".into(),
            index: config.job.task_index,
            count: config.job.task_count,
            attempt: config.job.task_attempt,
            logical_date: started.date_naive(),
        });
    let mut report = RunReport::new(&task, started);
    match stores(&config).await {
        Ok(stores) => {
            match sweep(&stores, &config.policy, started).await {
                Ok(swept) => {
                    if let serde_json::Value::Object(map) = serde_json::json!(swept) {
                        report.figures.extend(map);
                    }
                    if swept.accounts_pending > 0 {
                        report.fail(format!("{} erasures pending", swept.accounts_pending));
                    }
                }
                Err(e) => {
                    report.fail(e.to_string());
                }
            }
            report.finish(Utc::now());
            report.log();
            if let Err(e) = common::job::store_report(&stores.pool, &report).await {
                tracing::error!(error = %e, "run report not stored");
            }
        }
        Err(e) => {
            report.fail(e.to_string()).finish(Utc::now());
            report.log();
        }
    }
    report
}
