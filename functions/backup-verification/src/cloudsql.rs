//! The production path through the Cloud SQL Admin API v1: the check (the newest successful
//! backup is younger than the limit, 30 backups are retained, point-in-time recovery is on with
//! 7 days of transaction logs), then the restore of that backup run into the scratch instance
//! (`instances.restoreBackup`), followed with `operations.get` until it is done.

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

/// A long-running Admin API operation (`sql#operation`), as `instances.restoreBackup` and
/// `operations.get` answer it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The operation's name (the id `operations.get` takes).
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE` (`SQL_OPERATION_STATUS_UNSPECIFIED` otherwise).
    #[serde(default)]
    pub status: String,
    /// `RESTORE_VOLUME` for a restore.
    #[serde(default)]
    pub operation_type: Option<String>,
    /// The instance the operation works on (the restore's target).
    #[serde(default)]
    pub target_id: Option<String>,
    /// Set when the operation failed.
    #[serde(default)]
    pub error: Option<OperationErrors>,
}

/// `sql#operationErrors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OperationErrors {
    /// The errors.
    #[serde(default)]
    pub errors: Vec<OperationError>,
}

/// `sql#operationError`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OperationError {
    /// Error code, e.g. `INTERNAL_ERROR`.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

impl Operation {
    /// Why the operation failed, when it carries errors.
    pub fn failure(&self) -> Option<String> {
        let errors = &self.error.as_ref()?.errors;
        if errors.is_empty() {
            return Some("an error without details".to_owned());
        }
        Some(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// The Admin API calls the production path needs.
pub trait CloudSqlAdmin {
    /// `instances.get` → `settings.backupConfiguration`.
    fn backup_configuration(
        &self,
    ) -> impl Future<Output = Result<BackupConfiguration, AdminError>> + Send;
    /// `backupRuns.list`, newest first.
    fn backup_runs(&self) -> impl Future<Output = Result<Vec<BackupRun>, AdminError>> + Send;
    /// `instances.restoreBackup` on `target`: overwrites it with backup run `backup_run_id` of
    /// the source instance.
    fn restore_backup(
        &self,
        backup_run_id: &str,
        target: &str,
    ) -> impl Future<Output = Result<Operation, AdminError>> + Send;
    /// `operations.get`.
    fn operation(&self, name: &str) -> impl Future<Output = Result<Operation, AdminError>> + Send;
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
            // A backup that claims to end in the future (beyond clock skew) proves nothing
            // about the last day; it must not count as fresh.
            if age < -Duration::minutes(5) {
                failures.push(format!(
                    "newest successful backup {} ends in the future ({}), the clock or the API is wrong",
                    run.id,
                    run.end_time.map(|t| t.to_rfc3339()).unwrap_or_default()
                ));
            } else if age > max_age {
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

/// How the restore into the scratch instance runs.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// The scratch instance the backup is restored into (never the source).
    pub scratch_instance: String,
    /// The restore fails when its operation is not done by then.
    pub deadline: std::time::Duration,
    /// Pause between two `operations.get`.
    pub poll: std::time::Duration,
}

/// A restore that finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The operation's name.
    pub operation: String,
    /// From the `restoreBackup` call to the operation's `DONE`.
    pub elapsed: std::time::Duration,
}

/// Restores `run` into the scratch instance and follows the operation until it is `DONE`.
/// Fails with the operation's error, or when the deadline passes first (a request still
/// waiting for an answer at the deadline counts as not done).
pub async fn restore(
    admin: &impl CloudSqlAdmin,
    run: &BackupRun,
    settings: &RestoreSettings,
) -> Result<Restored, AdminError> {
    let started = tokio::time::Instant::now();
    let deadline = started + settings.deadline;
    let late = |name: &str| {
        AdminError(format!(
            "restore of backup run {} into {} not done within the deadline of {} s{}",
            run.id,
            settings.scratch_instance,
            settings.deadline.as_secs(),
            if name.is_empty() {
                String::new()
            } else {
                format!(" (operation {name})")
            }
        ))
    };
    if settings.scratch_instance.is_empty() {
        return Err(AdminError("no scratch instance to restore into".into()));
    }
    let mut op = tokio::time::timeout_at(
        deadline,
        admin.restore_backup(&run.id, &settings.scratch_instance),
    )
    .await
    .map_err(|_| late(""))??;
    loop {
        if let Some(reason) = op.failure() {
            return Err(AdminError(format!(
                "restore of backup run {} into {} failed (operation {}): {reason}",
                run.id, settings.scratch_instance, op.name
            )));
        }
        if op.status == "DONE" {
            // A DONE operation that is not this restore proves nothing was restored
            // (Admin API v1 `sql#operation`: `operationType` RESTORE_VOLUME, `targetId` the
            // instance restored into).
            let kind = op.operation_type.as_deref().unwrap_or("");
            let target = op.target_id.as_deref().unwrap_or("");
            if kind != "RESTORE_VOLUME" || target != settings.scratch_instance {
                return Err(AdminError(format!(
                    "restore of backup run {} into {}: operation {} is DONE but is not that restore (operationType {kind:?}, targetId {target:?})",
                    run.id, settings.scratch_instance, op.name
                )));
            }
            return Ok(Restored {
                operation: op.name,
                elapsed: started.elapsed(),
            });
        }
        if tokio::time::Instant::now() + settings.poll >= deadline {
            return Err(late(&op.name));
        }
        tokio::time::sleep(settings.poll).await;
        op = tokio::time::timeout_at(deadline, admin.operation(&op.name))
            .await
            .map_err(|_| late(&op.name))??;
    }
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
    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/projects/{}{path}",
            self.endpoint.trim_end_matches('/'),
            self.project
        )
    }

    async fn authorised(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AdminError> {
        let Some(token_url) = &self.token_url else {
            return Ok(request);
        };
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
        Ok(request.bearer_auth(token.access_token))
    }

    /// Sends, and on an error status names the API's own message (`{"error":{"message"}}`).
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, AdminError> {
        let response = self
            .authorised(request)
            .await?
            .send()
            .await
            .map_err(|e| AdminError(format!("{what}: {e}")))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| AdminError(format!("{what}: {status}: {e}")))?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(AdminError(format!("{what}: {status}: {message}")));
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value, AdminError> {
        let path = format!("/instances/{}{path}", self.instance);
        self.send(&format!("GET {path}"), self.http.get(self.url(&path)))
            .await
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

    async fn restore_backup(
        &self,
        backup_run_id: &str,
        target: &str,
    ) -> Result<Operation, AdminError> {
        if target == self.instance {
            return Err(AdminError(format!(
                "refusing to restore into the source instance {target}"
            )));
        }
        let path = format!("/instances/{target}/restoreBackup");
        // InstancesRestoreBackupRequest: `backupRunId` is an int64, which the JSON mapping
        // writes as a string (Cloud SQL Admin API v1, RestoreBackupContext).
        let body = serde_json::json!({"restoreBackupContext": {
            "kind": "sql#restoreBackupContext",
            "backupRunId": backup_run_id,
            "project": self.project,
            "instanceId": self.instance,
        }});
        let op = self
            .send(
                &format!("POST {path}"),
                self.http.post(self.url(&path)).json(&body),
            )
            .await?;
        serde_json::from_value(op).map_err(|e| AdminError(format!("restoreBackup: {e}")))
    }

    async fn operation(&self, name: &str) -> Result<Operation, AdminError> {
        let path = format!("/operations/{name}");
        let op = self
            .send(&format!("GET {path}"), self.http.get(self.url(&path)))
            .await?;
        serde_json::from_value(op).map_err(|e| AdminError(format!("operations.get: {e}")))
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
    fn a_backup_ending_in_the_future_is_not_fresh() {
        let runs = [run("9", "SUCCESSFUL", "2026-12-04T02:20:00Z")];
        let found = check(&good(), &runs, now(), Duration::hours(26));
        assert_eq!(
            found.failures,
            [
                "newest successful backup 9 ends in the future (2026-12-04T02:20:00+00:00), the clock or the API is wrong"
            ]
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
