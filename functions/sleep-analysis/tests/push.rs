//! The push handler with real PostgreSQL and the Firestore emulator (FIRESTORE_EMULATOR_HOST).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use common::documents::{ANALYSIS_LOGS, Documents, EVENTS};
use common::events::{Event, NightSummary, SleepLogIngested, SleepLogRecorded};
use common::testkit;
use serde_json::{Value, json};
use sleep_analysis::{ApiDoc, AppState, app, served_routes, titration};
use sqlx::PgPool;
use tower::ServiceExt;
use utoipa::OpenApi;
use uuid::Uuid;

async fn state(pool: PgPool) -> AppState {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "start the emulators: scripts/emulators.sh start"
    );
    // A project of its own per test keeps document counts apart.
    let docs = Documents::connect(&format!("test-{}", Uuid::new_v4().simple()))
        .await
        .unwrap();
    AppState {
        pool,
        keys: testkit::jwt_keys(),
        docs,
        params: titration::PROFILE_S,
        push_auth: None,
    }
}

fn realdata(name: &str) -> Vec<u8> {
    let dir = std::env::var("REALDATA_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/realdata").into()
    });
    std::fs::read(format!("{dir}/gcp-pubsub/{name}")).unwrap()
}

fn envelope(message_id: &str, data: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "subscription": "projects/p/subscriptions/sleep-analysis",
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": message_id, "message_id": message_id,
            "publishTime": "2026-12-03T10:00:00Z", "publish_time": "2026-12-03T10:00:00Z",
            "attributes": {"type": "sleep-log.recorded"}
        }
    }))
    .unwrap()
}

async fn push(state: &AppState, body: Vec<u8>) -> StatusCode {
    let req = Request::post("/pubsub/push")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    app(state.clone(), Duration::from_secs(30))
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

fn t(s: &str) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// A diary night: into bed 23:00, final awakening 06:30, out of bed 07:00 local (+01:00).
fn diary_event(user: Uuid, night: NaiveDate, tib: i64, tst: i64) -> Event {
    let day = night.format("%Y-%m-%d");
    let prev = (night - chrono::Duration::days(1)).format("%Y-%m-%d");
    Event::SleepLogRecorded(SleepLogRecorded {
        user_id: user,
        entry_id: Uuid::from_u128(
            night
                .to_string()
                .bytes()
                .fold(7u128, |a, b| a * 31 + u128::from(b)),
        ),
        change: "created".into(),
        summary: Some(NightSummary {
            night,
            zone: "Europe/Berlin".into(),
            start: t(&format!("{prev}T23:00:00+01:00")),
            end: t(&format!("{day}T07:00:00+01:00")),
            final_awakening: t(&format!("{day}T06:30:00+01:00")),
            tib_min: tib,
            tst_min: tst,
            sol_min: Some(20),
            waso_min: Some(15),
        }),
        night,
        revision: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
    })
}

fn bytes_of(e: &Event) -> Vec<u8> {
    serde_json::to_vec(&e.to_envelope(Uuid::new_v4(), Utc::now())).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_real_push_bodies_are_acknowledged_or_refused_as_their_shape_says(pool: PgPool) {
    let s = state(pool.clone()).await;
    // Real envelopes whose data is not one of our events: acknowledged (204) and counted.
    for f in [
        "ffpython-issue170-real-push-body-no-attributes.json",
        "google-cloudevents-MessagePublishedData-text.json",
        "google-cloudevents-MessagePublishedData-binary.json",
        "google-cloudevents-MessagePublishedData-duplicatedFields.json",
    ] {
        assert_eq!(push(&s, realdata(f)).await, StatusCode::NO_CONTENT, "{f}");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM undeliverable_events").await,
        2,
        "two distinct message ids among the four"
    );
    // Legacy background-event and CloudEvent shapes are refused, not mis-parsed.
    for f in [
        "ffconformance-legacy_pubsub-legacy-input.json",
        "ffconformance-pubsub_text-legacy-input.json",
        "ffconformance-pubsub_text-cloudevent-input.json",
    ] {
        assert_eq!(push(&s, realdata(f)).await, StatusCode::BAD_REQUEST, "{f}");
    }
    // An unknown version of a known type is acknowledged, not retried for ever.
    let mut v: Value = serde_json::from_slice(&bytes_of(&diary_event(
        Uuid::new_v4(),
        "2025-03-03".parse().unwrap(),
        420,
        340,
    )))
    .unwrap();
    v["version"] = json!(9);
    assert_eq!(
        push(&s, envelope("v9", &serde_json::to_vec(&v).unwrap())).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM undeliverable_events").await,
        3
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sleep_windows").await, 0);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_repeated_push_and_a_republished_import_store_one_result(pool: PgPool) {
    let s = state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let e = diary_event(user, "2025-03-03".parse().unwrap(), 420, 340);
    let body = envelope("m-1", &bytes_of(&e));
    assert_eq!(push(&s, body.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(push(&s, body).await, StatusCode::NO_CONTENT);
    // The same Fitbit night published twice under new message and event ids.
    let night = NightSummary {
        night: "2025-03-04".parse().unwrap(),
        zone: "Europe/Berlin".into(),
        start: t("2025-03-04T01:16:00+01:00"),
        end: t("2025-03-04T03:14:00+01:00"),
        final_awakening: t("2025-03-04T03:14:00+01:00"),
        tib_min: 118,
        tst_min: 112,
        sol_min: None,
        waso_min: None,
    };
    for (i, import) in [Uuid::new_v4(), Uuid::new_v4()].into_iter().enumerate() {
        let ev = Event::SleepLogIngested(SleepLogIngested {
            user_id: user,
            import_id: import,
            source: "fitbit".into(),
            nights: vec![night.clone()],
        });
        assert_eq!(
            push(&s, envelope(&format!("f-{i}"), &bytes_of(&ev))).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM processed_events").await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT sum(duplicates)::bigint FROM processed_events"
        )
        .await,
        2
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sleep_windows").await, 1);
    let logs = s.docs.list(user, ANALYSIS_LOGS).await.unwrap();
    let events = s.docs.list(user, EVENTS).await.unwrap();
    // First the diary night alone, then diary + device: two distinct results, none twice.
    assert_eq!((logs.len(), events.len()), (2, 2), "{logs:?}");
    let latest: Vec<_> = logs
        .iter()
        .filter(|(_, d)| d.payload["nights"] == 2)
        .collect();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].1.payload["tst_mean_min"], 226);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_week_of_diary_nights_prescribes_a_window_served_to_its_user_only(pool: PgPool) {
    let s = state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    for d in 3..=9 {
        let e = diary_event(user, format!("2025-03-{d:02}").parse().unwrap(), 420, 278);
        assert_eq!(
            push(&s, envelope(&format!("w-{d}"), &bytes_of(&e))).await,
            StatusCode::NO_CONTENT
        );
    }
    let req = |u: Uuid| {
        Request::get("/v1/sleep-window")
            .header(header::AUTHORIZATION, testkit::bearer(&s.keys, u))
            .body(Body::empty())
            .unwrap()
    };
    let res = app(s.clone(), Duration::from_secs(5))
        .oneshot(req(user))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let w = testkit::json_body(res).await;
    assert_eq!(w["window_min"], 300, "T1: mean TST 278 → floor 300");
    assert_eq!(w["change"], "initial");
    assert_eq!(w["wake_time"], "06:30");
    assert_eq!(w["bedtime"], "01:30");
    assert_eq!(w["se_pct"], 66.2);
    assert_eq!(w["params_version"], "S-2026-12");
    let other = app(s.clone(), Duration::from_secs(5))
        .oneshot(req(testkit::user(&pool).await))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // The one read that found a window is in the outbox as an audit event, ids only.
    let audits: Vec<Value> = sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'audit'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(audits.len(), 1, "{audits:?}");
    let d = &audits[0]["data"];
    assert_eq!(audits[0]["type"], "audit.recorded");
    assert_eq!(
        (d["action"].as_str(), d["function"].as_str()),
        (Some("sleep-window.read"), Some("sleep-analysis"))
    );
    assert_eq!(d["subject_ref"], common::events::pseudonym(user).as_str());
    assert!(d.get("window_min").is_none());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn after_the_consent_is_withdrawn_events_are_skipped_and_the_window_is_refused(pool: PgPool) {
    let s = state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    for d in 3..=9 {
        let e = diary_event(user, format!("2025-03-{d:02}").parse().unwrap(), 420, 278);
        assert_eq!(
            push(&s, envelope(&format!("c-{d}"), &bytes_of(&e))).await,
            StatusCode::NO_CONTENT
        );
    }
    let before = |sql: &'static str| count(&pool, sql);
    let nights = before("SELECT count(*) FROM analysis_nights").await;
    let windows = before("SELECT count(*) FROM sleep_windows").await;
    let processed = before("SELECT count(*) FROM processed_events").await;
    let logs = s.docs.list(user, ANALYSIS_LOGS).await.unwrap().len();
    assert_eq!((nights, windows, processed), (7, 1, 7));
    // The withdrawal as the register records it (privacy: DELETE /v1/me/consents/intended_use).
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) \
         SELECT $1, purpose, max(version), 'withdrawn' FROM consent_texts WHERE purpose = 'intended_use' GROUP BY purpose",
    )
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();
    // A new night and an edit of an analysed one: acknowledged, not analysed, not counted.
    for (id, d, tst) in [("c-10", 10, 300), ("c-11", 9, 390)] {
        let e = diary_event(user, format!("2025-03-{d:02}").parse().unwrap(), 420, tst);
        let e = match e {
            Event::SleepLogRecorded(mut r) => {
                r.revision = Utc::now();
                Event::SleepLogRecorded(r)
            }
            other => other,
        };
        assert_eq!(
            push(&s, envelope(id, &bytes_of(&e))).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(before("SELECT count(*) FROM analysis_nights").await, 7);
    assert_eq!(
        before("SELECT count(*) FROM analysis_nights WHERE tst_min = 390").await,
        0
    );
    assert_eq!(before("SELECT count(*) FROM sleep_windows").await, 1);
    assert_eq!(before("SELECT count(*) FROM processed_events").await, 7);
    assert_eq!(
        before("SELECT count(*) FROM undeliverable_events").await,
        0,
        "skipped, not undeliverable"
    );
    assert_eq!(s.docs.list(user, ANALYSIS_LOGS).await.unwrap().len(), logs);
    // The window is refused with the problem the diary answers, naming the purpose.
    let res = app(s.clone(), Duration::from_secs(5))
        .oneshot(
            Request::get("/v1/sleep-window")
                .header(header::AUTHORIZATION, testkit::bearer(&s.keys, user))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let p = testkit::json_body(res).await;
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("consent_required"), Some("intended_use"))
    );
    assert_eq!(
        before("SELECT count(*) FROM outbox WHERE topic = 'audit'").await,
        0,
        "a refused read reads nothing"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn while_the_database_is_down_pushes_get_503_and_after_it_returns_each_event_counts_once(
    pool: PgPool,
) {
    let s = state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let admin = PgPool::connect(&std::env::var("DATABASE_URL").unwrap())
        .await
        .unwrap();
    let events: Vec<(String, Vec<u8>)> = (3..=9)
        .map(|d| {
            (
                format!("db-{d}"),
                envelope(
                    &format!("db-{d}"),
                    &bytes_of(&diary_event(
                        user,
                        format!("2025-03-{d:02}").parse().unwrap(),
                        420,
                        360,
                    )),
                ),
            )
        })
        .collect();
    // The first two go through.
    for (_, body) in &events[..2] {
        assert_eq!(push(&s, body.clone()).await, StatusCode::NO_CONTENT);
    }
    // Database gone: no new connections, existing ones cut.
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db)
        .execute(&admin)
        .await
        .unwrap();
    let mut pending = Vec::new();
    for (id, body) in &events[2..] {
        let status = push(&s, body.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{id}");
        pending.push(body.clone());
    }
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    // Pub/Sub redelivers the failed ones, and one that had succeeded, once more.
    pending.push(events[0].1.clone());
    for body in pending {
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..20 {
            status = push(&s, body.clone()).await;
            if status == StatusCode::NO_CONTENT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM analysis_nights").await,
        7
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM processed_events").await,
        7
    );
    assert_eq!(
        count(
            &pool,
            "SELECT sum(duplicates)::bigint FROM processed_events"
        )
        .await,
        1
    );
    let w: (i32, i32) = sqlx::query_as("SELECT nights, window_min FROM sleep_windows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(w, (7, 360));
    // One analysis log per distinct result: after each of the 7 nights the week changed once.
    assert_eq!(s.docs.list(user, ANALYSIS_LOGS).await.unwrap().len(), 7);
}

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let (missing, extra) = common::openapi::route_diff(&served_routes(), &doc);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{missing:?} {extra:?}"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn with_oidc_required_a_push_without_a_token_is_refused(pool: PgPool) {
    let mut s = state(pool.clone()).await;
    let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json!({"keys": []})).unwrap();
    s.push_auth = Some(std::sync::Arc::new(
        common::pubsub::OidcVerifier::with_keys(
            "https://x/pubsub/push",
            "sa@x.iam.gserviceaccount.com",
            keys,
        ),
    ));
    let body = envelope(
        "o-1",
        &bytes_of(&diary_event(
            Uuid::new_v4(),
            "2025-03-03".parse().unwrap(),
            420,
            340,
        )),
    );
    assert_eq!(push(&s, body).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM processed_events").await,
        0
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn device_nights_arriving_out_of_order_keep_the_newest(pool: PgPool) {
    let s = state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let night = |tst: i64| NightSummary {
        night: "2026-04-15".parse().unwrap(),
        zone: "Europe/Berlin".into(),
        start: t("2026-04-14T22:00:00+02:00"),
        end: t("2026-04-15T07:00:00+02:00"),
        final_awakening: t("2026-04-15T07:00:00+02:00"),
        tib_min: 540,
        tst_min: tst,
        sol_min: None,
        waso_min: None,
    };
    let event = |tst: i64| {
        Event::SleepLogIngested(SleepLogIngested {
            user_id: user,
            import_id: Uuid::new_v4(),
            source: "apple_health".into(),
            nights: vec![night(tst)],
        })
    };
    let older = serde_json::to_vec(
        &event(420).to_envelope(Uuid::new_v4(), Utc::now() - chrono::Duration::seconds(5)),
    )
    .unwrap();
    let newer = serde_json::to_vec(&event(450).to_envelope(Uuid::new_v4(), Utc::now())).unwrap();
    assert_eq!(
        push(&s, envelope("new", &newer)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        push(&s, envelope("old", &older)).await,
        StatusCode::NO_CONTENT
    );
    let tst: i32 = sqlx::query_scalar("SELECT tst_min FROM analysis_nights")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tst, 450);
}
