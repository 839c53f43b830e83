//! `log-archiver`: weekly Cloud Run job (Cloud Scheduler, `scheduler/log-archiver.yaml`) that
//! moves Firestore analysis logs and events older than the hot window to Cloud Storage as gzip
//! NDJSON chunks plus a manifest, deleting each document only after its chunk has been read back
//! and verified.
//!
//! Layout under `{prefix}/{logical date}/{collection group}/`: `chunk-{hash}.ndjson.gz`, named by
//! the SHA-256 of the document paths it holds, and `manifest.json`, written last. A run that
//! stops anywhere leaves either documents still in Firestore (archived again next time, into an
//! object of the same name) or a chunk no manifest lists. The next run, whatever its logical
//! date, first looks for such chunks under every date of the prefix, verifies each again,
//! deletes its documents and rewrites that date's manifest to list it; so a rerun loses nothing
//! and archives nothing twice.
//!
//! The audit trail in PostgreSQL (`audit_log`) past its own hot window goes the same way, under
//! `AUDIT_ARCHIVE_PREFIX`, its chain checked before anything is deleted: [`audit`].
//!
//! A document is deleted only if its `update_time` is still the archived one (a Firestore
//! precondition): one written after its chunk was uploaded stays and is archived, in its new
//! version, by the next run. One run at a time works on a group: `{prefix}/locks/{group}.lock`
//! is created only if absent and removed at the end; a second run finds it and skips the group
//! (exit 0, reported as `locked`). Its lease ([`LOCK_LEASE`]) outlasts the job's task timeout,
//! so only a crashed run's lock ends by lease; a retry of the same task takes its own lock over.

pub mod audit;
pub mod erase;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, Write as _};
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::config::PlatformConfig;
use common::job::{JobConfig, JobError, RunReport, Task};
use common::storage::{Storage, StorageConfig, StorageError, StoredObject};
use firestore::gcloud_sdk::google::firestore::v1::{Document, Value as FsValue, value::ValueType};
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreTimestamp, FirestoreWritePrecondition};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "log-archiver",
    about = "Archives Firestore logs past the hot window"
)]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub job: JobConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
    /// Archive bucket (Nearline, 1-year retention by its lifecycle rule).
    #[arg(long, env = "ARCHIVE_BUCKET")]
    pub bucket: String,
    /// Object name prefix inside the bucket.
    #[arg(long, env = "ARCHIVE_PREFIX", default_value = "firestore")]
    pub prefix: String,
    /// Days a document stays in Firestore before it is archived.
    #[arg(long, env = "ARCHIVE_HOT_DAYS", default_value_t = 90)]
    pub hot_days: u32,
    /// Documents per archive chunk.
    #[arg(long, env = "ARCHIVE_CHUNK_DOCS", default_value_t = 2000)]
    pub chunk_docs: u32,
    /// Collection groups to archive, comma-separated.
    #[arg(
        long,
        env = "ARCHIVE_COLLECTION_GROUPS",
        value_delimiter = ',',
        default_value = "analysis_logs,events"
    )]
    pub collection_groups: Vec<String>,
    /// PostgreSQL holding the audit trail (Secret Manager). Unset: the audit trail is not
    /// archived (local runs of the Firestore part only; Terraform sets it, RUN-ENV-WIRED checks).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<SecretString>,
    /// Object name prefix of the audit trail's chunks inside the bucket.
    #[arg(long, env = "AUDIT_ARCHIVE_PREFIX", default_value = "audit")]
    pub audit_prefix: String,
    /// Days an audit entry stays in PostgreSQL before it is archived. 90, as the Firestore logs'
    /// hot window: a quarter stays queryable in the database for access reviews and requests;
    /// the archive bucket keeps the chunks one year more (its lifecycle rule), about 15 months
    /// in all. No statute sets a period for access logs; it weighs storage limitation (GDPR
    /// Art. 5(1)(e)) against accountability (Art. 5(2)).
    #[arg(long, env = "AUDIT_HOT_DAYS", default_value_t = 90)]
    pub audit_hot_days: u32,
    /// Audit entries per archive chunk.
    #[arg(long, env = "AUDIT_CHUNK_ENTRIES", default_value_t = 5000)]
    pub audit_chunk_entries: u32,
    /// Create the bucket when it is missing (local runs; Terraform owns production buckets).
    #[arg(long, env = "ARCHIVE_CREATE_BUCKET", default_value_t = false)]
    pub create_bucket: bool,
}

/// Why an archive run failed. Every variant fails the run (non-zero exit); a rerun resumes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration is incomplete.
    #[error("configuration: {0}")]
    Config(String),
    /// The job contract could not be read.
    #[error(transparent)]
    Job(#[from] JobError),
    /// Firestore failed.
    #[error("firestore: {0}")]
    Firestore(#[from] firestore::errors::FirestoreError),
    /// A Firestore call failed after its bounded retries, or a write in a batch failed.
    #[error("firestore: {0}")]
    FirestoreCall(String),
    /// Cloud Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// The audit trail in the database does not match the chunk, or another run moved the
    /// checkpoint: nothing was deleted, the chunk stays.
    #[error("audit archive: {0}")]
    Conflict(String),
    /// A chunk read back differs from what was written; its documents stay in Firestore.
    #[error("chunk {object} failed verification: {reason}")]
    Verify {
        /// The object.
        object: String,
        /// What differed.
        reason: String,
    },
    /// The run was stopped on purpose (tests of an interrupted run).
    #[error("interrupted at {0}")]
    Interrupted(&'static str),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a lock holds: longer than the job's task timeout (`timeoutSeconds: 3600` in the
/// Cloud Run job), so a live run's lock never ends under it; a crashed run's lock ends within it.
pub const LOCK_LEASE: Duration = Duration::hours(2);

/// How long one Firestore BatchWrite is retried on transient errors before the run fails.
pub const FIRESTORE_RETRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest one Firestore request (or wait for the next streamed response) may take.
pub const FIRESTORE_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An RFC 3339 time as Firestore's instant.
fn instant(rfc3339: &str) -> Option<firestore::FirestoreInstant> {
    let t = DateTime::parse_from_rfc3339(rfc3339).ok()?;
    firestore::timestamp_utils::from_timestamp(firestore::gcloud_sdk::prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).ok()?,
    })
    .ok()
}

/// Where a test stops a run, to prove that a rerun recovers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    /// Run to the end.
    #[default]
    None,
    /// Stop after the n-th chunk (1-based) is uploaded, before it is verified or deleted.
    AfterUpload(usize),
    /// Stop after the first deletes of the n-th chunk (1-based): some of its documents gone.
    MidDelete(usize),
}

/// The clients and settings of one run.
#[derive(Clone)]
pub struct Archiver {
    /// Firestore.
    pub db: FirestoreDb,
    /// The archive bucket.
    pub storage: Storage,
    /// Object prefix.
    pub prefix: String,
    /// Hot window in days.
    pub hot_days: u32,
    /// Documents per chunk.
    pub chunk_docs: u32,
    /// Collection groups.
    pub groups: Vec<String>,
}

/// What one collection group's archive for a date holds (the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Collection group.
    pub collection_group: String,
    /// Logical date of the run that archived it.
    pub logical_date: NaiveDate,
    /// Documents created before this instant were archived.
    pub cutoff: DateTime<Utc>,
    /// Total documents over all chunks.
    pub documents: u64,
    /// Total bytes over all chunks.
    pub bytes: u64,
    /// Every chunk, in name order.
    pub objects: Vec<ManifestObject>,
}

/// One chunk in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Object name.
    pub name: String,
    /// Documents (NDJSON lines) in it.
    pub documents: u64,
    /// Object size in bytes (gzip).
    pub bytes: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
    /// CRC32C of the object, as the JSON API gives it (base64 of the big-endian value).
    pub crc32c: String,
}

/// Figures of one run over all groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Documents archived and deleted by this run (new chunks).
    pub archived: u64,
    /// Documents deleted at start-up because an earlier run had archived them.
    pub recovered: u64,
    /// Chunks written by this run.
    pub chunks: u64,
    /// Gzip bytes written by this run.
    pub bytes: u64,
    /// Uncompressed NDJSON bytes written by this run.
    pub raw_bytes: u64,
    /// Documents listed over all manifests.
    pub manifest_documents: u64,
    /// Archived documents left in Firestore because they changed after their chunk was written
    /// (the delete's `updateTime` precondition failed); the next run archives them again.
    pub kept_changed: u64,
    /// Groups skipped because another run holds their lock.
    pub locked: Vec<String>,
}

/// Runs the job for the task in `config`: logs the report, stores it in the bucket, returns it.
pub async fn run(config: Config) -> RunReport {
    let started = Utc::now();
    let task = match config.job.task("log-archiver", started) {
        Ok(task) => task,
        Err(e) => {
            let task = Task {
                job: "log-archiver".into(),
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
    match connect(&config).await {
        Ok(archiver) => {
            let clock = Instant::now();
            match archiver.archive(&task, Fault::None).await {
                Ok(summary) => {
                    let secs = clock.elapsed().as_secs_f64();
                    if let Value::Object(map) = json!(summary) {
                        report.figures.extend(map);
                    }
                    if !summary.locked.is_empty() {
                        report.figure(
                            "lock",
                            format!(
                                "another run holds the lock of {}: skipped",
                                summary.locked.join(", ")
                            ),
                        );
                    }
                    report.figure("seconds", secs);
                    report.figure("cutoff", archiver.cutoff(task.logical_date).to_rfc3339());
                }
                Err(e) => {
                    report.fail(e.to_string());
                }
            }
            // The audit trail is one chain: one task archives it.
            if task.owns("audit_log") {
                archive_audit(&config, &archiver, &task, &mut report).await;
            }
            report.finish(Utc::now());
            report.log();
            if let Err(e) = archiver.store_report(&report).await {
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

/// Archives the audit trail when DATABASE_URL is set; its figures are prefixed `audit_`.
async fn archive_audit(config: &Config, archiver: &Archiver, task: &Task, report: &mut RunReport) {
    let Some(url) = &config.database_url else {
        tracing::warn!("DATABASE_URL is not set: the audit trail is not archived");
        report.figure("audit_skipped", "DATABASE_URL is not set");
        return;
    };
    let db = common::config::DbConfig {
        database_url: url.clone(),
        db_max_connections: 2,
        db_connect_timeout_secs: 5,
    };
    let pool = match common::db::connect(&db).await {
        Ok(pool) => pool,
        Err(e) => {
            report.fail(e.to_string());
            return;
        }
    };
    let audit = audit::AuditArchiver {
        pool,
        storage: archiver.storage.clone(),
        prefix: config.audit_prefix.trim_end_matches('/').to_owned(),
        hot_days: config.audit_hot_days,
        chunk_entries: config.audit_chunk_entries.max(1),
    };
    let clock = Instant::now();
    match audit.archive(task.logical_date, Fault::None).await {
        Ok(summary) => {
            if let Value::Object(map) = json!(summary) {
                report.figures.extend(map);
            }
            report.figure("audit_seconds", clock.elapsed().as_secs_f64());
            report.figure("audit_cutoff", audit.cutoff(task.logical_date).to_rfc3339());
        }
        Err(e) => {
            report.fail(e.to_string());
        }
    }
}

/// Builds the clients from the configuration.
pub async fn connect(config: &Config) -> Result<Archiver> {
    let project = config
        .platform
        .project
        .clone()
        .ok_or_else(|| Error::Config("GOOGLE_CLOUD_PROJECT is required".into()))?;
    let db = FirestoreDb::with_options(FirestoreDbOptions {
        request_timeout: Some(FIRESTORE_REQUEST_TIMEOUT),
        ..FirestoreDbOptions::new(project.clone())
    })
    .await?;
    let storage = Storage::connect(&config.storage, &config.bucket).await?;
    if config.create_bucket {
        storage.ensure_bucket(&project).await?;
    }
    Ok(Archiver {
        db,
        storage,
        prefix: config.prefix.trim_end_matches('/').to_owned(),
        hot_days: config.hot_days,
        chunk_docs: config.chunk_docs.max(1),
        groups: config.collection_groups.clone(),
    })
}

/// A document as archived: one NDJSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedDocument {
    /// Path below the database's documents root, e.g. `users/u1/events/e1`.
    pub path: String,
    /// Every field of the document, Firestore types mapped to JSON (timestamps as RFC 3339).
    pub fields: Map<String, Value>,
    /// The document's last update time, RFC 3339.
    pub update_time: Option<String>,
}

impl Archiver {
    /// Documents created before this instant leave Firestore on `date`.
    pub fn cutoff(&self, date: NaiveDate) -> DateTime<Utc> {
        date.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            - Duration::days(i64::from(self.hot_days))
    }

    fn group_prefix(&self, date: NaiveDate, group: &str) -> String {
        format!("{}/{date}/{group}/", self.prefix)
    }

    fn manifest_name(&self, date: NaiveDate, group: &str) -> String {
        format!("{}manifest.json", self.group_prefix(date, group))
    }

    /// Archives every group this task owns for its logical date.
    pub async fn archive(&self, task: &Task, fault: Fault) -> Result<Summary> {
        let mut summary = Summary::default();
        let mut chunk_number = 0usize;
        for group in self.groups.iter().filter(|g| task.owns(g)) {
            let Some(generation) = self.lock(group, task).await? else {
                tracing::warn!(group = %group, "another run holds the lock: group skipped");
                summary.locked.push(group.clone());
                continue;
            };
            let result = self
                .archive_group(
                    task.logical_date,
                    group,
                    fault,
                    &mut chunk_number,
                    &mut summary,
                )
                .await;
            // Released on failure too; if this fails, the lease ends it.
            if let Err(e) = self
                .storage
                .delete_if_generation(&self.lock_name(group), generation)
                .await
            {
                tracing::warn!(group = %group, error = %e, "lock not released");
            }
            result?;
        }
        Ok(summary)
    }

    fn lock_name(&self, group: &str) -> String {
        format!("{}/locks/{group}.lock", self.prefix)
    }

    /// Takes the group's lock: an object created only if absent (`ifGenerationMatch=0`).
    /// Returns its generation, or `None` while another run holds it. A lock whose lease has
    /// ended, or one left by an earlier attempt of this very task (Cloud Run starts a retry
    /// only after the attempt ended), is taken over.
    async fn lock(&self, group: &str, task: &Task) -> Result<Option<i64>> {
        let name = self.lock_name(group);
        let holder = format!("{}/{}", task.execution, task.index);
        for _ in 0..3 {
            let now = Utc::now();
            let mut metadata = HashMap::new();
            metadata.insert("holder".to_owned(), holder.clone());
            metadata.insert("attempt".to_owned(), task.attempt.to_string());
            metadata.insert("expires".to_owned(), (now + LOCK_LEASE).to_rfc3339());
            let body = serde_json::to_vec(&metadata).expect("lock serialises");
            if let Some(held) = self
                .storage
                .put_if_absent(&name, body, "application/json", metadata)
                .await?
            {
                return Ok(Some(held.generation));
            }
            let Some(held) = self.storage.head(&name).await? else {
                continue; // released in between
            };
            let expired = held
                .metadata
                .get("expires")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| t <= now);
            let earlier_attempt = held.metadata.get("holder") == Some(&holder)
                && held
                    .metadata
                    .get("attempt")
                    .and_then(|a| a.parse::<u32>().ok())
                    .is_some_and(|a| a < task.attempt);
            if !expired && !earlier_attempt {
                return Ok(None);
            }
            tracing::warn!(group = %group, holder = ?held.metadata.get("holder"), "taking over a stale lock");
            self.storage
                .delete_if_generation(&name, held.generation)
                .await?;
        }
        Ok(None)
    }

    async fn archive_group(
        &self,
        date: NaiveDate,
        group: &str,
        fault: Fault,
        chunk_number: &mut usize,
        summary: &mut Summary,
    ) -> Result<()> {
        let cutoff = self.cutoff(date);
        let prefix = self.group_prefix(date, group);
        self.recover(group, summary).await?;
        loop {
            let docs = self.oldest(group, cutoff).await?;
            if docs.is_empty() {
                break;
            }
            *chunk_number += 1;
            let chunk = Chunk::build(&self.db, &docs)?;
            let name = format!("{prefix}chunk-{}.ndjson.gz", chunk.name_hash);
            let mut metadata = HashMap::new();
            metadata.insert("documents".to_owned(), chunk.paths.len().to_string());
            metadata.insert("sha256".to_owned(), chunk.sha256.clone());
            metadata.insert("first".to_owned(), chunk.paths[0].clone());
            let stored = self
                .storage
                .put(&name, chunk.gzip.clone(), "application/gzip", metadata)
                .await?;
            if fault == Fault::AfterUpload(*chunk_number) {
                return Err(Error::Interrupted("after upload"));
            }
            if stored.crc32c.is_some_and(|c| c != chunk.crc32c) {
                return Err(Error::Verify {
                    object: name,
                    reason: "CRC32C reported by the upload differs from the chunk's".into(),
                });
            }
            let read = self.read_back_documents(&stored).await?;
            if read.iter().map(|(p, _)| p).ne(chunk.paths.iter()) {
                return Err(Error::Verify {
                    object: name,
                    reason: "documents read back differ from those written".into(),
                });
            }
            let stop = (fault == Fault::MidDelete(*chunk_number)).then_some(1);
            let deleted = self.delete_documents(&read, stop, summary).await?;
            if stop.is_some() {
                return Err(Error::Interrupted("mid delete"));
            }
            summary.archived += deleted as u64;
            summary.chunks += 1;
            summary.bytes += chunk.gzip.len() as u64;
            summary.raw_bytes += chunk.raw_bytes;
        }
        let manifest = self.write_manifest(date, group, cutoff).await?;
        summary.manifest_documents += manifest.documents;
        Ok(())
    }

    /// Finishes every chunk of the group that no manifest lists, under any logical date: an
    /// earlier run (of this date or any other) uploaded it and stopped before writing its
    /// manifest. Each verifies again, its documents are deleted (those unchanged since), and
    /// its own date's manifest is rewritten to list it. A chunk that does not verify never
    /// deleted a document on its account: it is dropped, its documents are archived again.
    async fn recover(&self, group: &str, summary: &mut Summary) -> Result<()> {
        let root = format!("{}/", self.prefix);
        let mut by_date: std::collections::BTreeMap<NaiveDate, Vec<StoredObject>> =
            std::collections::BTreeMap::new();
        for object in self.chunks(&root).await? {
            let mut parts = object.name[root.len()..].splitn(3, '/');
            let (Some(day), Some(g), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if g != group || !file.starts_with("chunk-") || file.contains('/') {
                continue;
            }
            if let Ok(day) = day.parse::<NaiveDate>() {
                by_date.entry(day).or_default().push(object);
            }
        }
        for (day, objects) in by_date {
            let finished: BTreeSet<String> = match self.manifest(day, group).await? {
                Some(manifest) => manifest.objects.into_iter().map(|o| o.name).collect(),
                None => BTreeSet::new(),
            };
            let mut changed = false;
            for object in objects {
                if finished.contains(&object.name) {
                    continue;
                }
                changed = true;
                match self.read_back_documents(&object).await {
                    Ok(docs) => {
                        summary.recovered +=
                            self.delete_documents(&docs, None, summary).await? as u64;
                    }
                    Err(Error::Verify {
                        object: name,
                        reason,
                    }) => {
                        tracing::warn!(object = %name, %reason, "dropping a chunk that does not verify");
                        self.storage.delete(&name).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if changed {
                let manifest = self.write_manifest(day, group, self.cutoff(day)).await?;
                tracing::info!(date = %day, group = %group, documents = manifest.documents, "earlier run's chunks recovered");
            }
        }
        Ok(())
    }

    async fn chunks(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        Ok(self
            .storage
            .list(prefix)
            .await?
            .into_iter()
            .filter(|o| o.name.ends_with(".ndjson.gz"))
            .collect())
    }

    /// The oldest documents of the group created before `cutoff`, at most one chunk's worth.
    async fn oldest(&self, group: &str, cutoff: DateTime<Utc>) -> Result<Vec<Document>> {
        let cutoff = FirestoreTimestamp::try_from(std::time::SystemTime::from(cutoff))?;
        Ok(self
            .db
            .fluent()
            .select()
            .from(group)
            .all_descendants()
            .filter(move |q| q.for_all([q.field("created_at").less_than(cutoff)]))
            .order(|o| o.fields([o.field("created_at").asc()]))
            .limit(self.chunk_docs)
            .query()
            .await?)
    }

    /// Downloads a chunk and checks it against its own metadata (SHA-256, CRC32C, count);
    /// returns the document paths it holds, in order.
    pub async fn read_back(&self, object: &StoredObject) -> Result<Vec<String>> {
        Ok(self
            .read_back_documents(object)
            .await?
            .into_iter()
            .map(|(path, _)| path)
            .collect())
    }

    /// As [`Self::read_back`], with each document's archived `update_time`.
    async fn read_back_documents(
        &self,
        object: &StoredObject,
    ) -> Result<Vec<(String, Option<String>)>> {
        let bad = |reason: String| Error::Verify {
            object: object.name.clone(),
            reason,
        };
        let bytes = self.storage.get(&object.name).await?;
        let sha = hex(&Sha256::digest(&bytes));
        if object.metadata.get("sha256") != Some(&sha) {
            return Err(bad("SHA-256 differs from the recorded one".into()));
        }
        if let Some(crc) = object.crc32c
            && crc != crc32c::crc32c(&bytes)
        {
            return Err(bad("CRC32C differs from the stored object's".into()));
        }
        let mut paths = Vec::new();
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..]));
        for line in reader.lines() {
            let line = line.map_err(|e| bad(format!("gzip: {e}")))?;
            let doc: ArchivedDocument =
                serde_json::from_str(&line).map_err(|e| bad(format!("NDJSON: {e}")))?;
            paths.push((doc.path, doc.update_time));
        }
        let expected: Option<usize> = object
            .metadata
            .get("documents")
            .and_then(|n| n.parse().ok());
        if expected != Some(paths.len()) {
            return Err(bad(format!(
                "{} lines, metadata says {expected:?}",
                paths.len()
            )));
        }
        Ok(paths)
    }

    /// Deletes archived documents, 500 per batch (the BatchWrite limit), each only if it is
    /// unchanged since it was archived: the delete carries a `currentDocument.updateTime`
    /// precondition with the archived `update_time` (Firestore API, `Precondition`). A document
    /// written since is kept (counted in `kept_changed`) and archived again by the next run. A
    /// document already gone (an earlier run deleted it) counts as deleted, so a rerun may
    /// delete again. `stop_after_batches` ends early (tests).
    async fn delete_documents(
        &self,
        docs: &[(String, Option<String>)],
        stop_after_batches: Option<usize>,
        summary: &mut Summary,
    ) -> Result<usize> {
        let root = self.db.get_documents_path();
        let writer = self
            .db
            .create_simple_batch_writer_with_options(
                firestore::FirestoreSimpleBatchWriteOptions::new()
                    .with_retry_max_elapsed_time(FIRESTORE_RETRY_LIMIT),
            )
            .await?;
        let mut done = 0;
        for (i, batch_docs) in docs.chunks(500).enumerate() {
            if stop_after_batches.is_some_and(|n| i >= n) {
                break;
            }
            let mut batch = writer.new_batch();
            for (path, update_time) in batch_docs {
                let (parent, collection, id) = split_path(path).ok_or_else(|| Error::Verify {
                    object: path.clone(),
                    reason: "not a document path".into(),
                })?;
                let parent = if parent.is_empty() {
                    root.to_owned()
                } else {
                    format!("{root}/{parent}")
                };
                let precondition = match update_time {
                    Some(t) => Some(FirestoreWritePrecondition::UpdateTime(
                        instant(t).ok_or_else(|| Error::Verify {
                            object: path.clone(),
                            reason: format!("update_time {t} is not RFC 3339"),
                        })?,
                    )),
                    None => None,
                };
                batch.delete_by_id_at(&parent, collection, id, precondition)?;
            }
            let response = batch.write().await.map_err(|e| {
                Error::FirestoreCall(format!(
                    "BatchWrite failed (retried for at most {} s): {e}",
                    FIRESTORE_RETRY_LIMIT.as_secs()
                ))
            })?;
            for (n, path) in batch_docs.iter().map(|(p, _)| p).enumerate() {
                // google.rpc.Code: 0 OK, 5 NOT_FOUND, 9 FAILED_PRECONDITION. The emulator
                // answers 9 both for a document changed since and for one already gone, so
                // a failed precondition is told apart by reading the document.
                match response.statuses.get(n).map_or(0, |s| s.code) {
                    0 => done += 1,
                    5 | 9 => {
                        if self.still_there(path).await? {
                            tracing::info!(document = %path, "changed since archived: kept");
                            summary.kept_changed += 1;
                        } else {
                            done += 1;
                        }
                    }
                    code => {
                        return Err(Error::FirestoreCall(format!(
                            "BatchWrite: delete of an archived document failed with code {code}"
                        )));
                    }
                }
            }
        }
        Ok(done)
    }

    /// Whether a document exists.
    async fn still_there(&self, path: &str) -> Result<bool> {
        let root = self.db.get_documents_path();
        let Some((parent, collection, id)) = split_path(path) else {
            return Ok(false);
        };
        let parent = if parent.is_empty() {
            root.to_owned()
        } else {
            format!("{root}/{parent}")
        };
        Ok(self
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .parent(&parent)
            .one(id)
            .await?
            .is_some())
    }

    async fn write_manifest(
        &self,
        date: NaiveDate,
        group: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Manifest> {
        let prefix = self.group_prefix(date, group);
        let mut objects = Vec::new();
        for o in self.chunks(&prefix).await? {
            let documents = o
                .metadata
                .get("documents")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            objects.push(ManifestObject {
                documents,
                bytes: o.size,
                sha256: o.metadata.get("sha256").cloned().unwrap_or_default(),
                crc32c: o.crc32c.map(crc32c_base64).unwrap_or_default(),
                name: o.name,
            });
        }
        let manifest = Manifest {
            collection_group: group.to_owned(),
            logical_date: date,
            cutoff,
            documents: objects.iter().map(|o| o.documents).sum(),
            bytes: objects.iter().map(|o| o.bytes).sum(),
            objects,
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        self.storage
            .put(
                &self.manifest_name(date, group),
                body,
                "application/json",
                HashMap::new(),
            )
            .await?;
        Ok(manifest)
    }

    /// Reads a group's manifest for a date.
    pub async fn manifest(&self, date: NaiveDate, group: &str) -> Result<Option<Manifest>> {
        let name = self.manifest_name(date, group);
        if self.storage.head(&name).await?.is_none() {
            return Ok(None);
        }
        let bytes = self.storage.get(&name).await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Verify {
                object: name,
                reason: e.to_string(),
            })
    }

    async fn store_report(&self, report: &RunReport) -> Result<()> {
        let name = format!(
            "{}/{}/runs/{}-{}-{}.json",
            self.prefix, report.logical_date, report.execution, report.task_index, report.attempt
        );
        let body = serde_json::to_vec_pretty(report).expect("report serialises");
        self.storage
            .put(&name, body, "application/json", HashMap::new())
            .await?;
        Ok(())
    }
}

struct Chunk {
    paths: Vec<String>,
    gzip: Vec<u8>,
    raw_bytes: u64,
    sha256: String,
    crc32c: u32,
    name_hash: String,
}

impl Chunk {
    fn build(db: &FirestoreDb, docs: &[Document]) -> Result<Self> {
        let root = format!("{}/", db.get_documents_path());
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut paths = Vec::with_capacity(docs.len());
        let mut raw_bytes = 0u64;
        let mut name_hash = Sha256::new();
        for doc in docs {
            let path = doc.name.strip_prefix(&root).unwrap_or(&doc.name).to_owned();
            let line = ArchivedDocument {
                path: path.clone(),
                fields: doc
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
                update_time: doc.update_time.as_ref().and_then(|t| {
                    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                        .map(|t| t.to_rfc3339())
                }),
            };
            let mut bytes = serde_json::to_vec(&line).expect("document serialises");
            bytes.push(b'\n');
            raw_bytes += bytes.len() as u64;
            encoder.write_all(&bytes).expect("in-memory write");
            name_hash.update(path.as_bytes());
            name_hash.update(b"\n");
            paths.push(path);
        }
        let gzip = encoder.finish().expect("in-memory write");
        Ok(Self {
            sha256: hex(&Sha256::digest(&gzip)),
            crc32c: crc32c::crc32c(&gzip),
            name_hash: hex(&name_hash.finalize())[..32].to_owned(),
            paths,
            gzip,
            raw_bytes,
        })
    }
}

/// `users/u/events/e` → (`users/u`, `events`, `e`).
fn split_path(path: &str) -> Option<(&str, &str, &str)> {
    let (rest, id) = path.rsplit_once('/')?;
    match rest.rsplit_once('/') {
        Some((parent, collection)) => Some((parent, collection, id)),
        None => Some(("", rest, id)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn crc32c_base64(crc: u32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// A Firestore value as JSON: timestamps as RFC 3339, bytes as base64, references as paths.
pub fn to_json(value: &FsValue) -> Value {
    use base64::Engine as _;
    match &value.value_type {
        None | Some(ValueType::NullValue(_)) => Value::Null,
        Some(ValueType::BooleanValue(b)) => Value::Bool(*b),
        Some(ValueType::IntegerValue(i)) => Value::from(*i),
        Some(ValueType::DoubleValue(d)) => Value::from(*d),
        Some(ValueType::TimestampValue(t)) => {
            DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
                .unwrap_or(Value::Null)
        }
        Some(ValueType::StringValue(s)) => Value::String(s.clone()),
        Some(ValueType::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(ValueType::ReferenceValue(r)) => json!({ "reference": r }),
        Some(ValueType::GeoPointValue(p)) => {
            json!({ "latitude": p.latitude, "longitude": p.longitude })
        }
        Some(ValueType::ArrayValue(a)) => Value::Array(a.values.iter().map(to_json).collect()),
        Some(ValueType::MapValue(m)) => Value::Object(
            m.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Some(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_path_splits_into_parent_collection_and_id() {
        assert_eq!(
            split_path("users/u1/events/e1"),
            Some(("users/u1", "events", "e1"))
        );
        assert_eq!(split_path("top/d"), Some(("", "top", "d")));
        assert_eq!(split_path("nodoc"), None);
    }

    #[test]
    fn firestore_values_map_to_json_with_timestamps_in_rfc3339() {
        let ts = FsValue {
            value_type: Some(ValueType::TimestampValue(
                firestore::gcloud_sdk::prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                },
            )),
        };
        assert_eq!(to_json(&ts), json!("2023-11-14T22:13:20Z"));
        let int = FsValue {
            value_type: Some(ValueType::IntegerValue(7)),
        };
        assert_eq!(to_json(&int), json!(7));
    }

    #[test]
    fn crc32c_is_written_as_the_json_api_writes_it() {
        assert_eq!(crc32c_base64(crc32c::crc32c(b"hello world")), "yZRlqg==");
    }
}
