//! The production check against the Cloud SQL Admin API: the newest successful backup is
//! younger than the limit, 30 backups are retained, point-in-time recovery is on with 7 days of
//! transaction logs.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

/// What the Admin API says about an instance's backup settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfiguration {
    /// Automated backups on.
    #[serde(default)]
    pub enabled: bool,
    /// Point-in-time recovery on.
    #[serde(default)]
    pub point_in_time_recovery_enabled: bool,
    /// Days of transaction logs kept.
    #[serde(default)]
    pub transaction_log_retention_days: Option<i64>,
    /// Retention of automated backups.
    #[serde(default)]
    pub backup_retention_settings: Option<RetentionSettings>,
}

/// How many backups are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSettings {
    /// Number of retained backups.
    #[serde(default)]
    pub retained_backups: Option<i64>,
}

/// One backup run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    /// Run id.
    pub id: String,
    /// `SUCCESSFUL`, `FAILED`, `RUNNING`, …
    pub status: String,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
}

/// Why the Admin API could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("cloud sql admin api: {0}")]
pub struct AdminError(pub String);

/// The two Admin API reads the check needs.
pub trait CloudSqlAdmin {
    /// `instances.get` → `settings.backupConfiguration`.
    fn backup_configuration(
        &self,
    ) -> impl Future<Output = Result<BackupConfiguration, AdminError>> + Send;
    /// `backupRuns.list`, newest first.
    fn backup_runs(&self) -> impl Future<Output = Result<Vec<BackupRun>, AdminError>> + Send;
}

/// Findings of the managed-backup check.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedBackup {
    /// The newest successful run.
    pub newest: Option<BackupRun>,
    /// One line per failed check.
    pub failures: Vec<String>,
}

/// Checks the settings and runs against the design's numbers.
pub fn check(
    config: &BackupConfiguration,
    runs: &[BackupRun],
    now: DateTime<Utc>,
    max_age: Duration,
) -> ManagedBackup {
    let mut failures = Vec::new();
    if !config.enabled {
        failures.push("automated backups are off".to_owned());
    }
    if !config.point_in_time_recovery_enabled {
        failures.push("point-in-time recovery is off".to_owned());
    }
    match config.transaction_log_retention_days {
        Some(d) if d >= 7 => {}
        other => failures.push(format!(
            "transaction logs kept {} days, 7 required",
            other.map_or("an unknown number of".to_owned(), |d| d.to_string())
        )),
    }
    match config
        .backup_retention_settings
        .as_ref()
        .and_then(|r| r.retained_backups)
    {
        Some(n) if n >= 30 => {}
        other => failures.push(format!(
            "{} backups retained, 30 required",
            other.map_or("an unknown number of".to_owned(), |n| n.to_string())
        )),
    }
    let newest = runs
        .iter()
        .filter(|r| r.status == "SUCCESSFUL")
        .filter_map(|r| r.end_time.map(|t| (t, r)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, r)| r.clone());
    match &newest {
        None => failures.push("no successful backup run".to_owned()),
        Some(run) => {
            let age = now - run.end_time.unwrap_or(now);
            if age > max_age {
                failures.push(format!(
                    "newest successful backup {} is stale: {:.1} h old, the limit is {} h",
                    run.id,
                    age.num_seconds() as f64 / 3600.0,
                    max_age.num_hours()
                ));
            }
        }
    }
    ManagedBackup { newest, failures }
}

/// Asks the Admin API and checks.
pub async fn verify(
    admin: &impl CloudSqlAdmin,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<ManagedBackup, AdminError> {
    let config = admin.backup_configuration().await?;
    let runs = admin.backup_runs().await?;
    Ok(check(&config, &runs, now, max_age))
}

/// The Admin API over REST with the job's service account (metadata-server token).
#[derive(Debug, Clone)]
pub struct RestAdmin {
    /// `https://sqladmin.googleapis.com` (or a fake).
    pub endpoint: String,
    /// Project id.
    pub project: String,
    /// Instance name.
    pub instance: String,
    /// Where the access token comes from; `None` sends none (a local fake).
    pub token_url: Option<String>,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// The metadata server's token endpoint on Cloud Run.
pub const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

impl RestAdmin {
    async fn get(&self, path: &str) -> Result<serde_json::Value, AdminError> {
        let url = format!(
            "{}/v1/projects/{}/instances/{}{path}",
            self.endpoint.trim_end_matches('/'),
            self.project,
            self.instance
        );
        let mut request = self.http.get(&url);
        if let Some(token_url) = &self.token_url {
            #[derive(Deserialize)]
            struct Token {
                access_token: String,
            }
            let token: Token = self
                .http
                .get(token_url)
                .header("Metadata-Flavor", "Google")
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| AdminError(format!("token: {e}")))?
                .json()
                .await
                .map_err(|e| AdminError(format!("token: {e}")))?;
            request = request.bearer_auth(token.access_token);
        }
        request
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| AdminError(format!("GET {path}: {e}")))?
            .json()
            .await
            .map_err(|e| AdminError(format!("GET {path}: {e}")))
    }
}

impl CloudSqlAdmin for RestAdmin {
    async fn backup_configuration(&self) -> Result<BackupConfiguration, AdminError> {
        let instance = self.get("").await?;
        serde_json::from_value(instance["settings"]["backupConfiguration"].clone())
            .map_err(|e| AdminError(format!("backupConfiguration: {e}")))
    }

    async fn backup_runs(&self) -> Result<Vec<BackupRun>, AdminError> {
        let list = self.get("/backupRuns?maxResults=50").await?;
        serde_json::from_value(list.get("items").cloned().unwrap_or(serde_json::json!([])))
            .map_err(|e| AdminError(format!("backupRuns: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T03:30:00Z".parse().expect("time")
    }

    fn good() -> BackupConfiguration {
        BackupConfiguration {
            enabled: true,
            point_in_time_recovery_enabled: true,
            transaction_log_retention_days: Some(7),
            backup_retention_settings: Some(RetentionSettings {
                retained_backups: Some(30),
            }),
        }
    }

    fn run(id: &str, status: &str, end: &str) -> BackupRun {
        BackupRun {
            id: id.into(),
            status: status.into(),
            end_time: Some(end.parse().expect("time")),
        }
    }

    #[test]
    fn a_fresh_successful_backup_with_the_designed_settings_passes() {
        let runs = [
            run("2", "FAILED", "2026-12-03T02:20:00Z"),
            run("1", "SUCCESSFUL", "2026-12-03T02:10:00Z"),
        ];
        let found = check(&good(), &runs, now(), Duration::hours(26));
        assert_eq!(found.failures, Vec::<String>::new());
        assert_eq!(found.newest.map(|r| r.id), Some("1".to_owned()));
    }

    #[test]
    fn a_newest_successful_backup_older_than_26_hours_is_stale() {
        let runs = [
            run("2", "FAILED", "2026-12-03T02:20:00Z"),
            run("1", "SUCCESSFUL", "2026-12-02T01:00:00Z"),
        ];
        let found = check(&good(), &runs, now(), Duration::hours(26));
        assert_eq!(
            found.failures,
            ["newest successful backup 1 is stale: 26.5 h old, the limit is 26 h"]
        );
    }

    #[test]
    fn settings_below_the_design_are_each_reported() {
        let config = BackupConfiguration {
            enabled: true,
            point_in_time_recovery_enabled: false,
            transaction_log_retention_days: Some(3),
            backup_retention_settings: None,
        };
        let found = check(&config, &[], now(), Duration::hours(26));
        assert_eq!(
            found.failures,
            [
                "point-in-time recovery is off",
                "transaction logs kept 3 days, 7 required",
                "an unknown number of backups retained, 30 required",
                "no successful backup run",
            ]
        );
    }

    #[test]
    fn the_admin_api_json_is_read_as_the_api_documents_it() {
        let config: BackupConfiguration = serde_json::from_value(serde_json::json!({
            "enabled": true, "startTime": "02:00", "pointInTimeRecoveryEnabled": true,
            "transactionLogRetentionDays": 7,
            "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30}
        }))
        .expect("config");
        assert_eq!(config, good());
        let runs: Vec<BackupRun> = serde_json::from_value(serde_json::json!([
            {"id": "1733191200000", "status": "SUCCESSFUL", "type": "AUTOMATED",
             "endTime": "2026-12-03T02:11:12.345Z"}
        ]))
        .expect("runs");
        assert_eq!(runs[0].status, "SUCCESSFUL");
    }
}
