//! The audit chain on the emulators: an audit event in a producer's outbox → the drainer
//! publishes it to the Pub/Sub emulator → the emulator pushes it to privacy on a real socket →
//! it is in the hash chain.

use std::time::{Duration, Instant};

use common::events::AuditRecorded;
use common::pubsub::{Publishers, drain_once, enqueue_audit};
use privacy::push::{PushState, routes};
use sqlx::PgPool;
use uuid::Uuid;

fn emulator() -> String {
    std::env::var("PUBSUB_EMULATOR_HOST").expect("start the emulators: scripts/emulators.sh start")
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_audit_event_travels_through_the_pubsub_emulator_into_the_chain(pool: PgPool) {
    let project = format!("audit-e2e-{}", Uuid::new_v4().simple());
    let state = PushState {
        pool: pool.clone(),
        verifier: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = common::http::platform(
        routes().into_router().with_state(state),
        Duration::from_secs(30),
    );
    tokio::spawn(axum::serve(listener, app).into_future());

    // Topic and push subscription as production names them (unique project: no reset).
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/projects/{project}", emulator());
    let topic = http
        .put(format!("{base}/topics/audit"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(topic.status().is_success(), "{:?}", topic.text().await);
    let sub = http
        .put(format!("{base}/subscriptions/privacy-audit"))
        .json(&serde_json::json!({
            "topic": format!("projects/{project}/topics/audit"),
            "pushConfig": {"pushEndpoint": format!("http://127.0.0.1:{port}/pubsub/audit")},
            "ackDeadlineSeconds": 10
        }))
        .send()
        .await
        .unwrap();
    assert!(sub.status().is_success(), "{:?}", sub.text().await);

    let user = Uuid::new_v4();
    let entry = Uuid::new_v4();
    let mut tx = pool.begin().await.unwrap();
    for (action, object) in [("sleep-log.created", Some(entry)), ("sleep-log.read", None)] {
        enqueue_audit(
            &mut *tx,
            &AuditRecorded::own(user, action, "sleep-diary", object),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let publishers = Publishers::new(project.clone(), Some(emulator()));
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 2);

    let started = Instant::now();
    let mut rows: Vec<(String, Option<Uuid>)> = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        rows = sqlx::query_as("SELECT action, object_id FROM audit_log ORDER BY action")
            .fetch_all(&pool)
            .await
            .unwrap();
        if rows.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rows,
        vec![
            ("sleep-log.created".to_owned(), Some(entry)),
            ("sleep-log.read".to_owned(), None)
        ]
    );
    assert_eq!(
        privacy::audit::verify(&pool, None).await.unwrap(),
        vec![],
        "the chain holds"
    );
    let subject: String = sqlx::query_scalar("SELECT DISTINCT subject_ref FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(subject, privacy::erasure::subject_hash(user));
}
