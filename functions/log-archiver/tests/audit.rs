//! The audit trail's archive against a real PostgreSQL (DATABASE_URL, a database per test) and
//! fake-gcs-server (`scripts/emulators.sh`), a bucket per test.

use std::collections::BTreeSet;
use std::io::BufRead as _;

use chrono::{DateTime, Duration, NaiveDate, SubsecRound as _, Utc};
use common::audit_chain::{GENESIS, Link, hash};
use common::storage::{Storage, StorageConfig};
use log_archiver::Fault;
use log_archiver::audit::{ArchivedEntry, AuditArchiver, check_chain};
use sqlx::PgPool;
use uuid::Uuid;

const DATE: &str = "2026-11-29";

fn date() -> NaiveDate {
    DATE.parse().expect("date")
}

async fn archiver(pool: PgPool, chunk_entries: u32) -> AuditArchiver {
    let host = std::env::var("STORAGE_EMULATOR_HOST").expect(
        "STORAGE_EMULATOR_HOST is not set: run scripts/emulators.sh start and eval \"$(scripts/emulators.sh env)\"",
    );
    let bucket = format!("audit-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let storage = Storage::connect(
        &StorageConfig {
            storage_emulator_host: Some(host),
        },
        &bucket,
    )
    .await
    .expect("storage");
    storage.ensure_bucket("audit-test").await.expect("bucket");
    AuditArchiver {
        pool,
        storage,
        prefix: "audit".into(),
        hot_days: 90,
        chunk_entries,
    }
}

/// Midnight of the logical date minus the hot window: entries before it leave.
fn cutoff() -> DateTime<Utc> {
    date().and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::days(90)
}

/// Appends entries at the given times as the privacy function does (the chain over the same
/// fields; every second one as a published event with an event id).
async fn append(pool: &PgPool, times: &[DateTime<Utc>]) {
    for (i, at) in times.iter().enumerate() {
        let at = at.trunc_subsecs(6);
        let prev: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(pool)
                .await
                .unwrap();
        let prev = prev.unwrap_or_else(|| GENESIS.to_owned());
        let (actor, subject) = (format!("actor-{i}"), format!("subject-{i}"));
        let object = Some(Uuid::new_v4());
        let event_id = (i % 2 == 1).then(Uuid::new_v4);
        let h = hash(
            &prev,
            &Link {
                at,
                actor: &actor,
                subject: &subject,
                action: "diary.read",
                function: "sleep-diary",
                object,
                event_id,
            },
        );
        sqlx::query(
            "INSERT INTO audit_log (at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id) \
             VALUES ($1, $2, $3, 'diary.read', 'sleep-diary', $4, $5, $6, $7)",
        )
        .bind(at)
        .bind(&actor)
        .bind(&subject)
        .bind(object)
        .bind(&prev)
        .bind(&h)
        .bind(event_id)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn old(n: usize) -> Vec<DateTime<Utc>> {
    (0..n)
        .map(|i| cutoff() - Duration::days(30) + Duration::minutes(i as i64))
        .collect()
}

fn recent(n: usize) -> Vec<DateTime<Utc>> {
    (0..n)
        .map(|i| cutoff() + Duration::days(1) + Duration::minutes(i as i64))
        .collect()
}

async fn rows(pool: &PgPool) -> Vec<ArchivedEntry> {
    sqlx::query_as(
        "SELECT seq, at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id \
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn checkpoint(pool: &PgPool) -> Option<(i64, String, String)> {
    sqlx::query_as("SELECT seq, hash, object FROM audit_checkpoint ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Every chunk in the bucket, in name (= chain) order, with its entries.
async fn chunks(a: &AuditArchiver) -> Vec<(String, Vec<ArchivedEntry>)> {
    let mut out = Vec::new();
    let mut objects = a.storage.list("audit/").await.unwrap();
    objects.sort_by(|x, y| x.name.cmp(&y.name));
    for o in objects {
        if !o.name.ends_with(".ndjson.gz") {
            continue;
        }
        let bytes = a.storage.get(&o.name).await.unwrap();
        let entries = std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..]))
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        out.push((o.name, entries));
    }
    out
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn old_entries_leave_in_chunks_whose_chain_verifies_and_recent_ones_stay(pool: PgPool) {
    append(&pool, &[old(7), recent(3)].concat()).await;
    let before = rows(&pool).await;
    let a = archiver(pool.clone(), 3).await;
    let summary = a.archive(date(), Fault::None).await.unwrap();
    assert_eq!(summary.audit_archived, 7);
    assert_eq!(summary.audit_chunks, 3, "3 + 3 + 1 entries");
    assert_eq!(summary.audit_remaining, 3);
    assert_eq!(summary.audit_checkpoint_seq, before[6].seq);

    // The M recent entries stay as they were; the checkpoint names the last archived one.
    assert_eq!(rows(&pool).await, before[7..]);
    let (seq, hash, object) = checkpoint(&pool).await.expect("checkpoint");
    assert_eq!(
        (seq, hash.as_str()),
        (before[6].seq, before[6].hash.as_str())
    );
    assert!(object.ends_with(&format!("chunk-{:020}-{:020}.ndjson.gz", seq, seq)));

    // The chunks hold the N old entries exactly, in seq order, as one chain from the genesis.
    let chunks = chunks(&a).await;
    let names: Vec<&str> = chunks.iter().map(|(n, _)| n.as_str()).collect();
    let s = |i: usize| before[i].seq;
    assert_eq!(
        names,
        [
            format!("audit/{DATE}/chunk-{:020}-{:020}.ndjson.gz", s(0), s(2)),
            format!("audit/{DATE}/chunk-{:020}-{:020}.ndjson.gz", s(3), s(5)),
            format!("audit/{DATE}/chunk-{:020}-{:020}.ndjson.gz", s(6), s(6)),
        ]
    );
    let archived: Vec<ArchivedEntry> = chunks.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(archived, before[..7]);
    assert_eq!(check_chain(GENESIS, &archived), Ok(()));

    // The manifest: first/last seq, the prev_hash of each first entry (the genesis value, then
    // the last hash of the chunk before), the last hash, SHA-256 and CRC32C of each object.
    let manifest = a.manifest(date()).await.unwrap().expect("manifest");
    assert_eq!(manifest.entries, 7);
    assert_eq!(manifest.objects.len(), 3);
    let mut prev = GENESIS.to_owned();
    for (o, (name, entries)) in manifest.objects.iter().zip(&chunks) {
        assert_eq!(&o.name, name);
        assert_eq!(o.first_seq, entries[0].seq);
        assert_eq!(o.last_seq, entries[entries.len() - 1].seq);
        assert_eq!(o.prev_hash, prev);
        assert_eq!(o.last_hash, entries[entries.len() - 1].hash);
        assert_eq!(o.entries, entries.len() as u64);
        let bytes = a.storage.get(name).await.unwrap();
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(o.sha256, sha);
        use base64::Engine as _;
        assert_eq!(
            o.crc32c,
            base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(&bytes).to_be_bytes())
        );
        assert_eq!(o.bytes, bytes.len() as u64);
        prev = o.last_hash.clone();
    }

    // A second run finds nothing past the hot window and writes nothing.
    let again = a.archive(date(), Fault::None).await.unwrap();
    assert_eq!(
        (
            again.audit_archived,
            again.audit_recovered,
            again.audit_chunks
        ),
        (0, 0, 0)
    );
    assert_eq!(rows(&pool).await, before[7..]);
    assert_eq!(a.manifest(date()).await.unwrap().unwrap(), manifest);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn only_the_prefix_up_to_the_first_recent_entry_leaves(pool: PgPool) {
    // A published event carries its own time: an old one may follow a recent entry.
    append(&pool, &[old(2), recent(1), old(2)].concat()).await;
    let before = rows(&pool).await;
    let a = archiver(pool.clone(), 10).await;
    let summary = a.archive(date(), Fault::None).await.unwrap();
    assert_eq!(summary.audit_archived, 2);
    assert_eq!(rows(&pool).await, before[2..]);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_trigger_lets_only_archived_entries_be_deleted(pool: PgPool) {
    append(&pool, &[old(3), recent(2)].concat()).await;
    let before = rows(&pool).await;
    // Before any checkpoint no entry may go.
    let err = sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(before[0].seq)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let a = archiver(pool.clone(), 10).await;
    a.archive(date(), Fault::None).await.unwrap();
    assert_eq!(rows(&pool).await, before[3..]);

    // After it, an entry past the checkpoint still may not, nor may any be changed or the
    // table truncated; and the checkpoints themselves are append-only.
    for statement in [
        format!("DELETE FROM audit_log WHERE seq = {}", before[3].seq),
        "DELETE FROM audit_log".to_owned(),
        format!(
            "UPDATE audit_log SET action = 'x' WHERE seq = {}",
            before[4].seq
        ),
        "TRUNCATE audit_log".to_owned(),
        "UPDATE audit_checkpoint SET seq = seq + 1".to_owned(),
        "DELETE FROM audit_checkpoint".to_owned(),
        "TRUNCATE audit_checkpoint".to_owned(),
    ] {
        let err = sqlx::query(&statement).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert_eq!(rows(&pool).await, before[3..]);

    // A checkpoint must carry the hash of the entry it names and move forward.
    let forged =
        sqlx::query("INSERT INTO audit_checkpoint (seq, hash, object) VALUES ($1, $2, 'x')")
            .bind(before[4].seq)
            .bind(&before[3].hash)
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(forged.to_string().contains("does not match"), "{forged}");
    let backwards =
        sqlx::query("INSERT INTO audit_checkpoint (seq, hash, object) VALUES (1, 'h', 'x')")
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(backwards.to_string().contains("not after"), "{backwards}");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_run_killed_between_upload_and_delete_loses_nothing_and_archives_nothing_twice(
    pool: PgPool,
) {
    append(&pool, &[old(5), recent(1)].concat()).await;
    let before = rows(&pool).await;
    let a = archiver(pool.clone(), 2).await;
    let err = a.archive(date(), Fault::AfterUpload(2)).await.unwrap_err();
    assert!(matches!(err, log_archiver::Error::Interrupted(_)), "{err}");
    // The first chunk went all the way; the second is in the bucket, its entries still here.
    assert_eq!(checkpoint(&pool).await.unwrap().0, before[1].seq);
    assert_eq!(rows(&pool).await, before[2..]);
    assert_eq!(chunks(&a).await.len(), 2);

    let summary = a.archive(date(), Fault::None).await.unwrap();
    assert_eq!(
        summary.audit_recovered, 2,
        "the uploaded chunk verified again and was deleted"
    );
    assert_eq!(summary.audit_archived, 1);
    assert_eq!(summary.audit_chunks, 1);
    assert_eq!(rows(&pool).await, before[5..]);
    let chunks = chunks(&a).await;
    let archived: Vec<ArchivedEntry> = chunks.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(archived, before[..5], "every old entry once, in order");
    assert_eq!(check_chain(GENESIS, &archived), Ok(()));
    let manifest = a.manifest(date()).await.unwrap().unwrap();
    assert_eq!(manifest.entries, 5);
    let seqs: BTreeSet<i64> = manifest
        .objects
        .iter()
        .flat_map(|o| o.first_seq..=o.last_seq)
        .collect();
    assert_eq!(seqs.len(), 5);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_chunk_that_no_longer_verifies_after_a_kill_is_written_again(pool: PgPool) {
    append(&pool, &old(3)).await;
    let before = rows(&pool).await;
    let a = archiver(pool.clone(), 10).await;
    a.archive(date(), Fault::AfterUpload(1)).await.unwrap_err();
    // The chunk is damaged in the bucket (same metadata, other bytes).
    let objects = a.storage.list("audit/").await.unwrap();
    let chunk = objects
        .iter()
        .find(|o| o.name.ends_with(".ndjson.gz"))
        .unwrap();
    a.storage
        .put(
            &chunk.name,
            b"not gzip".to_vec(),
            "application/gzip",
            chunk.metadata.clone(),
        )
        .await
        .unwrap();
    let summary = a.archive(date(), Fault::None).await.unwrap();
    assert_eq!((summary.audit_recovered, summary.audit_archived), (0, 3));
    assert_eq!(rows(&pool).await, vec![]);
    let archived: Vec<ArchivedEntry> = chunks(&a).await.into_iter().flat_map(|(_, e)| e).collect();
    assert_eq!(archived, before);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_broken_chain_is_not_archived(pool: PgPool) {
    append(&pool, &old(3)).await;
    let before = rows(&pool).await;
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET action = 'nothing' WHERE seq = $1")
        .bind(before[1].seq)
        .execute(&pool)
        .await
        .unwrap();
    let a = archiver(pool.clone(), 10).await;
    let err = a.archive(date(), Fault::None).await.unwrap_err();
    assert!(err.to_string().contains("does not give its hash"), "{err}");
    assert_eq!(rows(&pool).await.len(), 3, "nothing deleted");
    assert!(checkpoint(&pool).await.is_none());
}
