//! The local stand-in for Cloud Scheduler: reads `scheduler/*.yaml` (the files Terraform
//! reads), fires each job on its unix-cron schedule, or one job on demand. A `cloud-run-job`
//! target runs the job's binary with the Cloud Run job environment (`CLOUD_RUN_JOB`,
//! `CLOUD_RUN_EXECUTION`, `CLOUD_RUN_TASK_*`) plus `JOB_SCHEDULE_TIME`, retrying failed attempts
//! with the file's backoff; an `http` target gets a POST with Cloud Scheduler's headers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use serde::Deserialize;

/// One `scheduler/*.yaml` file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Schedule {
    /// Cloud Scheduler job name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// unix-cron.
    pub schedule: String,
    /// Time zone; only UTC is accepted (DST nights neither repeat nor vanish).
    pub time_zone: String,
    /// What it calls.
    pub target: Target,
    /// Retry policy.
    pub retry: Retry,
    /// Deadline of one attempt, seconds.
    pub attempt_deadline_seconds: u64,
    /// Account the call authenticates as.
    pub service_account: String,
}

/// What a schedule calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Target {
    /// A Cloud Run job, run here as the binary of the same name.
    CloudRunJob {
        /// Job (= binary) name.
        job: String,
    },
    /// A Cloud Run service path, called here through the local entry point.
    Http {
        /// Service name.
        service: String,
        /// Path.
        path: String,
        /// JSON body.
        #[serde(default)]
        body: Option<String>,
    },
}

/// Cloud Scheduler's retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Retry {
    /// Retries after the first attempt.
    pub retry_count: u32,
    /// First backoff.
    pub min_backoff_seconds: u64,
    /// Largest backoff.
    pub max_backoff_seconds: u64,
    /// Times the backoff doubles before it grows linearly.
    pub max_doublings: u32,
}

impl Retry {
    /// The wait before retry number `n` (1-based): doubling `max_doublings` times, then
    /// growing by the last doubled step, capped at the maximum (Cloud Scheduler's rule).
    pub fn backoff(&self, n: u32) -> Duration {
        let n = n.max(1) - 1;
        let doubled = n.min(self.max_doublings);
        let step = self
            .min_backoff_seconds
            .saturating_mul(1u64 << doubled.min(32));
        let linear = u64::from(n - doubled) * step;
        Duration::from_secs(step.saturating_add(linear).min(self.max_backoff_seconds))
    }
}

/// A schedule file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The file cannot be read.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// The YAML does not match the contract (scheduler/README.md).
    #[error("{0}: {1}")]
    Yaml(String, String),
    /// The cron expression is not valid unix-cron.
    #[error("{0}: schedule {1:?}: {2}")]
    Cron(String, String, String),
    /// Not UTC.
    #[error("{0}: time_zone {1} is not UTC")]
    Zone(String, String),
    /// No schedule of that name or job.
    #[error("no schedule or job named {0} in scheduler/")]
    Unknown(String),
}

/// Reads every `*.yaml` in `dir`, sorted by file name.
pub fn load(dir: &Path) -> Result<Vec<(Schedule, Cron)>, ScheduleError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ScheduleError::Read(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|e| ScheduleError::Read(name.clone(), e))?;
            let schedule: Schedule = serde_norway::from_str(&text)
                .map_err(|e| ScheduleError::Yaml(name.clone(), e.to_string()))?;
            if !matches!(schedule.time_zone.as_str(), "Etc/UTC" | "UTC") {
                return Err(ScheduleError::Zone(name, schedule.time_zone));
            }
            let cron = Cron::parse(&schedule.schedule)
                .map_err(|e| ScheduleError::Cron(name, schedule.schedule.clone(), e))?;
            Ok((schedule, cron))
        })
        .collect()
}

/// A parsed unix-cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn field(text: &str, min: u32, max: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("zero step in {part:?}"));
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse().map_err(|_| format!("bad number in {part:?}"))?;
            let b = b.parse().map_err(|_| format!("bad number in {part:?}"))?;
            (a, b)
        } else {
            let a: u32 = range
                .parse()
                .map_err(|_| format!("bad number in {part:?}"))?;
            (a, if part.contains('/') { max } else { a })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text != "*"))
}

impl Cron {
    /// Parses five fields; day-of-week 0 and 7 are Sunday.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts[..] else {
            return Err(format!("{} fields, 5 expected", parts.len()));
        };
        let (minutes, _) = field(m, 0, 59)?;
        let (hours, _) = field(h, 0, 23)?;
        let (days, days_restricted) = field(dom, 1, 31)?;
        let (months, _) = field(mon, 1, 12)?;
        let (mut weekdays, weekdays_restricted) = field(dow, 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    /// Whether the schedule fires in the minute of `t`.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        let bit = |set: u64, v: u32| set & (1 << v) != 0;
        let dom = bit(self.days, t.day());
        let dow = bit(self.weekdays, t.weekday().num_days_from_sunday());
        // unix-cron: when both day fields are restricted, either may match.
        let day = if self.days_restricted && self.weekdays_restricted {
            dom || dow
        } else {
            dom && dow
        };
        bit(self.minutes, t.minute())
            && bit(self.hours, t.hour())
            && bit(self.months, t.month())
            && day
    }

    /// The first firing strictly after `t` (within five years).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let mut candidate = start;
        while candidate - start < chrono::Duration::days(5 * 366) {
            if self.matches(candidate) {
                return Some(candidate);
            }
            candidate += if bit_hour(self.hours, candidate.hour()) {
                chrono::Duration::minutes(1)
            } else {
                chrono::Duration::minutes(i64::from(60 - candidate.minute()))
            };
        }
        None
    }
}

fn bit_hour(hours: u64, hour: u32) -> bool {
    hours & (1 << hour) != 0
}

/// How the runner reaches the jobs and services.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Directory holding the job binaries (the build's output directory).
    pub bin_dir: PathBuf,
    /// Local entry point for `http` targets.
    pub gateway: String,
    /// Sleep between retries (false in tests that only count attempts).
    pub backoff: bool,
}

/// The result of firing one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Execution name handed to the job.
    pub execution: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the last attempt succeeded.
    pub succeeded: bool,
}

impl Runner {
    /// Fires `schedule` for the schedule time `at`, retrying per its policy.
    pub async fn fire(&self, schedule: &Schedule, at: DateTime<Utc>) -> Fired {
        let execution = format!(
            "{}-{}-{}",
            match &schedule.target {
                Target::CloudRunJob { job } => job.as_str(),
                Target::Http { service, .. } => service.as_str(),
            },
            at.format("%Y%m%d%H%M"),
            &uuid::Uuid::new_v4().simple().to_string()[..5]
        );
        let mut attempt = 0;
        loop {
            let ok = match &schedule.target {
                Target::CloudRunJob { job } => self.run_job(job, &execution, attempt, at).await,
                Target::Http { path, body, .. } => {
                    self.call(schedule, path, body.as_deref(), at).await
                }
            };
            attempt += 1;
            if ok || attempt > schedule.retry.retry_count {
                tracing::info!(schedule = %schedule.name, %execution, attempts = attempt, succeeded = ok, "scheduled job finished");
                return Fired {
                    execution,
                    attempts: attempt,
                    succeeded: ok,
                };
            }
            let wait = schedule.retry.backoff(attempt);
            tracing::warn!(schedule = %schedule.name, %execution, attempt, wait_secs = wait.as_secs(), "attempt failed; retrying");
            if self.backoff {
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn run_job(&self, job: &str, execution: &str, attempt: u32, at: DateTime<Utc>) -> bool {
        let bin = self.bin_dir.join(job);
        let status = tokio::process::Command::new(&bin)
            .env("CLOUD_RUN_JOB", job)
            .env("CLOUD_RUN_EXECUTION", execution)
            .env("CLOUD_RUN_TASK_INDEX", "0")
            .env("CLOUD_RUN_TASK_COUNT", "1")
            .env("CLOUD_RUN_TASK_ATTEMPT", attempt.to_string())
            .env(
                "JOB_SCHEDULE_TIME",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .kill_on_drop(true)
            .status()
            .await;
        match status {
            Ok(s) => s.success(),
            Err(e) => {
                tracing::error!(binary = %bin.display(), error = %e, "cannot start the job; build it first (cargo build)");
                false
            }
        }
    }

    async fn call(
        &self,
        schedule: &Schedule,
        path: &str,
        body: Option<&str>,
        at: DateTime<Utc>,
    ) -> bool {
        let url = format!("{}{path}", self.gateway.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .post(&url)
            .timeout(Duration::from_secs(schedule.attempt_deadline_seconds))
            .header("User-Agent", "Google-Cloud-Scheduler")
            .header("X-CloudScheduler", "true")
            .header(
                "X-CloudScheduler-JobName",
                format!(
                    "projects/local/locations/europe-west3/jobs/{}",
                    schedule.name
                ),
            )
            .header(
                "X-CloudScheduler-ScheduleTime",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .header("Content-Type", "application/json")
            .body(body.unwrap_or("").to_owned())
            .send()
            .await;
        matches!(response, Ok(r) if r.status().is_success())
    }
}

/// Finds a schedule by its name or its target job's name.
pub fn find<'a>(
    schedules: &'a [(Schedule, Cron)],
    name: &str,
) -> Result<&'a Schedule, ScheduleError> {
    schedules
        .iter()
        .map(|(s, _)| s)
        .find(|s| s.name == name || matches!(&s.target, Target::CloudRunJob { job } if job == name))
        .ok_or_else(|| ScheduleError::Unknown(name.to_owned()))
}

/// Fires every schedule on time until Ctrl-C; runs of different schedules may overlap.
pub async fn serve(runner: Runner, schedules: Vec<(Schedule, Cron)>) {
    for (s, cron) in &schedules {
        if let Some(next) = cron.next_after(Utc::now()) {
            tracing::info!(schedule = %s.name, cron = %s.schedule, %next, "scheduled");
        }
    }
    loop {
        let now = Utc::now();
        let Some((next, due)) = schedules
            .iter()
            .filter_map(|(s, c)| c.next_after(now).map(|t| (t, s)))
            .min_by_key(|(t, _)| *t)
            .map(|(t, _)| {
                let due: Vec<Schedule> = schedules
                    .iter()
                    .filter(|(_, c)| c.next_after(now) == Some(t))
                    .map(|(s, _)| s.clone())
                    .collect();
                (t, due)
            })
        else {
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return,
        }
        for schedule in due {
            let runner = runner.clone();
            tokio::spawn(async move { runner.fire(&schedule, next).await });
        }
    }
}

/// `scheduler`: fire every schedule on time.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub platform: common::config::PlatformConfig,
    /// Directory of the schedule files.
    #[arg(long, env = "SCHEDULER_DIR", default_value = "scheduler")]
    pub dir: PathBuf,
    /// Directory of the job binaries; defaults to this binary's own directory.
    #[arg(long, env = "JOB_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Local entry point that `http` targets are called through.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
}

/// `run-job NAME`: fire one schedule now.
#[derive(Debug, clap::Args)]
pub struct RunJobArgs {
    /// Schedule name (`backup-verification-nightly`) or job name (`backup-verification`).
    pub name: String,
    /// Schedule time to hand the job (RFC 3339); defaults to now.
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
    /// Make one attempt only.
    #[arg(long)]
    pub no_retry: bool,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn runner(args: &SchedulerArgs) -> Result<Runner, BoxError> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("cannot tell this binary's directory")?,
    };
    Ok(Runner {
        bin_dir,
        gateway: args.gateway.clone(),
        backoff: true,
    })
}

/// Runs the `scheduler` subcommand.
pub async fn run_scheduler(args: SchedulerArgs) -> Result<(), BoxError> {
    let schedules = load(&args.dir)?;
    serve(runner(&args)?, schedules).await;
    Ok(())
}

/// Runs the `run-job` subcommand; fails when the job's last attempt failed.
pub async fn run_job(args: RunJobArgs) -> Result<(), BoxError> {
    let schedules = load(&args.scheduler.dir)?;
    let mut schedule = find(&schedules, &args.name)?.clone();
    if args.no_retry {
        schedule.retry.retry_count = 0;
    }
    let at = args.at.unwrap_or_else(|| {
        Utc::now()
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or_else(Utc::now)
    });
    let fired = runner(&args.scheduler)?.fire(&schedule, at).await;
    if fired.succeeded {
        println!(
            "{}: {} succeeded after {} attempt(s)",
            schedule.name, fired.execution, fired.attempts
        );
        Ok(())
    } else {
        Err(format!(
            "{}: {} failed after {} attempt(s)",
            schedule.name, fired.execution, fired.attempts
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn scheduler_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scheduler")
    }

    #[test]
    fn the_repository_schedules_load_with_their_targets_and_utc_zones() {
        let schedules = load(&scheduler_dir()).expect("scheduler/*.yaml");
        let names: Vec<&str> = schedules.iter().map(|(s, _)| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "backup-verification-nightly",
                "log-archiver-weekly",
                "retention-daily"
            ]
        );
        let backup = find(&schedules, "backup-verification").expect("by job name");
        assert_eq!(
            backup.target,
            Target::CloudRunJob {
                job: "backup-verification".into()
            }
        );
        assert_eq!(backup.retry.retry_count, 3);
        assert_eq!(backup.service_account, "scheduler-invoker");
        assert!(find(&schedules, "nope").is_err());
    }

    #[test]
    fn the_nightly_backup_check_fires_at_0330_utc_every_day() {
        let cron = Cron::parse("30 3 * * *").expect("cron");
        assert_eq!(
            cron.next_after(t("2026-12-03T03:29:59Z")),
            Some(t("2026-12-03T03:30:00Z"))
        );
        assert_eq!(
            cron.next_after(t("2026-12-03T03:30:00Z")),
            Some(t("2026-12-04T03:30:00Z"))
        );
        // The night Europe/Berlin leaves summer time is an ordinary UTC day.
        assert_eq!(
            cron.next_after(t("2026-10-25T00:00:00Z")),
            Some(t("2026-10-25T03:30:00Z"))
        );
    }

    #[test]
    fn the_weekly_archive_fires_on_sundays_at_0400_utc() {
        let cron = Cron::parse("0 4 * * 0").expect("cron");
        // 2026-12-03 is a Thursday.
        assert_eq!(
            cron.next_after(t("2026-12-03T12:00:00Z")),
            Some(t("2026-12-06T04:00:00Z"))
        );
        assert_eq!(Cron::parse("0 4 * * 7").expect("cron"), cron);
    }

    #[test]
    fn cron_lists_ranges_and_steps_follow_unix_cron() {
        let cron = Cron::parse("*/15 9-17 * * 1-5").expect("cron");
        assert_eq!(
            cron.next_after(t("2026-12-04T17:50:00Z")),
            Some(t("2026-12-07T09:00:00Z"))
        );
        assert_eq!(
            cron.next_after(t("2026-12-07T09:00:00Z")),
            Some(t("2026-12-07T09:15:00Z"))
        );
        // Both day fields restricted: either matches.
        let either = Cron::parse("0 0 1 * 1").expect("cron");
        assert_eq!(
            either.next_after(t("2026-12-01T00:00:00Z")),
            Some(t("2026-12-07T00:00:00Z"))
        );
        assert!(Cron::parse("60 * * * *").is_err());
        assert!(Cron::parse("* * * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
    }

    #[test]
    fn backoff_doubles_then_grows_linearly_up_to_the_maximum() {
        let retry = Retry {
            retry_count: 5,
            min_backoff_seconds: 30,
            max_backoff_seconds: 600,
            max_doublings: 3,
        };
        let waits: Vec<u64> = (1..=6).map(|n| retry.backoff(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600]);
    }

    #[tokio::test]
    async fn a_failing_job_is_retried_with_the_next_attempt_number_and_the_schedule_time() {
        let dir = std::env::temp_dir().join(format!("sched-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("calls.log");
        let script = dir.join("fake-job");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$CLOUD_RUN_JOB $CLOUD_RUN_EXECUTION $CLOUD_RUN_TASK_INDEX/$CLOUD_RUN_TASK_COUNT $CLOUD_RUN_TASK_ATTEMPT $JOB_SCHEDULE_TIME\" >> {}\n[ \"$CLOUD_RUN_TASK_ATTEMPT\" -ge 1 ]\n",
                log.display()
            ),
        )
        .expect("script");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .expect("chmod");
        let schedule = Schedule {
            name: "fake-nightly".into(),
            description: String::new(),
            schedule: "30 3 * * *".into(),
            time_zone: "Etc/UTC".into(),
            target: Target::CloudRunJob {
                job: "fake-job".into(),
            },
            retry: Retry {
                retry_count: 3,
                min_backoff_seconds: 30,
                max_backoff_seconds: 600,
                max_doublings: 3,
            },
            attempt_deadline_seconds: 1800,
            service_account: "scheduler-invoker".into(),
        };
        let runner = Runner {
            bin_dir: dir.clone(),
            gateway: "http://127.0.0.1:1".into(),
            backoff: false,
        };

        let fired = runner.fire(&schedule, t("2026-12-03T03:30:00Z")).await;

        assert_eq!(fired.attempts, 2);
        assert!(fired.succeeded);
        assert!(fired.execution.starts_with("fake-job-202612030330-"));
        let calls = std::fs::read_to_string(&log).expect("log");
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(
            lines,
            [
                format!("fake-job {} 0/1 0 2026-12-03T03:30:00Z", fired.execution),
                format!("fake-job {} 0/1 1 2026-12-03T03:30:00Z", fired.execution),
            ]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
