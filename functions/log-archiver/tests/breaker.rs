//! Hostile nights for the archiver against the Firestore emulator and fake-gcs-server
//! (`scripts/emulators.sh`): reruns on another logical date, two runs of one date at once, a
//! document changed between upload and the rerun, a chunk rewritten in the bucket, the storage
//! unreachable on a rerun, a trigger from the future. Each test has its own project and bucket.

use std::collections::BTreeSet;
use std::io::BufRead as _;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::Parser as _;
use common::job::{Outcome, Task};
use common::storage::{Storage, StorageConfig};
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreTimestamp};
use log_archiver::{ArchivedDocument, Archiver, Config, Fault};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

fn storage_config() -> StorageConfig {
    StorageConfig {
        storage_emulator_host: Some(
            std::env::var("STORAGE_EMULATOR_HOST").expect("STORAGE_EMULATOR_HOST"),
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn archiver(chunk_docs: u32) -> Archiver {
    assert!(std::env::var("FIRESTORE_EMULATOR_HOST").is_ok());
    let project = unique("breaker");
    let db = FirestoreDb::with_options(FirestoreDbOptions::new(project.clone()))
        .await
        .expect("firestore emulator");
    let storage = Storage::connect(&storage_config(), &unique("breaker"))
        .await
        .expect("storage");
    storage.ensure_bucket(&project).await.expect("bucket");
    Archiver {
        db,
        storage,
        prefix: "firestore".into(),
        hot_days: 90,
        chunk_docs,
        groups: vec!["events".into()],
    }
}

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn task(execution: &str, logical_date: NaiveDate) -> Task {
    Task {
        job: "log-archiver".into(),
        execution: execution.into(),
        index: 0,
        count: 1,
        attempt: 0,
        logical_date,
    }
}

#[derive(Serialize)]
struct Doc {
    user_id: String,
    created_at: FirestoreTimestamp,
    version: u32,
}

fn ts(t: DateTime<Utc>) -> FirestoreTimestamp {
    FirestoreTimestamp::try_from(std::time::SystemTime::from(t)).expect("timestamp")
}

/// `n` event documents of user u1 created `age_days` before 2026-11-29.
async fn seed(db: &FirestoreDb, n: usize, age_days: i64) -> BTreeSet<String> {
    let base = date("2026-11-29")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        - Duration::days(age_days);
    let root = db.get_documents_path().to_owned();
    let writer = db.create_simple_batch_writer().await.expect("writer");
    let mut paths = BTreeSet::new();
    for start in (0..n).step_by(400) {
        let mut batch = writer.new_batch();
        for i in start..(start + 400).min(n) {
            let doc = Doc {
                user_id: "u1".into(),
                created_at: ts(base - Duration::seconds(i as i64)),
                version: 1,
            };
            batch
                .update_object_at(
                    &format!("{root}/users/u1"),
                    "events",
                    format!("ev{i:04}"),
                    &doc,
                    None,
                    None,
                    vec![],
                )
                .expect("queue");
            paths.insert(format!("users/u1/events/ev{i:04}"));
        }
        batch.write().await.expect("seed");
    }
    paths
}

async fn write(db: &FirestoreDb, id: &str, created: DateTime<Utc>, version: u32) {
    let root = db.get_documents_path().to_owned();
    let doc = Doc {
        user_id: "u1".into(),
        created_at: ts(created),
        version,
    };
    let writer = db.create_simple_batch_writer().await.expect("writer");
    let mut batch = writer.new_batch();
    batch
        .update_object_at(
            &format!("{root}/users/u1"),
            "events",
            id,
            &doc,
            None,
            None,
            vec![],
        )
        .expect("queue");
    batch.write().await.expect("write");
}

async fn remaining(db: &FirestoreDb) -> BTreeSet<String> {
    let root = format!("{}/", db.get_documents_path());
    db.fluent()
        .select()
        .from("events")
        .all_descendants()
        .query()
        .await
        .expect("query")
        .into_iter()
        .map(|d| d.name.strip_prefix(&root).unwrap_or(&d.name).to_owned())
        .collect()
}

/// Every line of every chunk anywhere in the bucket (whatever the manifests say).
async fn every_archived_line(a: &Archiver) -> Vec<ArchivedDocument> {
    let mut docs = Vec::new();
    for object in a.storage.list("firestore/").await.expect("list") {
        if !object.name.ends_with(".ndjson.gz") {
            continue;
        }
        let bytes = a.storage.get(&object.name).await.expect("chunk");
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..])).lines() {
            docs.push(serde_json::from_str(&line.expect("line")).expect("json"));
        }
    }
    docs
}

fn paths(docs: &[ArchivedDocument]) -> Vec<String> {
    let mut p: Vec<String> = docs.iter().map(|d| d.path.clone()).collect();
    p.sort();
    p
}

#[tokio::test]
async fn a_run_killed_after_upload_and_rerun_a_week_later_archives_each_document_once() {
    let a = archiver(10).await;
    let old = seed(&a.db, 10, 120).await;
    // Sunday's run dies between upload and delete; nobody reruns it by hand.
    a.archive(&task("sun-1", date("2026-11-22")), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");

    // The next Sunday's run has its own logical date.
    a.archive(&task("sun-2", date("2026-11-29")), Fault::None)
        .await
        .expect("next week");

    assert!(remaining(&a.db).await.is_empty());
    let lines = every_archived_line(&a).await;
    assert_eq!(
        paths(&lines),
        old.iter().cloned().collect::<Vec<_>>(),
        "every document exactly once in the bucket"
    );
}

#[tokio::test]
async fn two_runs_for_the_same_date_at_once_archive_each_document_once() {
    // The second run starts a little later each time, so that it looks for the oldest
    // documents while the first is between its delete batches (500 per batch; chunks larger
    // than a batch, as the default of 2000 per chunk is).
    for delay_ms in (0u64..=500).step_by(20) {
        let a = archiver(1200).await;
        let old = seed(&a.db, 2400, 120).await;
        let b = a.clone();
        let day = date("2026-11-29");
        let (ta, tb) = (task("exec-a", day), task("exec-b", day));
        let (ra, rb) = tokio::join!(a.archive(&ta, Fault::None), async {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            b.archive(&tb, Fault::None).await
        });
        // One of them may fail; a rerun must then finish the work.
        if ra.is_err() || rb.is_err() {
            a.archive(&task("exec-c", day), Fault::None)
                .await
                .expect("rerun");
        }

        assert!(remaining(&a.db).await.is_empty(), "delay {delay_ms} ms");
        let lines = paths(&every_archived_line(&a).await);
        let distinct: BTreeSet<String> = lines.iter().cloned().collect();
        assert_eq!(distinct, old, "delay {delay_ms} ms");
        assert_eq!(
            lines.len(),
            2400,
            "delay {delay_ms} ms: {} lines for 2400 documents",
            lines.len()
        );
        let manifest = a
            .manifest(day, "events")
            .await
            .expect("read")
            .expect("manifest");
        assert_eq!(manifest.documents, 2400, "delay {delay_ms} ms");
    }
}

#[tokio::test]
async fn a_document_changed_between_upload_and_the_rerun_keeps_its_change() {
    let a = archiver(10).await;
    seed(&a.db, 10, 120).await;
    a.archive(&task("e1", date("2026-11-29")), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");
    // Written again after the chunk was uploaded (same created_at, version 2).
    let created = date("2026-11-29")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        - Duration::days(120);
    write(&a.db, "ev0000", created, 2).await;

    a.archive(&task("e2", date("2026-11-29")), Fault::None)
        .await
        .expect("rerun");

    let lines = every_archived_line(&a).await;
    let versions: Vec<i64> = lines
        .iter()
        .filter(|d| d.path == "users/u1/events/ev0000")
        .map(|d| d.fields["version"].as_i64().expect("version"))
        .collect();
    let still_there = remaining(&a.db).await.contains("users/u1/events/ev0000");
    assert!(
        versions.contains(&2) || still_there,
        "version 2 neither archived nor kept: archived versions {versions:?}"
    );
}

#[tokio::test]
async fn a_chunk_rewritten_in_the_bucket_with_consistent_metadata_loses_nothing() {
    let a = archiver(10).await;
    let old = seed(&a.db, 10, 120).await;
    a.archive(&task("e1", date("2026-11-29")), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");
    // Someone rewrites the chunk with its first 4 lines and metadata that matches them.
    let chunk = a
        .storage
        .list("firestore/2026-11-29/events/chunk-")
        .await
        .expect("list")
        .remove(0);
    let bytes = a.storage.get(&chunk.name).await.expect("get");
    let kept: Vec<String> = std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..]))
        .lines()
        .take(4)
        .map(|l| l.expect("line"))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in &kept {
        std::io::Write::write_all(&mut gz, format!("{line}\n").as_bytes()).expect("write");
    }
    let body = gz.finish().expect("gzip");
    let mut metadata = chunk.metadata.clone();
    metadata.insert(
        "sha256".into(),
        Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    metadata.insert("documents".into(), "4".into());
    a.storage
        .put(&chunk.name, body, "application/gzip", metadata)
        .await
        .expect("rewrite");

    a.archive(&task("e2", date("2026-11-29")), Fault::None)
        .await
        .expect("rerun");

    assert!(remaining(&a.db).await.is_empty());
    assert_eq!(
        paths(&every_archived_line(&a).await),
        old.iter().cloned().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn storage_unreachable_on_the_rerun_deletes_nothing_and_a_later_rerun_finishes() {
    let a = archiver(10).await;
    let old = seed(&a.db, 15, 120).await;
    a.archive(&task("e1", date("2026-11-29")), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");
    let mut dead = a.clone();
    dead.storage = Storage::connect(
        &StorageConfig {
            storage_emulator_host: Some("127.0.0.1:1".into()),
        },
        a.storage.bucket(),
    )
    .await
    .expect("client");

    dead.archive(&task("e2", date("2026-11-29")), Fault::None)
        .await
        .expect_err("storage down");
    assert_eq!(remaining(&a.db).await, old);

    a.archive(&task("e3", date("2026-11-29")), Fault::None)
        .await
        .expect("rerun");
    assert!(remaining(&a.db).await.is_empty());
    assert_eq!(
        paths(&every_archived_line(&a).await),
        old.iter().cloned().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_trigger_from_the_future_is_refused_before_anything_is_archived() {
    let project = unique("breaker");
    let config = Config::try_parse_from([
        "log-archiver",
        "--project",
        &project,
        "--bucket",
        &unique("breaker"),
        "--storage-emulator-host",
        &std::env::var("STORAGE_EMULATOR_HOST").expect("STORAGE_EMULATOR_HOST"),
        "--create-bucket",
        "--schedule-time",
        "2099-01-04T04:00:00Z",
        "--log-format",
        "text",
    ])
    .expect("config");
    let db = FirestoreDb::with_options(FirestoreDbOptions::new(project.clone()))
        .await
        .expect("firestore emulator");
    // Hot today (10 days old); 2099's cutoff would take it.
    write(&db, "hot", Utc::now() - Duration::days(10), 1).await;

    let report = log_archiver::run(config).await;

    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report.failures[0].starts_with("JOB_SCHEDULE_TIME 2099-01-04T04:00:00Z is in the future"),
        "{:?}",
        report.failures
    );
    assert_eq!(remaining(&db).await.len(), 1);
}

#[tokio::test]
async fn a_changed_document_is_kept_by_the_recovery_and_its_new_version_archived_by_the_same_run() {
    let a = archiver(10).await;
    seed(&a.db, 10, 120).await;
    a.archive(&task("e1", date("2026-11-29")), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");
    let created = date("2026-11-29")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        - Duration::days(120);
    write(&a.db, "ev0000", created, 2).await;

    let summary = a
        .archive(&task("e2", date("2026-11-29")), Fault::None)
        .await
        .expect("rerun");

    // The recovery deletes the 9 unchanged documents and keeps ev0000; the same run then
    // archives ev0000 (still past the hot window) in its new version and deletes it.
    assert_eq!(
        (summary.recovered, summary.kept_changed, summary.archived),
        (9, 1, 1)
    );
    let lines = every_archived_line(&a).await;
    let mut versions: Vec<i64> = lines
        .iter()
        .filter(|d| d.path == "users/u1/events/ev0000")
        .map(|d| d.fields["version"].as_i64().expect("version"))
        .collect();
    versions.sort();
    assert_eq!(versions, vec![1, 2], "each version once");
    assert!(remaining(&a.db).await.is_empty());
}

async fn hold_lock(a: &Archiver, holder: &str, attempt: u32, expires: DateTime<Utc>) {
    let metadata = [
        ("holder".to_owned(), holder.to_owned()),
        ("attempt".to_owned(), attempt.to_string()),
        ("expires".to_owned(), expires.to_rfc3339()),
    ]
    .into_iter()
    .collect();
    a.storage
        .put_if_absent(
            "firestore/locks/events.lock",
            b"{}".to_vec(),
            "application/json",
            metadata,
        )
        .await
        .expect("put")
        .expect("lock was free");
}

#[tokio::test]
async fn a_run_finding_the_lock_held_skips_the_group_and_deletes_nothing() {
    let a = archiver(10).await;
    let old = seed(&a.db, 15, 120).await;
    hold_lock(&a, "other/0", 0, Utc::now() + Duration::minutes(30)).await;

    let summary = a
        .archive(&task("e1", date("2026-11-29")), Fault::None)
        .await
        .expect("a held lock is not a failure");

    assert_eq!(summary.locked, vec!["events".to_owned()]);
    assert_eq!(summary.archived, 0);
    assert_eq!(remaining(&a.db).await, old);
    assert!(every_archived_line(&a).await.is_empty());
    // The other run's lock is left alone.
    let lock = a
        .storage
        .head("firestore/locks/events.lock")
        .await
        .expect("head")
        .expect("still held");
    assert_eq!(lock.metadata["holder"], "other/0");
}

#[tokio::test]
async fn an_expired_lock_is_taken_over_and_the_lock_is_gone_after_the_run() {
    let a = archiver(10).await;
    let old = seed(&a.db, 15, 120).await;
    hold_lock(&a, "crashed/0", 0, Utc::now() - Duration::minutes(1)).await;

    let summary = a
        .archive(&task("e1", date("2026-11-29")), Fault::None)
        .await
        .expect("run");

    assert!(summary.locked.is_empty());
    assert_eq!(summary.archived, 15);
    assert!(remaining(&a.db).await.is_empty());
    assert_eq!(
        paths(&every_archived_line(&a).await),
        old.iter().cloned().collect::<Vec<_>>()
    );
    assert!(
        a.storage
            .head("firestore/locks/events.lock")
            .await
            .expect("head")
            .is_none()
    );
}

#[tokio::test]
async fn a_retry_of_the_same_task_takes_over_the_lock_of_its_crashed_attempt() {
    let a = archiver(10).await;
    seed(&a.db, 5, 120).await;
    // Attempt 0 of execution e1, task 0, died holding the lock; its lease has not ended.
    hold_lock(&a, "e1/0", 0, Utc::now() + Duration::minutes(30)).await;
    let mut retry = task("e1", date("2026-11-29"));
    retry.attempt = 1;

    let summary = a.archive(&retry, Fault::None).await.expect("retry");

    assert!(summary.locked.is_empty());
    assert_eq!(summary.archived, 5);
    assert!(remaining(&a.db).await.is_empty());
}
