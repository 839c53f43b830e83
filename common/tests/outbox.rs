//! The outbox drainer against a real PostgreSQL and the Pub/Sub emulator: a batch is handed to
//! the client whole, and a topic that fails holds back only its own rows.

use std::collections::BTreeSet;

use common::events::AuditRecorded;
use common::pubsub::{Publishers, drain_once, enqueue_audit};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

fn emulator() -> String {
    std::env::var("PUBSUB_EMULATOR_HOST").expect("start the emulators: scripts/emulators.sh start")
}

/// Creates a topic or subscription of the emulator (`path` under the project's `base`).
async fn put(http: &reqwest::Client, base: &str, path: &str, body: Value) {
    let r = http
        .put(format!("{base}/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {:?}", r.text().await);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_failing_topic_holds_back_only_its_own_rows(pool: PgPool) {
    // Unique project: nothing left over from other runs. Only the `audit` topic exists.
    let project = format!("outbox-{}", Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/projects/{project}", emulator());
    for (path, body) in [
        ("topics/audit".to_owned(), json!({})),
        (
            "subscriptions/check".to_owned(),
            json!({"topic": format!("projects/{project}/topics/audit")}),
        ),
    ] {
        put(&http, &base, &path, body).await;
    }

    // The oldest row goes to a topic that does not exist; three audit events follow it.
    let user = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, payload) VALUES ($1, 'missing', '{\"type\":\"x\"}')",
    )
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap();
    let mut sent = BTreeSet::new();
    for action in ["sleep-log.created", "sleep-log.read", "sleep-log.updated"] {
        let id = enqueue_audit(
            &pool,
            &AuditRecorded::own(user, action, "sleep-diary", None),
        )
        .await
        .unwrap();
        sent.insert(id.to_string());
    }

    let publishers = Publishers::new(project.clone(), Some(emulator()));
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 3);

    // The failed row stays, counted and with its cause; the published ones are gone.
    let left: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT topic, attempts, last_error FROM outbox")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!((left[0].0.as_str(), left[0].1), ("missing", 1));
    assert!(
        left[0].2.as_deref().unwrap_or("").contains("missing"),
        "{left:?}"
    );

    // The three arrived, each once, carrying its event id.
    let mut got = BTreeSet::new();
    for _ in 0..20 {
        let pulled: Value = http
            .post(format!("{base}/subscriptions/check:pull"))
            .json(&json!({"maxMessages": 10}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for m in pulled["receivedMessages"].as_array().into_iter().flatten() {
            got.insert(
                m["message"]["attributes"]["event_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        if got.len() >= 3 {
            break;
        }
    }
    assert_eq!(got, sent);

    // Once the topic exists, the next drain publishes the held row.
    put(&http, &base, "topics/missing", json!({})).await;
    // Once its retry time (1 s after the failure) has come, it goes.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn rows_that_keep_failing_wait_and_do_not_fill_every_batch(pool: PgPool) {
    let project = format!("outbox-{}", Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/projects/{project}", emulator());
    put(&http, &base, "topics/audit", json!({})).await;
    // More failing rows at the front than one batch holds, then ten good ones.
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, payload) \
         SELECT gen_random_uuid(), 'missing', '{\"type\":\"x\"}' FROM generate_series(1, 150)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let user = Uuid::new_v4();
    for _ in 0..10 {
        enqueue_audit(
            &pool,
            &AuditRecorded::own(user, "sleep-log.read", "sleep-diary", None),
        )
        .await
        .unwrap();
    }
    let publishers = Publishers::new(project.clone(), Some(emulator()));
    // The first batch is all failures; they wait, so the next batch reaches the good rows.
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 0);
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 10);
    let (left, waiting): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE retry_at > now()) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((left, waiting), (150, 150));
}
