//! The Cloud Run job contract: task index/count/attempt, sharding, run report, exit code.
//!
//! A Cloud Run job task learns who it is from `CLOUD_RUN_JOB`, `CLOUD_RUN_EXECUTION`,
//! `CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT` and `CLOUD_RUN_TASK_ATTEMPT` (index and attempt
//! 0-based). Work is idempotent per *logical date*: the date of the Cloud Scheduler trigger
//! (`X-CloudScheduler-ScheduleTime`, handed to the job as `JOB_SCHEDULE_TIME`), an explicit
//! `JOB_LOGICAL_DATE` for a backfill, or else the execution's own (UTC) date. A double trigger
//! therefore finds the work of its date done, and a missed day is the next run's date.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The job's identity and trigger, from the environment Cloud Run (or the local runner) sets.
#[derive(Debug, Clone, Args)]
pub struct JobConfig {
    /// Cloud Run job name (set by Cloud Run jobs); defaults to the binary's name.
    #[arg(long = "job-name", env = "CLOUD_RUN_JOB")]
    pub job_name: Option<String>,
    /// Execution name (set by Cloud Run jobs); a local run makes one up.
    #[arg(long, env = "CLOUD_RUN_EXECUTION")]
    pub execution: Option<String>,
    /// 0-based index of this task within the execution.
    #[arg(long, env = "CLOUD_RUN_TASK_INDEX", default_value_t = 0)]
    pub task_index: u32,
    /// Number of tasks in the execution.
    #[arg(long, env = "CLOUD_RUN_TASK_COUNT", default_value_t = 1)]
    pub task_count: u32,
    /// 0-based retry attempt of this task.
    #[arg(long, env = "CLOUD_RUN_TASK_ATTEMPT", default_value_t = 0)]
    pub task_attempt: u32,
    /// The trigger's schedule time, RFC 3339 (the value of `X-CloudScheduler-ScheduleTime`).
    #[arg(long, env = "JOB_SCHEDULE_TIME")]
    pub schedule_time: Option<String>,
    /// Logical date (YYYY-MM-DD) to run for, e.g. a backfill; wins over the schedule time.
    #[arg(long, env = "JOB_LOGICAL_DATE")]
    pub logical_date: Option<NaiveDate>,
}

/// Why the job contract could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    /// `JOB_SCHEDULE_TIME` is not an RFC 3339 instant.
    #[error("JOB_SCHEDULE_TIME is not an RFC 3339 time: {0:?}")]
    ScheduleTime(String),
    /// The schedule time or logical date lies in the future: a date whose work would then be
    /// recorded as done before its day (and skipped when it comes), or a cutoff moved ahead.
    #[error("{what} {value} is in the future (now {now})")]
    Future {
        /// Which input.
        what: &'static str,
        /// The value given.
        value: String,
        /// The execution's start.
        now: String,
    },
    /// The task index is not below the task count.
    #[error("CLOUD_RUN_TASK_INDEX {index} is not below CLOUD_RUN_TASK_COUNT {count}")]
    TaskIndex {
        /// The index given.
        index: u32,
        /// The count given.
        count: u32,
    },
}

/// One task of one execution, working for one logical date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Job name.
    pub job: String,
    /// Execution name.
    pub execution: String,
    /// 0-based task index.
    pub index: u32,
    /// Number of tasks.
    pub count: u32,
    /// 0-based attempt.
    pub attempt: u32,
    /// The date the work is for.
    pub logical_date: NaiveDate,
}

/// How far a schedule time may lie ahead of the execution's clock: Cloud Scheduler fires at or
/// after its schedule time, so only clock skew is allowed.
pub const SCHEDULE_TIME_SKEW: chrono::Duration = chrono::Duration::minutes(10);

/// The UTC date of a Cloud Scheduler schedule time (`2026-03-29T01:30:00Z`, any offset).
pub fn logical_date_from_schedule_time(value: &str) -> Result<NaiveDate, JobError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc).date_naive())
        .map_err(|_| JobError::ScheduleTime(value.to_owned()))
}

impl JobConfig {
    /// The task this process is, `now` being the execution's start.
    pub fn task(&self, default_job: &str, now: DateTime<Utc>) -> Result<Task, JobError> {
        let count = self.task_count.max(1);
        if self.task_index >= count {
            return Err(JobError::TaskIndex {
                index: self.task_index,
                count,
            });
        }
        let logical_date = match (&self.logical_date, &self.schedule_time) {
            (Some(date), _) => {
                if *date > now.date_naive() {
                    return Err(JobError::Future {
                        what: "JOB_LOGICAL_DATE",
                        value: date.to_string(),
                        now: now.to_rfc3339(),
                    });
                }
                *date
            }
            (None, Some(t)) => {
                let at = DateTime::parse_from_rfc3339(t.trim())
                    .map_err(|_| JobError::ScheduleTime(t.clone()))?;
                if at.with_timezone(&Utc) > now + SCHEDULE_TIME_SKEW {
                    return Err(JobError::Future {
                        what: "JOB_SCHEDULE_TIME",
                        value: t.trim().to_owned(),
                        now: now.to_rfc3339(),
                    });
                }
                logical_date_from_schedule_time(t)?
            }
            (None, None) => now.date_naive(),
        };
        let job = self
            .job_name
            .clone()
            .unwrap_or_else(|| default_job.to_owned());
        let execution = self.execution.clone().unwrap_or_else(|| {
            format!(
                "{job}-local-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
        });
        Ok(Task {
            job,
            execution,
            index: self.task_index,
            count,
            attempt: self.task_attempt,
            logical_date,
        })
    }
}

impl Task {
    /// The shard (0..count) a work item belongs to; stable across runs, machines and versions.
    pub fn shard_of(&self, key: &str) -> u32 {
        shard_of(key, self.count)
    }

    /// Whether this task owns the work item `key`.
    pub fn owns(&self, key: &str) -> bool {
        self.shard_of(key) == self.index
    }
}

/// FNV-1a 64 of `key`, modulo `count`: a fixed function, unlike `std`'s randomised hasher.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u32
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The work of the logical date is done.
    Succeeded,
    /// The work of the logical date had already been done by an earlier run; nothing changed.
    Skipped,
    /// The work failed; `failures` says why. The process exits non-zero.
    Failed,
}

/// The structured result of one task run: logged as one entry and stored by the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Job name.
    pub job: String,
    /// Execution name.
    pub execution: String,
    /// Task index.
    pub task_index: u32,
    /// Task count.
    pub task_count: u32,
    /// Attempt.
    pub attempt: u32,
    /// The date the work was for.
    pub logical_date: NaiveDate,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The job's own figures (counts, durations, ids).
    pub figures: Map<String, Value>,
    /// Human-readable reasons, one per failed check.
    pub failures: Vec<String>,
}

impl RunReport {
    /// A report for `task` that started at `started_at`.
    pub fn new(task: &Task, started_at: DateTime<Utc>) -> Self {
        Self {
            job: task.job.clone(),
            execution: task.execution.clone(),
            task_index: task.index,
            task_count: task.count,
            attempt: task.attempt,
            logical_date: task.logical_date,
            started_at,
            finished_at: started_at,
            outcome: Outcome::Succeeded,
            figures: Map::new(),
            failures: Vec::new(),
        }
    }

    /// Records a figure.
    pub fn figure(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.figures.insert(key.to_owned(), value.into());
        self
    }

    /// Records a failure; the run fails.
    pub fn fail(&mut self, reason: impl Into<String>) -> &mut Self {
        self.failures.push(reason.into());
        self.outcome = Outcome::Failed;
        self
    }

    /// Ends the report at `now`.
    pub fn finish(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.finished_at = now;
        if !self.failures.is_empty() {
            self.outcome = Outcome::Failed;
        }
        self
    }

    /// Whether the run succeeded (or had nothing left to do).
    pub fn ok(&self) -> bool {
        self.outcome != Outcome::Failed
    }

    /// Writes the report as one log entry: severity ERROR on failure (what the alert policy
    /// matches, `jsonPayload.job_outcome="failed"`), INFO otherwise.
    pub fn log(&self) {
        let report = serde_json::to_string(self).unwrap_or_default();
        let outcome = match self.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        };
        if self.ok() {
            tracing::info!(
                job = %self.job,
                execution = %self.execution,
                logical_date = %self.logical_date,
                job_outcome = outcome,
                job_report = %report,
                "job run {outcome}"
            );
        } else {
            tracing::error!(
                job = %self.job,
                execution = %self.execution,
                logical_date = %self.logical_date,
                job_outcome = outcome,
                job_report = %report,
                failures = %self.failures.join("; "),
                "job run failed"
            );
        }
    }

    /// The process exit code: 0 only when the run succeeded.
    pub fn exit_code(&self) -> ExitCode {
        if self.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Stores a report in `job_runs`; the same task attempt stored again replaces its row.
#[cfg(feature = "db")]
pub async fn store_report(pool: &sqlx::PgPool, report: &RunReport) -> Result<(), sqlx::Error> {
    let outcome = serde_json::to_value(report.outcome).unwrap_or(Value::Null);
    sqlx::query(
        "INSERT INTO job_runs (job, execution, task_index, attempt, task_count, logical_date,
                               outcome, started_at, finished_at, figures, failures)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (job, execution, task_index, attempt) DO UPDATE SET
             outcome = EXCLUDED.outcome, finished_at = EXCLUDED.finished_at,
             figures = EXCLUDED.figures, failures = EXCLUDED.failures",
    )
    .bind(&report.job)
    .bind(&report.execution)
    .bind(report.task_index as i32)
    .bind(report.attempt as i32)
    .bind(report.task_count as i32)
    .bind(report.logical_date)
    .bind(outcome.as_str().unwrap_or("failed"))
    .bind(report.started_at)
    .bind(report.finished_at)
    .bind(Value::Object(report.figures.clone()))
    .bind(serde_json::to_value(&report.failures).unwrap_or(Value::Null))
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        job: JobConfig,
    }

    fn config(args: &[&str]) -> JobConfig {
        let mut all = vec!["job"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").job
    }

    fn now() -> DateTime<Utc> {
        "2026-03-29T23:59:00Z".parse().expect("time")
    }

    #[test]
    fn logical_date_is_the_utc_date_of_the_schedule_time() {
        assert_eq!(
            logical_date_from_schedule_time("2026-03-29T01:30:00Z"),
            Ok(NaiveDate::from_ymd_opt(2026, 3, 29).expect("date"))
        );
        assert_eq!(
            logical_date_from_schedule_time("2026-03-29T01:30:00+02:00"),
            Ok(NaiveDate::from_ymd_opt(2026, 3, 28).expect("date"))
        );
        assert!(logical_date_from_schedule_time("yesterday").is_err());
    }

    #[test]
    fn explicit_logical_date_wins_over_schedule_time_which_wins_over_the_clock() {
        let task = config(&[
            "--schedule-time",
            "2026-01-02T03:30:00Z",
            "--logical-date",
            "2025-12-31",
        ])
        .task("j", now())
        .expect("task");
        assert_eq!(task.logical_date.to_string(), "2025-12-31");
        let task = config(&["--schedule-time", "2026-01-02T03:30:00Z"])
            .task("j", now())
            .expect("task");
        assert_eq!(task.logical_date.to_string(), "2026-01-02");
        let task = config(&[]).task("j", now()).expect("task");
        assert_eq!(task.logical_date.to_string(), "2026-03-29");
    }

    #[test]
    fn a_schedule_time_or_logical_date_in_the_future_is_refused() {
        // now() is 2026-03-29T23:59Z: tomorrow's date would mark tomorrow's work done today.
        let err = config(&["--logical-date", "2026-03-30"])
            .task("j", now())
            .expect_err("refused");
        assert!(
            matches!(
                err,
                JobError::Future {
                    what: "JOB_LOGICAL_DATE",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = config(&["--schedule-time", "2026-03-30T03:30:00Z"])
            .task("j", now())
            .expect_err("refused");
        assert!(
            matches!(
                err,
                JobError::Future {
                    what: "JOB_SCHEDULE_TIME",
                    ..
                }
            ),
            "{err:?}"
        );
        // The same instant in another offset is as far ahead.
        assert!(
            config(&["--schedule-time", "2026-03-30T05:30:00+02:00"])
                .task("j", now())
                .is_err()
        );
        // Clock skew of a few minutes is allowed; today's date is not the future.
        let task = config(&["--schedule-time", "2026-03-30T00:05:00Z"])
            .task("j", now())
            .expect("skew");
        assert_eq!(task.logical_date.to_string(), "2026-03-30");
        let task = config(&["--logical-date", "2026-03-29"])
            .task("j", now())
            .expect("today");
        assert_eq!(task.logical_date.to_string(), "2026-03-29");
    }

    #[test]
    fn a_local_run_names_its_own_execution_after_the_job() {
        let task = config(&[]).task("log-archiver", now()).expect("task");
        assert_eq!(task.job, "log-archiver");
        assert!(task.execution.starts_with("log-archiver-local-"));
        assert_eq!((task.index, task.count, task.attempt), (0, 1, 0));
    }

    #[test]
    fn task_index_beyond_the_count_is_refused() {
        let err = config(&["--task-index", "3", "--task-count", "3"])
            .task("j", now())
            .expect_err("refused");
        assert_eq!(err, JobError::TaskIndex { index: 3, count: 3 });
    }

    #[test]
    fn every_key_belongs_to_exactly_one_of_the_shards_and_shards_are_balanced() {
        let count = 4;
        let mut per_shard = [0u32; 4];
        for i in 0..10_000 {
            let key = format!("users/{i}");
            let owners: Vec<u32> = (0..count)
                .filter(|&index| {
                    Task {
                        job: "j".into(),
                        execution: "e".into(),
                        index,
                        count,
                        attempt: 0,
                        logical_date: now().date_naive(),
                    }
                    .owns(&key)
                })
                .collect();
            assert_eq!(owners.len(), 1);
            per_shard[owners[0] as usize] += 1;
        }
        for n in per_shard {
            assert!(
                (2300..2700).contains(&n),
                "unbalanced shards: {per_shard:?}"
            );
        }
        assert_eq!(shard_of("users/42", 4), shard_of("users/42", 4));
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn a_report_with_a_failure_fails_and_exits_non_zero() {
        let task = config(&[]).task("j", now()).expect("task");
        let mut report = RunReport::new(&task, now());
        report.figure("rows", 3);
        assert!(report.ok());
        assert_eq!(report.exit_code(), ExitCode::SUCCESS);
        report.fail("dump truncated").finish(now());
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.exit_code(), ExitCode::FAILURE);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["figures"]["rows"], 3);
        assert_eq!(json["failures"][0], "dump truncated");
    }
}
