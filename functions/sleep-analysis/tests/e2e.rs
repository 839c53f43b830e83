//! The whole chain on the emulators: an event in a producer's outbox → the drainer publishes it
//! to the Pub/Sub emulator → the emulator pushes it to this service on a real socket → the
//! analysis lands in PostgreSQL and Firestore.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::documents::{ANALYSIS_LOGS, Documents};
use common::events::{Event, NightSummary, SleepLogRecorded};
use common::pubsub::{Publishers, drain_once, enqueue};
use sleep_analysis::{AppState, app, titration};
use sqlx::PgPool;
use uuid::Uuid;

fn emulator() -> String {
    std::env::var("PUBSUB_EMULATOR_HOST").expect("start the emulators: scripts/emulators.sh start")
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_diary_event_travels_through_the_pubsub_emulator_to_the_sleep_window(pool: PgPool) {
    let project = format!("e2e-{}", Uuid::new_v4().simple());
    let docs = Documents::connect(&project).await.unwrap();
    let state = AppState {
        pool: pool.clone(),
        keys: common::testkit::jwt_keys(),
        docs: docs.clone(),
        params: titration::PROFILE_S,
        push_auth: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(axum::serve(listener, app(state, Duration::from_secs(30))).into_future());

    // Topic and push subscription on the emulator (unique names: the emulator has no reset).
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/projects/{project}", emulator());
    let topic = http
        .put(format!("{base}/topics/sleep-log"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(topic.status().is_success(), "{:?}", topic.text().await);
    let sub = http
        .put(format!("{base}/subscriptions/sleep-analysis"))
        .json(&serde_json::json!({
            "topic": format!("projects/{project}/topics/sleep-log"),
            "pushConfig": {"pushEndpoint": format!("http://127.0.0.1:{port}/pubsub/push")},
            "ackDeadlineSeconds": 10
        }))
        .send()
        .await
        .unwrap();
    assert!(sub.status().is_success(), "{:?}", sub.text().await);

    let user = common::testkit::user(&pool).await;
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for d in 3..=9 {
        let night = format!("2025-03-{d:02}").parse().unwrap();
        let e = Event::SleepLogRecorded(SleepLogRecorded {
            user_id: user,
            entry_id: Uuid::new_v4(),
            change: "created".into(),
            summary: Some(NightSummary {
                night,
                zone: "Europe/Berlin".into(),
                start: t(&format!("2025-03-{:02}T23:00:00+01:00", d - 1)),
                end: t(&format!("2025-03-{d:02}T07:00:00+01:00")),
                final_awakening: t(&format!("2025-03-{d:02}T06:30:00+01:00")),
                tib_min: 480,
                tst_min: 352,
                sol_min: Some(30),
                waso_min: Some(40),
            }),
            night,
            revision: Utc::now(),
        });
        enqueue(&mut tx, &e, Some(user.to_string())).await.unwrap();
    }
    tx.commit().await.unwrap();
    let publishers = Publishers::new(project.clone(), Some(emulator()));
    assert_eq!(drain_once(&pool, &publishers, 100).await.unwrap(), 7);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "published events leave the outbox");

    let mut window = None;
    while started.elapsed() < Duration::from_secs(30) {
        window = sqlx::query_as::<_, (i32, Option<i32>)>(
            "SELECT nights, window_min FROM sleep_windows WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&pool)
        .await
        .unwrap();
        if window.is_some_and(|(n, _)| n == 7) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latency = started.elapsed();
    // REFERENCE §2.7 T2: baseline mean TST 352 → window 352.
    assert_eq!(window, Some((7, Some(352))));
    assert!(!docs.list(user, ANALYSIS_LOGS).await.unwrap().is_empty());
    println!(
        "outbox to sleep window through the emulator: {} ms",
        latency.as_millis()
    );
}
