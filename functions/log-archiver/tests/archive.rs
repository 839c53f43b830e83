//! The archiver against the Firestore emulator and fake-gcs-server (`scripts/emulators.sh`).
//! Each test has its own Firestore project and bucket, so tests run in parallel.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead as _;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::job::Task;
use common::storage::{Storage, StorageConfig};
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreTimestamp};
use log_archiver::{ArchivedDocument, Archiver, Fault};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

const DATE: &str = "2026-11-29";

fn storage_config() -> StorageConfig {
    let host = std::env::var("STORAGE_EMULATOR_HOST").expect(
        "STORAGE_EMULATOR_HOST is not set: run scripts/emulators.sh start and eval \"$(scripts/emulators.sh env)\"",
    );
    StorageConfig {
        storage_emulator_host: Some(host),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn archiver(chunk_docs: u32) -> Archiver {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run scripts/emulators.sh start and eval \"$(scripts/emulators.sh env)\""
    );
    let project = unique("archiver");
    let db = FirestoreDb::with_options(FirestoreDbOptions::new(project.clone()))
        .await
        .expect("firestore emulator");
    let storage = Storage::connect(&storage_config(), &unique("archive"))
        .await
        .expect("storage");
    storage.ensure_bucket(&project).await.expect("bucket");
    Archiver {
        db,
        storage,
        prefix: "firestore".into(),
        hot_days: 90,
        chunk_docs,
        groups: vec!["analysis_logs".into(), "events".into()],
    }
}

fn task(execution: &str) -> Task {
    Task {
        job: "log-archiver".into(),
        execution: execution.into(),
        index: 0,
        count: 1,
        attempt: 0,
        logical_date: date(),
    }
}

fn date() -> NaiveDate {
    DATE.parse().expect("date")
}

#[derive(Serialize)]
struct Doc {
    user_id: String,
    created_at: FirestoreTimestamp,
    kind: String,
    payload: serde_json::Value,
}

fn ts(t: DateTime<Utc>) -> FirestoreTimestamp {
    FirestoreTimestamp::try_from(std::time::SystemTime::from(t)).expect("timestamp")
}

/// Writes `n` documents of `group` spread over 3 users, created `age_days` before the date;
/// returns their paths.
async fn seed(
    db: &FirestoreDb,
    group: &str,
    n: usize,
    age_days: i64,
    tag: &str,
) -> BTreeSet<String> {
    let base = date().and_hms_opt(0, 0, 0).expect("midnight").and_utc() - Duration::days(age_days);
    let root = db.get_documents_path().to_owned();
    let writer = db.create_simple_batch_writer().await.expect("writer");
    let mut paths = BTreeSet::new();
    for start in (0..n).step_by(400) {
        let mut batch = writer.new_batch();
        for i in start..(start + 400).min(n) {
            let user = format!("u{}", i % 3);
            let id = format!("{tag}{i:05}");
            let doc = Doc {
                user_id: user.clone(),
                created_at: ts(base - Duration::seconds(i as i64)),
                kind: "night.analysed".into(),
                payload: serde_json::json!({"night": "2026-08-01", "se_pct": 87.5, "i": i}),
            };
            batch
                .update_object_at(
                    &format!("{root}/users/{user}"),
                    group,
                    &id,
                    &doc,
                    None,
                    None,
                    vec![],
                )
                .expect("queue");
            paths.insert(format!("users/{user}/{group}/{id}"));
        }
        batch.write().await.expect("seed batch");
    }
    paths
}

async fn remaining(db: &FirestoreDb, group: &str) -> BTreeSet<String> {
    let root = format!("{}/", db.get_documents_path());
    db.fluent()
        .select()
        .from(group)
        .all_descendants()
        .query()
        .await
        .expect("query")
        .into_iter()
        .map(|d| d.name.strip_prefix(&root).unwrap_or(&d.name).to_owned())
        .collect()
}

/// Every line of every chunk of a group, read straight from the bucket, checked against the
/// manifest's counts, SHA-256 and CRC32C.
async fn archived_paths(a: &Archiver, group: &str) -> Vec<String> {
    let manifest = a
        .manifest(date(), group)
        .await
        .expect("manifest read")
        .expect("manifest exists");
    let mut paths = Vec::new();
    for object in &manifest.objects {
        let bytes = a.storage.get(&object.name).await.expect("chunk");
        assert_eq!(object.bytes, bytes.len() as u64, "{}", object.name);
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(object.sha256, sha, "{}", object.name);
        let crc = common::storage::crc32c_from_base64(&object.crc32c).expect("crc32c");
        assert_eq!(crc, crc32c::crc32c(&bytes), "{}", object.name);
        let mut lines = 0;
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..])).lines() {
            let doc: ArchivedDocument = serde_json::from_str(&line.expect("line")).expect("json");
            paths.push(doc.path);
            lines += 1;
        }
        assert_eq!(object.documents, lines, "{}", object.name);
    }
    assert_eq!(manifest.documents, paths.len() as u64);
    paths
}

#[tokio::test]
async fn n_documents_in_become_n_lines_across_chunks_and_only_old_documents_leave_firestore() {
    let a = archiver(10).await;
    let old_events = seed(&a.db, "events", 25, 91, "old").await;
    let hot_events = seed(&a.db, "events", 4, 89, "hot").await;
    let old_logs = seed(&a.db, "analysis_logs", 7, 200, "log").await;

    let summary = a.archive(&task("e1"), Fault::None).await.expect("archive");

    assert_eq!(summary.archived, 32);
    assert_eq!(summary.chunks, 3 + 1);
    assert_eq!(summary.manifest_documents, 32);
    let events = archived_paths(&a, "events").await;
    assert_eq!(events.len(), 25);
    assert_eq!(events.iter().cloned().collect::<BTreeSet<_>>(), old_events);
    let manifest = a
        .manifest(date(), "events")
        .await
        .expect("read")
        .expect("manifest");
    assert_eq!(manifest.objects.len(), 3);
    assert_eq!(
        manifest.cutoff,
        "2026-08-31T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("cutoff")
    );
    let logs = archived_paths(&a, "analysis_logs").await;
    assert_eq!(logs.iter().cloned().collect::<BTreeSet<_>>(), old_logs);
    assert_eq!(remaining(&a.db, "events").await, hot_events);
    assert!(remaining(&a.db, "analysis_logs").await.is_empty());

    // The fields survive the trip, the timestamp as RFC 3339.
    let first = a
        .storage
        .get(&manifest.objects[0].name)
        .await
        .expect("chunk");
    let line = std::io::BufReader::new(flate2::read::GzDecoder::new(&first[..]))
        .lines()
        .next()
        .expect("a line")
        .expect("line");
    let doc: ArchivedDocument = serde_json::from_str(&line).expect("json");
    assert_eq!(doc.fields["kind"], "night.analysed");
    assert_eq!(doc.fields["payload"]["se_pct"], 87.5);
    assert!(
        doc.fields["created_at"]
            .as_str()
            .expect("string")
            .ends_with('Z')
    );
}

#[tokio::test]
async fn a_run_killed_between_upload_and_delete_reruns_to_exactly_n_archived_none_left_none_twice()
{
    let a = archiver(10).await;
    let old = seed(&a.db, "events", 35, 120, "ev").await;

    let err = a
        .archive(&task("e1"), Fault::AfterUpload(2))
        .await
        .expect_err("interrupted");
    assert!(err.to_string().contains("after upload"), "{err}");
    assert_eq!(
        remaining(&a.db, "events").await.len(),
        25,
        "chunk 1 deleted, chunk 2 not"
    );
    assert!(a.manifest(date(), "events").await.expect("read").is_none());

    let summary = a.archive(&task("e2"), Fault::None).await.expect("rerun");

    // Both chunks of the stopped run are re-read and their documents deleted (again, for the
    // first: deleting a missing document is a no-op).
    assert_eq!(summary.recovered, 20);
    assert_eq!(summary.archived, 15);
    let paths = archived_paths(&a, "events").await;
    assert_eq!(paths.len(), 35);
    assert_eq!(paths.iter().cloned().collect::<BTreeSet<_>>(), old);
    assert!(remaining(&a.db, "events").await.is_empty());
}

#[tokio::test]
async fn a_run_killed_in_the_middle_of_deleting_a_chunk_reruns_without_duplicates() {
    let a = archiver(700).await;
    let old = seed(&a.db, "analysis_logs", 900, 95, "lg").await;

    a.archive(&task("e1"), Fault::MidDelete(1))
        .await
        .expect_err("interrupted");
    assert_eq!(
        remaining(&a.db, "analysis_logs").await.len(),
        400,
        "500 of the first 700 gone"
    );

    let summary = a.archive(&task("e2"), Fault::None).await.expect("rerun");

    assert_eq!(summary.recovered, 700);
    assert_eq!(summary.archived, 200);
    let paths = archived_paths(&a, "analysis_logs").await;
    assert_eq!(paths.len(), 900);
    assert_eq!(paths.iter().cloned().collect::<BTreeSet<_>>(), old);
    assert!(remaining(&a.db, "analysis_logs").await.is_empty());
}

#[tokio::test]
async fn a_second_trigger_for_the_same_date_archives_nothing_and_keeps_the_manifest() {
    let a = archiver(10).await;
    seed(&a.db, "events", 12, 100, "ev").await;
    a.archive(&task("e1"), Fault::None).await.expect("first");
    let before = a.manifest(date(), "events").await.expect("read");

    let second = a.archive(&task("e2"), Fault::None).await.expect("second");

    assert_eq!(
        (second.archived, second.recovered, second.chunks),
        (0, 0, 0)
    );
    assert_eq!(a.manifest(date(), "events").await.expect("read"), before);
    assert_eq!(archived_paths(&a, "events").await.len(), 12);
}

#[tokio::test]
async fn a_chunk_that_does_not_verify_is_dropped_and_its_documents_archived_again() {
    let a = archiver(10).await;
    let old = seed(&a.db, "events", 10, 100, "ev").await;
    a.archive(&task("e1"), Fault::AfterUpload(1))
        .await
        .expect_err("interrupted");
    let chunk = a
        .storage
        .list("firestore/2026-11-29/events/chunk-")
        .await
        .expect("list")
        .remove(0);
    let mut metadata = chunk.metadata.clone();
    metadata.insert("sha256".into(), "0".repeat(64));
    let bytes = a.storage.get(&chunk.name).await.expect("get");
    a.storage
        .put(&chunk.name, bytes, "application/gzip", metadata)
        .await
        .expect("corrupt the metadata");

    let summary = a.archive(&task("e2"), Fault::None).await.expect("rerun");

    assert_eq!((summary.recovered, summary.archived), (0, 10));
    assert_eq!(
        archived_paths(&a, "events")
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        old
    );
}

#[tokio::test]
async fn every_storage_call_the_jobs_make_works_against_the_emulator() {
    let storage = Storage::connect(&storage_config(), &unique("calls"))
        .await
        .expect("storage");
    storage.ensure_bucket("calls").await.expect("create bucket");
    storage
        .ensure_bucket("calls")
        .await
        .expect("bucket exists: no-op");

    let mut metadata = HashMap::new();
    metadata.insert("documents".to_owned(), "2".to_owned());
    let put = storage
        .put("a/one.txt", b"hello world".to_vec(), "text/plain", metadata)
        .await
        .expect("put");
    assert_eq!(put.size, 11);
    assert_eq!(put.crc32c, Some(0xc994_65aa));
    assert_eq!(storage.get("a/one.txt").await.expect("get"), b"hello world");
    let head = storage
        .head("a/one.txt")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(
        head.metadata.get("documents").map(String::as_str),
        Some("2")
    );
    assert!(storage.head("a/none").await.expect("head").is_none());

    // A file over several resumable chunks (8 MiB each), read back byte for byte.
    let dir = std::env::temp_dir().join(unique("upload"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("big.bin");
    let data: Vec<u8> = (0..(17 * 1024 * 1024 + 123))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write");
    let stored = storage
        .put_file(
            "a/big.bin",
            &file,
            "application/octet-stream",
            HashMap::new(),
        )
        .await
        .expect("resumable upload");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.crc32c, Some(crc32c::crc32c(&data)));
    let back = dir.join("back.bin");
    assert_eq!(
        storage
            .get_to_file("a/big.bin", &back)
            .await
            .expect("download"),
        data.len() as u64
    );
    assert!(std::fs::read(&back).expect("read") == data);

    let names: Vec<String> = storage
        .list("a/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["a/big.bin", "a/one.txt"]);
    assert!(storage.delete("a/one.txt").await.expect("delete"));
    assert!(!storage.delete("a/one.txt").await.expect("delete again"));
    assert_eq!(storage.list("a/").await.expect("list").len(), 1);

    std::fs::remove_dir_all(&dir).ok();
}

/// Throughput on the emulator: `scripts/load-archiver.sh` (LOAD_DOCS documents, default 100 000).
#[tokio::test]
#[ignore = "load test: scripts/load-archiver.sh"]
async fn archiver_throughput_on_the_emulator() {
    let n: usize = std::env::var("LOAD_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let a = archiver(5000).await;
    let clock = std::time::Instant::now();
    for (i, start) in (0..n).step_by(50_000).enumerate() {
        seed(
            &a.db,
            "events",
            (n - start).min(50_000),
            100 + i as i64,
            &format!("s{i}-"),
        )
        .await;
    }
    let seed_secs = clock.elapsed().as_secs_f64();

    let clock = std::time::Instant::now();
    let summary = a
        .archive(&task("load"), Fault::None)
        .await
        .expect("archive");
    let secs = clock.elapsed().as_secs_f64();

    assert_eq!(summary.archived, n as u64);
    assert!(remaining(&a.db, "events").await.is_empty());
    println!(
        "LOAD documents={n} seed_secs={seed_secs:.1} archive_secs={secs:.1} docs_per_sec={:.0} \
         ndjson_mb_per_sec={:.2} gzip_mb_per_sec={:.2} chunks={} ndjson_mb={:.1} gzip_mb={:.1}",
        n as f64 / secs,
        summary.raw_bytes as f64 / 1e6 / secs,
        summary.bytes as f64 / 1e6 / secs,
        summary.chunks,
        summary.raw_bytes as f64 / 1e6,
        summary.bytes as f64 / 1e6,
    );
}
