//! The audit subscription's push route against a real PostgreSQL: `audit.recorded` events from
//! the other functions' outboxes enter the hash chain once, malformed ones are acknowledged.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use common::events::{AuditRecorded, pseudonym};
use privacy::audit::{self, Entry};
use privacy::push::{PushState, routes};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

fn app(state: PushState) -> axum::Router {
    common::http::platform(
        routes().into_router().with_state(state),
        Duration::from_secs(10),
    )
}

fn envelope(message_id: &str, data: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "subscription": "projects/p/subscriptions/privacy-audit",
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": message_id, "message_id": message_id,
            "publishTime": "2026-12-03T10:00:00Z",
            "attributes": {"type": "audit.recorded"}
        },
        "deliveryAttempt": 1
    }))
    .unwrap()
}

async fn push(state: &PushState, body: Vec<u8>) -> StatusCode {
    let req = Request::post("/pubsub/audit")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    app(state.clone()).oneshot(req).await.unwrap().status()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// What a producer's outbox holds for `event`, written by the helper every function uses.
async fn outbox_payload(pool: &PgPool, event: &AuditRecorded) -> Value {
    let id = common::pubsub::enqueue_audit(pool, event).await.unwrap();
    sqlx::query_scalar("SELECT payload FROM outbox WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn the_events_pseudonym_is_the_erasure_pseudonym() {
    let user = Uuid::new_v4();
    assert_eq!(pseudonym(user), privacy::erasure::subject_hash(user));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_redelivered_audit_event_enters_the_chain_once_and_the_chain_verifies(pool: PgPool) {
    let state = PushState {
        pool: pool.clone(),
        verifier: None,
    };
    let user = common::testkit::user(&pool).await;
    let entry = Uuid::new_v4();
    // An entry privacy writes itself, then two published ones: the chain runs through all.
    let mut tx = pool.begin().await.unwrap();
    audit::append(
        &mut tx,
        &Entry {
            actor: user,
            subject: user,
            action: "consent.granted",
            function: "privacy",
            object: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let created = AuditRecorded::own(user, "sleep-log.created", "sleep-diary", Some(entry));
    let read = AuditRecorded::own(user, "sleep-log.read", "sleep-diary", None);
    let created_payload = outbox_payload(&pool, &created).await;
    let read_payload = outbox_payload(&pool, &read).await;
    let body = serde_json::to_vec(&created_payload).unwrap();
    // At-least-once delivery: the same message twice, and the same event under another
    // message id (a re-publication after a drainer crash).
    for message_id in ["m-1", "m-1", "m-2"] {
        assert_eq!(
            push(&state, envelope(message_id, &body)).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        push(
            &state,
            envelope("m-3", &serde_json::to_vec(&read_payload).unwrap())
        )
        .await,
        StatusCode::NO_CONTENT
    );
    type Row = (
        String,
        String,
        String,
        String,
        Option<Uuid>,
        DateTime<Utc>,
        Option<Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT actor_ref, subject_ref, action, function, object_id, at, event_id FROM audit_log ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let subject = privacy::erasure::subject_hash(user);
    assert_eq!(rows[0].2, "consent.granted");
    assert_eq!(rows[0].6, None);
    assert_eq!(
        rows[1],
        (
            subject.clone(),
            subject.clone(),
            "sleep-log.created".to_owned(),
            "sleep-diary".to_owned(),
            Some(entry),
            created.at,
            Some(Uuid::parse_str(created_payload["id"].as_str().unwrap()).unwrap()),
        )
    );
    assert_eq!(
        (rows[2].2.as_str(), rows[2].3.as_str(), rows[2].4),
        ("sleep-log.read", "sleep-diary", None)
    );
    let head: String = sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audit::verify(&pool, Some(&head)).await.unwrap(), vec![]);
    // The trail holds no user id, only the pseudonym.
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM audit_log WHERE actor_ref LIKE '%{user}%' OR subject_ref LIKE '%{user}%'")
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM undeliverable_events").await,
        0
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn malformed_events_are_acknowledged_with_their_reason_and_never_appended(pool: PgPool) {
    let state = PushState {
        pool: pool.clone(),
        verifier: None,
    };
    let user = Uuid::new_v4();
    let good = AuditRecorded::own(user, "sleep-log.read", "sleep-diary", None);
    let envelope_of = |data: Value| {
        serde_json::to_vec(&json!({"type": "audit.recorded", "version": 1, "id": Uuid::new_v4(), "occurred_at": "2026-12-03T10:00:00Z", "data": data}))
            .unwrap()
    };
    let mut raw_id = serde_json::to_value(&good).unwrap();
    raw_id["subject_ref"] = json!(user.to_string());
    let mut shouting = serde_json::to_value(&good).unwrap();
    shouting["action"] = json!("READ ALL");
    let mut extra = serde_json::to_value(&good).unwrap();
    extra["comment"] = json!("slept badly");
    let sleep_event = serde_json::to_vec(&json!({"type": "sleep-log.recorded", "version": 1, "id": Uuid::new_v4(), "occurred_at": "2026-12-03T10:00:00Z", "data": {}})).unwrap();
    let mut v2 =
        serde_json::from_slice::<Value>(&envelope_of(serde_json::to_value(&good).unwrap()))
            .unwrap();
    v2["version"] = json!(2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "raw-id",
            envelope_of(raw_id),
            "subject_ref is not a pseudonym",
        ),
        (
            "bad-action",
            envelope_of(shouting),
            "action is not a short lowercase name",
        ),
        ("extra-field", envelope_of(extra), "unknown field `comment`"),
        ("not-json", b"{{{".to_vec(), "not an event envelope"),
        (
            "other-type",
            sleep_event,
            "invalid \"sleep-log.recorded\" v1",
        ),
        ("v2", serde_json::to_vec(&v2).unwrap(), "unknown version 2"),
    ];
    for (id, data, reason) in &cases {
        assert_eq!(
            push(&state, envelope(id, data)).await,
            StatusCode::NO_CONTENT,
            "{id}"
        );
        let stored: String =
            sqlx::query_scalar("SELECT reason FROM undeliverable_events WHERE message_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(stored.contains(reason), "{id}: {stored}");
        assert!(!stored.contains("slept badly"), "{id}: {stored}");
    }
    // Unreadable base64 is acknowledged too; a body that is no push envelope is refused.
    let bad_b64 = serde_json::to_vec(
        &json!({"subscription": "s", "message": {"messageId": "b64", "data": "%%%"}}),
    )
    .unwrap();
    assert_eq!(push(&state, bad_b64).await, StatusCode::NO_CONTENT);
    assert_eq!(
        push(&state, b"{\"eventType\": \"x\"}".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM undeliverable_events").await,
        7
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn with_oidc_required_a_push_without_a_valid_token_is_refused(pool: PgPool) {
    let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json!({"keys": []})).unwrap();
    let state = PushState {
        pool: pool.clone(),
        verifier: Some(std::sync::Arc::new(
            common::pubsub::OidcVerifier::with_keys(
                "https://privacy.example/pubsub/audit",
                "pubsub-push@dta-wide.iam.gserviceaccount.com",
                keys,
            ),
        )),
    };
    let event = AuditRecorded::own(Uuid::new_v4(), "sleep-log.read", "sleep-diary", None);
    let payload = outbox_payload(&pool, &event).await;
    let body = envelope("o-1", &serde_json::to_vec(&payload).unwrap());
    assert_eq!(push(&state, body.clone()).await, StatusCode::UNAUTHORIZED);
    let req = Request::post("/pubsub/audit")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer not.a.token")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(
        app(state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 0);
}

/// How fast the push route appends (every append takes the chain's one lock). Prints events/s
/// for 1 and 16 concurrent pushers. Run with
/// `cargo test -p privacy --test audit_push -- --ignored --nocapture`.
#[sqlx::test(migrator = "common::db::MIGRATOR")]
#[ignore = "measurement, not a check"]
async fn append_rate_of_the_push_route(pool: PgPool) {
    let state = PushState {
        pool: pool.clone(),
        verifier: None,
    };
    let n = 1000;
    for pushers in [1usize, 16] {
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let e = AuditRecorded::own(Uuid::new_v4(), "sleep-log.read", "sleep-diary", None);
                let env = common::events::Event::AuditRecorded(e.clone())
                    .to_envelope(Uuid::new_v4(), e.at);
                envelope(
                    &format!("rate-{pushers}-{i}"),
                    &serde_json::to_vec(&env).unwrap(),
                )
            })
            .collect();
        let clock = std::time::Instant::now();
        let mut tasks = Vec::new();
        for chunk in bodies.chunks(n / pushers) {
            let (state, chunk) = (state.clone(), chunk.to_vec());
            tasks.push(tokio::spawn(async move {
                for body in chunk {
                    assert_eq!(push(&state, body).await, StatusCode::NO_CONTENT);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "{pushers:2} pushers: {:.0} appends/s",
            n as f64 / clock.elapsed().as_secs_f64()
        );
    }
    assert_eq!(audit::verify(&pool, None).await.unwrap(), vec![]);
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 2000);
}
