//! The retention sweep against the real stores.

use chrono::{Duration, Utc};
use common::testkit;
use retention::{Policy, sweep};
use sqlx::PgPool;
use uuid::Uuid;

fn policy() -> Policy {
    Policy {
        inactive_account_days: 730,
        auth_token_days: 7,
        processed_event_days: 30,
        undeliverable_days: 90,
        job_run_days: 400,
        erasure_ledger_days: 400,
    }
}

async fn stores(pool: &PgPool) -> privacy::erasure::Stores {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    privacy::erasure::Stores {
        pool: pool.clone(),
        redis: common::cache::Redis::connect(&common::cache::RedisConfig {
            redis_url: url.into(),
            redis_key_prefix: format!("t-{}", Uuid::new_v4().simple()),
            redis_timeout_ms: 2000,
        })
        .unwrap(),
        firestore: firestore::FirestoreDb::new("dta-wide-retention-test")
            .await
            .unwrap(),
        buckets: vec![],
        keyring: testkit::keyring(pool),
        archive: None,
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn data_past_its_period_goes_and_everything_else_stays(pool: PgPool) {
    let s = stores(&pool).await;
    let now = Utc::now();
    let active = testkit::user(&pool).await;
    let dormant = testkit::user(&pool).await;
    // The dormant account's last activity lies 25 months back.
    sqlx::query("UPDATE users SET created_at = $2 WHERE id = $1")
        .bind(dormant)
        .bind(now - Duration::days(760))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE consent_events SET at = $2 WHERE user_id = $1")
        .bind(dormant)
        .bind(now - Duration::days(760))
        .execute(&pool)
        .await
        .unwrap();
    for (key, age) in [("old", 40), ("fresh", 1)] {
        sqlx::query("INSERT INTO processed_events (business_key, first_message_id, processed_at) VALUES ($1, 'm', $2)")
            .bind(key)
            .bind(now - Duration::days(age))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO auth_tokens (token_hash, user_id, purpose, expires_at) VALUES ('h1', $1, 'verify_email', $2), ('h2', $1, 'verify_email', $3)")
        .bind(active)
        .bind(now - Duration::days(10))
        .bind(now + Duration::days(1))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO erasure_ledger (subject_hash, stores, completed_at) VALUES ('old', '[]', $1), ('new', '[]', $2)")
        .bind(now - Duration::days(401))
        .bind(now - Duration::days(3))
        .execute(&pool)
        .await
        .unwrap();

    let swept = sweep(&s, &policy(), now).await.unwrap();
    assert_eq!(swept.accounts_erased, 1);
    assert_eq!(swept.processed_events, 1);
    assert_eq!(swept.auth_tokens, 1);
    assert_eq!(
        swept.ledger_entries, 1,
        "the new ledger entry of the dormant account stays too"
    );

    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM users WHERE id = '{dormant}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM users WHERE id = '{active}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM processed_events").await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM auth_tokens").await, 1);
    let ledger: Vec<String> =
        sqlx::query_scalar("SELECT subject_hash FROM erasure_ledger ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(ledger.contains(&privacy::erasure::subject_hash(dormant)));
    assert!(ledger.contains(&"new".to_owned()));

    let again = sweep(&s, &policy(), now).await.unwrap();
    assert_eq!(
        again,
        retention::Swept::default(),
        "a second run finds nothing"
    );
}
