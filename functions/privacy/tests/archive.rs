//! Erasure reaches the log archive: documents log-archiver already wrote to Cloud Storage are
//! rewritten without the erased user's lines (Firestore emulator and fake-gcs-server).

mod support;

use std::io::BufRead as _;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use common::documents::{ANALYSIS_LOGS, Documents, StoredDoc};
use common::job::Task;
use common::storage::{Storage, StorageConfig};
use common::testkit;
use log_archiver::{ArchivedDocument, Archiver, Fault};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

fn lines(gzip: &[u8]) -> Vec<ArchivedDocument> {
    std::io::BufReader::new(flate2::read::GzDecoder::new(gzip))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_erased_user_s_archived_lines_are_gone_and_the_manifest_matches_again(pool: PgPool) {
    let mut s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;

    // Six analysis logs past the 90-day hot window, oldest first: three of the user (one chunk
    // of only theirs), then other, user, other (a mixed chunk).
    let project = format!(
        "privacy-archive-{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let docs = Documents::connect(&project).await.unwrap();
    let old = Utc::now() - Duration::days(200);
    let owners = [user, user, user, other, user, other];
    for (i, owner) in owners.iter().enumerate() {
        docs.put(
            *owner,
            ANALYSIS_LOGS,
            &format!("w{i}"),
            &StoredDoc::new(
                *owner,
                old + Duration::minutes(i as i64),
                "sleep-window.prescribed",
                json!({"window_min": 360 + i, "se_pct": 84.5}),
            ),
        )
        .await
        .unwrap();
    }
    let config = StorageConfig {
        storage_emulator_host: std::env::var("STORAGE_EMULATOR_HOST").ok(),
    };
    let storage = Storage::connect(
        &config,
        &format!("archive-{}", &Uuid::new_v4().simple().to_string()[..12]),
    )
    .await
    .unwrap();
    storage.ensure_bucket(&project).await.unwrap();
    let archiver = Archiver {
        db: firestore::FirestoreDb::new(&project).await.unwrap(),
        storage: storage.clone(),
        prefix: "firestore".into(),
        hot_days: 90,
        chunk_docs: 3,
        groups: vec![ANALYSIS_LOGS.into()],
    };
    let today = Utc::now().date_naive();
    let task = Task {
        job: "log-archiver".into(),
        execution: "erasure-test".into(),
        index: 0,
        count: 1,
        attempt: 0,
        logical_date: today,
    };
    let summary = archiver.archive(&task, Fault::None).await.unwrap();
    assert_eq!((summary.archived, summary.chunks), (6, 2));

    let archived_of = |who: Uuid| {
        let storage = storage.clone();
        async move {
            let mut n = 0;
            for o in storage.list_versions("firestore/").await.unwrap() {
                if o.name.ends_with(".ndjson.gz") {
                    let bytes = storage.get_generation(&o.name, o.generation).await.unwrap();
                    n += lines(&bytes)
                        .iter()
                        .filter(|d| d.fields["user_id"] == who.to_string())
                        .count();
                }
            }
            n
        }
    };
    assert_eq!(archived_of(user).await, 4);

    s.stores.archive = Some(privacy::erasure::Archive {
        storage: storage.clone(),
        prefix: "firestore".into(),
    });
    let (status, body) = support::call(&s, "DELETE", "/v1/me", user, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let archive = body["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["store"] == "archive")
        .unwrap()
        .clone();
    assert_eq!(archive["status"], "erased", "{body}");
    assert_eq!(
        archive["removed"], 4,
        "four lines, no older generation: {body}"
    );

    // Nothing of the user in any version of any chunk; the other user's two lines stay.
    assert_eq!(archived_of(user).await, 0);
    assert_eq!(archived_of(other).await, 2);

    // The manifest lists what the bucket holds again: one chunk (the user-only one is gone),
    // its counts and checksums those of the rewritten object, which verifies as written.
    let manifest = archiver
        .manifest(today, ANALYSIS_LOGS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.documents, 2);
    assert_eq!(manifest.objects.len(), 1);
    let chunks: Vec<_> = storage
        .list("firestore/")
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.name.ends_with(".ndjson.gz"))
        .collect();
    assert_eq!(chunks.len(), 1);
    let entry = &manifest.objects[0];
    assert_eq!(entry.name, chunks[0].name);
    let bytes = storage.get(&entry.name).await.unwrap();
    assert_eq!(entry.bytes, bytes.len() as u64);
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(entry.sha256, sha);
    if let Some(crc) = chunks[0].crc32c {
        assert_eq!(
            common::storage::crc32c_from_base64(&entry.crc32c),
            Some(crc)
        );
    }
    let paths = archiver.read_back(&chunks[0]).await.unwrap();
    assert_eq!(
        paths,
        vec![
            format!("users/{other}/{ANALYSIS_LOGS}/w3"),
            format!("users/{other}/{ANALYSIS_LOGS}/w5")
        ]
    );
}
