//! The verifier after log-archiver moved the old part of the trail to Cloud Storage, against a
//! real PostgreSQL and fake-gcs-server (`scripts/emulators.sh`).

use chrono::{Duration, NaiveDate, SubsecRound as _, Utc};
use common::events::AuditRecorded;
use common::storage::{Storage, StorageConfig};
use log_archiver::Fault;
use log_archiver::audit::AuditArchiver;
use privacy::audit::{self, Break, Entry};
use sqlx::PgPool;
use uuid::Uuid;

async fn archiver(pool: PgPool) -> AuditArchiver {
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
        chunk_entries: 4,
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// `n` published events from 200 days ago, then `m` entries the privacy function appends now;
/// returns the head.
async fn trail(pool: &PgPool, n: usize, m: usize) -> String {
    let start = (Utc::now() - Duration::days(200)).trunc_subsecs(6);
    for i in 0..n {
        let mut tx = pool.begin().await.unwrap();
        let event = AuditRecorded {
            actor_ref: common::events::pseudonym(Uuid::new_v4()),
            subject_ref: common::events::pseudonym(Uuid::new_v4()),
            action: "sleep-log.read".into(),
            function: "sleep-diary".into(),
            object_id: Some(Uuid::new_v4()),
            at: start + Duration::minutes(i as i64),
        };
        assert!(
            audit::append_recorded(&mut tx, Uuid::new_v4(), &event)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
    }
    let mut head = String::new();
    for _ in 0..m {
        head = append_now(pool).await;
    }
    head
}

async fn append_now(pool: &PgPool) -> String {
    let mut tx = pool.begin().await.unwrap();
    let head = audit::append(
        &mut tx,
        &Entry {
            actor: Uuid::new_v4(),
            subject: Uuid::new_v4(),
            action: "export.read",
            function: "privacy",
            object: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    head
}

async fn seqs(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn after_archiving_the_rest_verifies_and_a_removed_or_altered_entry_still_shows(
    pool: PgPool,
) {
    let head = trail(&pool, 6, 3).await;
    let summary = archiver(pool.clone())
        .await
        .archive(today(), Fault::None)
        .await
        .unwrap();
    assert_eq!((summary.audit_archived, summary.audit_chunks), (6, 2));
    let left = seqs(&pool).await;
    assert_eq!(left.len(), 3, "the recent entries stay");
    let checkpoint = audit::checkpoint(&pool).await.unwrap().expect("checkpoint");
    assert!(checkpoint.seq < left[0]);
    assert_eq!(audit::verify(&pool, Some(&head)).await.unwrap(), vec![]);
    // A new entry links to the remaining head as before.
    let head = append_now(&pool).await;
    assert_eq!(audit::verify(&pool, Some(&head)).await.unwrap(), vec![]);

    // Someone with owner rights switches the guard off and edits what remains.
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .execute(&pool)
        .await
        .unwrap();
    // The entry right after the checkpoint is removed: the next no longer links to it.
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(left[0])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&pool, Some(&head)).await.unwrap(),
        vec![Break::Unlinked { seq: left[1] }]
    );
    sqlx::query("UPDATE audit_log SET action = 'nothing' WHERE seq = $1")
        .bind(left[2])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&pool, Some(&head)).await.unwrap(),
        vec![
            Break::Unlinked { seq: left[1] },
            Break::Altered { seq: left[2] }
        ]
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn when_every_entry_is_archived_the_next_one_links_to_the_checkpoint(pool: PgPool) {
    let _ = trail(&pool, 5, 0).await;
    archiver(pool.clone())
        .await
        .archive(today(), Fault::None)
        .await
        .unwrap();
    assert_eq!(seqs(&pool).await, Vec::<i64>::new());
    let checkpoint = audit::checkpoint(&pool).await.unwrap().expect("checkpoint");
    // The head kept outside is now the checkpoint's.
    assert_eq!(
        audit::verify(&pool, Some(&checkpoint.hash)).await.unwrap(),
        vec![]
    );
    let head = append_now(&pool).await;
    let prev: String = sqlx::query_scalar("SELECT prev_hash FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(prev, checkpoint.hash);
    assert_eq!(audit::verify(&pool, Some(&head)).await.unwrap(), vec![]);
    // A head that is neither here nor a checkpoint shows as cut.
    assert_eq!(
        audit::verify(&pool, Some(&"f".repeat(64))).await.unwrap(),
        vec![Break::HeadMissing]
    );
}
