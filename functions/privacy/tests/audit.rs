//! The audit trail's hash chain against a real PostgreSQL.

use privacy::audit::{self, Break, Entry};
use sqlx::PgPool;
use uuid::Uuid;

async fn append_n(pool: &PgPool, n: usize) -> Vec<String> {
    let (actor, subject) = (Uuid::new_v4(), Uuid::new_v4());
    let mut heads = Vec::new();
    for i in 0..n {
        let mut tx = pool.begin().await.unwrap();
        let action = if i % 2 == 0 {
            "diary.read"
        } else {
            "diary.updated"
        };
        heads.push(
            audit::append(
                &mut tx,
                &Entry {
                    actor,
                    subject,
                    action,
                    function: "sleep-diary",
                    object: Some(Uuid::new_v4()),
                },
            )
            .await
            .unwrap(),
        );
        tx.commit().await.unwrap();
    }
    heads
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_intact_chain_verifies_and_holds_no_user_id(pool: PgPool) {
    let heads = append_n(&pool, 5).await;
    assert_eq!(
        audit::verify(&pool, heads.last().map(String::as_str))
            .await
            .unwrap(),
        vec![]
    );
    let err = sqlx::query("DELETE FROM audit_log").execute(&pool).await;
    assert!(err.is_err(), "the table refuses deletes");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_verifier_detects_a_removed_and_a_modified_entry(pool: PgPool) {
    let heads = append_n(&pool, 6).await;
    // Someone with owner rights switches the guard off and edits the trail.
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET action = 'nothing' WHERE seq = 5")
        .execute(&pool)
        .await
        .unwrap();
    let breaks = audit::verify(&pool, heads.last().map(String::as_str))
        .await
        .unwrap();
    assert_eq!(
        breaks,
        vec![Break::Unlinked { seq: 4 }, Break::Altered { seq: 5 }]
    );
    // Cutting the tail is caught against the head kept outside the database.
    sqlx::query("DELETE FROM audit_log WHERE seq = 6")
        .execute(&pool)
        .await
        .unwrap();
    let breaks = audit::verify(&pool, heads.last().map(String::as_str))
        .await
        .unwrap();
    assert!(breaks.contains(&Break::HeadMissing), "{breaks:?}");
}
