//! The sleep-diary API against a real PostgreSQL (one fresh database per test).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::testkit;
use serde_json::{Value, json};
use sleep_diary::{ApiDoc, AppState, app, routes};
use sqlx::PgPool;
use tower::ServiceExt;
use utoipa::OpenApi;
use uuid::Uuid;

fn state(pool: PgPool) -> AppState {
    AppState {
        pool: pool.clone(),
        writes: common::db::StatementPool::beside(&pool, Duration::from_secs(30)),
        keys: testkit::jwt_keys(),
        edit_window: chrono::Duration::days(7),
        crypto: testkit::keyring(&pool),
    }
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    user: Option<Uuid>,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(u) = user {
        req = req.header(header::AUTHORIZATION, testkit::bearer(&state.keys, u));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app(state.clone(), Duration::from_secs(10))
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, testkit::json_body(res).await)
}

/// REFERENCE §2.5 N2: the spring DST night in Europe/Berlin.
fn spring_night(id: Uuid) -> Value {
    json!({
        "id": id,
        "zone": "Europe/Berlin",
        "into_bed": "2025-03-29T23:00:00+01:00",
        "lights_out": "2025-03-29T23:15:00+01:00",
        "sol_min": 20,
        "awakenings": 1,
        "waso_min": 15,
        "final_awakening": "2025-03-30T06:30:00+02:00",
        "out_of_bed": "2025-03-30T07:00:00+02:00",
        "quality": 3,
        "naps": [{"start": "2025-03-29T14:00:00+01:00", "end": "2025-03-29T14:20:00+01:00"}],
        "caffeine": [{"time": "2025-03-29T09:00:00+01:00", "servings": 2}],
    })
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn dst_night_is_stored_with_metrics_from_instants(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["night"], "2025-03-30");
    assert_eq!(body["metrics"]["tib_min"], 420);
    assert_eq!(body["metrics"]["tst_min"], 340);
    assert_eq!(body["metrics"]["se_pct"], 81.0);
    assert_eq!(body["metrics"]["nap_min"], 20);
    assert_eq!(body["out_of_bed"], "2025-03-30T07:00:00+02:00");

    let (status, _, list) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-03-30&to=2025-03-30",
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["metrics"]["tib_min"], 420);
    let (_, _, none) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-03-31&to=2025-04-30",
        Some(user),
        None,
    )
    .await;
    assert_eq!(none, json!([]));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn create_is_idempotent_on_the_client_id(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let (first, _, a) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    let (again, _, b) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a, b);
    let mut changed = spring_night(id);
    changed["sol_min"] = json!(25);
    let (status, ctype, p) = call(&s, "POST", "/v1/sleep-logs", Some(user), Some(changed)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(p["code"], "conflict");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    // One event for the one change: the replay and the conflict wrote nothing to the outbox
    // (the audit trail's events aside).
    let events: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic <> 'audit'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "sleep-log.recorded");
    assert_eq!(events[0]["data"]["summary"]["tib_min"], 420);
    assert_eq!(events[0]["data"]["change"], "created");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_same_create_sent_at_once_is_stored_once_and_answered_201_then_200(pool: PgPool) {
    let s = state(pool.clone());
    for _ in 0..40 {
        // A new user and id per round: the same night, sent four times at once (a client
        // retrying over several connections).
        let user = testkit::user(&pool).await;
        let id = Uuid::new_v4();
        let send = || {
            call(
                &s,
                "POST",
                "/v1/sleep-logs",
                Some(user),
                Some(spring_night(id)),
            )
        };
        let (a, b, c, d) = tokio::join!(send(), send(), send(), send());
        let mut statuses: Vec<u16> = [a.0, b.0, c.0, d.0].iter().map(|s| s.as_u16()).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 200, 200, 201], "{:?}", [a.2, b.2, c.2, d.2]);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn another_user_gets_404_and_never_sees_the_entry(pool: PgPool) {
    let s = state(pool.clone());
    let a = testkit::user(&pool).await;
    let b = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(a),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let uri = format!("/v1/sleep-logs/{id}");
    assert_eq!(
        call(&s, "GET", &uri, Some(b), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&s, "PUT", &uri, Some(b), Some(spring_night(id)))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&s, "DELETE", &uri, Some(b), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, _, list) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-01-01&to=2025-12-31",
        Some(b),
        None,
    )
    .await;
    assert_eq!(list, json!([]));
    // B re-using A's id cannot overwrite it either.
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/sleep-logs",
            Some(b),
            Some(spring_night(id))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (status, _, mine) = call(&s, "GET", &uri, Some(a), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["id"], json!(id));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn bad_input_is_a_problem_naming_the_field(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["final_awakening"] = json!("2025-03-30T02:30:00");
                v
            },
            422,
            "final_awakening",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["waso_min"] = json!(500);
                v
            },
            422,
            "waso_min",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["sol_min"] = json!(-5);
                v
            },
            422,
            "sol_min",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v.as_object_mut().unwrap().remove("out_of_bed");
                v
            },
            422,
            "out_of_bed",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["surprise"] = json!(1);
                v
            },
            422,
            "surprise",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["naps"][0]["end"] = json!("2025-03-29T13:00:00+01:00");
                v
            },
            422,
            "naps[0].end",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v.as_object_mut().unwrap().remove("id");
                v
            },
            422,
            "id",
        ),
        (
            {
                let mut v = spring_night(Uuid::new_v4());
                v["zone"] = json!("Europe/Atlantis");
                v
            },
            422,
            "zone",
        ),
    ];
    for (body, status, field) in cases {
        let (got, ctype, p) = call(&s, "POST", "/v1/sleep-logs", Some(user), Some(body)).await;
        assert_eq!(got.as_u16(), status, "{p}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(p["field"], field, "{p}");
    }
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        None,
        Some(spring_night(Uuid::new_v4())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing half-written");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn edit_recomputes_and_delete_removes(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    let mut edited = spring_night(id);
    edited["sol_min"] = json!(40);
    let (status, _, body) = call(
        &s,
        "PUT",
        &format!("/v1/sleep-logs/{id}"),
        Some(user),
        Some(edited),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metrics"]["tst_min"], 320);
    assert_eq!(body["metrics"]["se_pct"], 76.2);
    let (status, _, _) = call(
        &s,
        "DELETE",
        &format!("/v1/sleep-logs/{id}"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&s, "GET", &format!("/v1/sleep-logs/{id}"), Some(user), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn edits_after_the_window_are_refused(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    sqlx::query("UPDATE diary_entries SET created_at = now() - interval '8 days'")
        .execute(&pool)
        .await
        .unwrap();
    let (status, _, p) = call(
        &s,
        "PUT",
        &format!("/v1/sleep-logs/{id}"),
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "edit_window_closed");
}

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let (missing, extra) = common::openapi::route_diff(&routes().routes(), &doc);
    assert!(missing.is_empty(), "served but undocumented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn implausible_entries_are_refused_without_a_server_error(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let mut nul = spring_night(Uuid::new_v4());
    nul["comment"] = json!("a\u{0}b");
    let mut naps = spring_night(Uuid::new_v4());
    naps["naps"] = json!(vec![
        json!({"start": "2025-03-29T14:00:00+01:00", "end": "2025-03-29T14:01:00+01:00"});
        11
    ]);
    let mut future = spring_night(Uuid::new_v4());
    for (k, v) in [
        ("into_bed", "2099-03-28T23:00:00+01:00"),
        ("lights_out", "2099-03-28T23:15:00+01:00"),
        ("final_awakening", "2099-03-29T06:30:00+02:00"),
        ("out_of_bed", "2099-03-29T07:00:00+02:00"),
    ] {
        future[k] = json!(v);
    }
    future["naps"] = json!([]);
    for (body, field) in [(nul, "comment"), (naps, "naps"), (future, "out_of_bed")] {
        let (status, _, p) = call(&s, "POST", "/v1/sleep-logs", Some(user), Some(body)).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{p}"
        );
    }
    // A second entry for the same night is an edit, not a new record.
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/sleep-logs",
            Some(user),
            Some(spring_night(Uuid::new_v4()))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (status, _, p) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(Uuid::new_v4())),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("night_taken"))
    );
    // A valid token whose account is gone.
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(Uuid::new_v4()),
        Some(spring_night(Uuid::new_v4())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, p) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-13-01&to=2025-12-31",
        Some(user),
        None,
    )
    .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("from"))
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn storing_a_diary_entry_without_consent_is_forbidden_and_allowed_after_granting(
    pool: PgPool,
) {
    use common::consent::Purpose;
    let s = state(pool.clone());
    let user = testkit::user_without_consent(&pool).await;
    let id = Uuid::new_v4();
    let (status, ctype, p) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(p["code"], "consent_required");
    assert_eq!(p["field"], "intended_use");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    common::consent::grant_current(&pool, user, Purpose::IntendedUse)
        .await
        .unwrap();
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A withdrawal stops further writes at once.
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) VALUES ($1, 'intended_use', 1, 'withdrawn')",
    )
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();
    let (status, _, p) = call(
        &s,
        "PUT",
        &format!("/v1/sleep-logs/{id}"),
        Some(user),
        Some(spring_night(id)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["field"], "intended_use");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_comment_is_stored_encrypted_and_read_back_in_clear(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let mut night = spring_night(id);
    night["comment"] = json!("Grübeln über die Arbeit");
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(night.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["comment"], "Grübeln über die Arbeit");

    let (input, ct): (String, Vec<u8>) =
        sqlx::query_as("SELECT input::text, comment_ct FROM diary_entries WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        !input.contains("Grübeln"),
        "no clear text in the row: {input}"
    );
    assert!(!String::from_utf8_lossy(&ct).contains("Grübeln"));
    let key_id: Uuid = sqlx::query_scalar("SELECT key_id FROM user_keys WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(common::crypto::key_id_of(&ct), Some(key_id));

    let (status, _, got) = call(&s, "GET", &format!("/v1/sleep-logs/{id}"), Some(user), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["comment"], "Grübeln über die Arbeit");
    // The same body again is recognised as the same entry, a changed comment is not.
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(night.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    night["comment"] = json!("anders");
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(night.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, got) = call(
        &s,
        "PUT",
        &format!("/v1/sleep-logs/{id}"),
        Some(user),
        Some(night),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["comment"], "anders");
}

/// The cost of encrypting the comment on the write path: the same create, sequentially, with
/// and without a comment (each comment costs a data-key read and unwrap plus one AES-GCM
/// seal). Run with `cargo test --release -p sleep-diary --test api -- --ignored --nocapture`.
#[sqlx::test(migrator = "common::db::MIGRATOR")]
#[ignore = "measurement, not a check"]
async fn field_encryption_cost_on_the_write_path(pool: PgPool) {
    let s = state(pool.clone());
    let n = 300;
    let mut rates = Vec::new();
    for with_comment in [false, true, false, true] {
        let user = testkit::user(&pool).await;
        let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let clock = std::time::Instant::now();
        for i in 0..n {
            let night = start + chrono::Duration::days(i);
            let prev = night - chrono::Duration::days(1);
            let mut body = json!({
                "id": Uuid::new_v4(), "zone": "UTC",
                "into_bed": format!("{prev}T22:00:00+00:00"), "lights_out": format!("{prev}T22:15:00+00:00"),
                "sol_min": 20, "awakenings": 1, "waso_min": 15,
                "final_awakening": format!("{night}T06:00:00+00:00"), "out_of_bed": format!("{night}T06:30:00+00:00"),
            });
            if with_comment {
                body["comment"] =
                    json!("Lange wach gelegen, Gedanken an die Arbeit, um drei kurz aufgestanden.");
            }
            let (status, _, b) = call(&s, "POST", "/v1/sleep-logs", Some(user), Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{b}");
        }
        let rate = n as f64 / clock.elapsed().as_secs_f64();
        rates.push((with_comment, rate));
    }
    for (with_comment, rate) in &rates {
        println!("comment encrypted: {with_comment:5}  {rate:.0} creates/s (sequential)");
    }
}

/// The pool does not ping a connection before handing it out (one round trip less per request).
/// A connection that died while idle must then cost at most a retryable 503, never a 500, and
/// the pool must replace it so the next request succeeds.
#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_connection_killed_while_idle_answers_503_then_the_pool_recovers(pool: PgPool) {
    let options = (*pool.connect_options())
        .clone()
        .application_name("diary-idle-kill");
    let one = common::db::connect_with(options, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let s = state(one);
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(testkit::user(&pool).await),
        Some(spring_night(Uuid::new_v4())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'diary-idle-kill' AND datname = current_database()) t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the pool's one idle connection was terminated");

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, ctype, body) = call(
            &s,
            "POST",
            "/v1/sleep-logs",
            Some(testkit::user(&pool).await),
            Some(spring_night(Uuid::new_v4())),
        )
        .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ctype, "application/problem+json");
            assert_eq!(body["code"], "unavailable");
        }
        statuses.push(status.as_u16());
        if status == StatusCode::CREATED {
            break;
        }
    }
    assert!(
        statuses == [201] || statuses == [503, 201],
        "at most one retryable 503, then a fresh connection: {statuses:?}"
    );
}

/// The audit events in the outbox, oldest first, as (action, function, object id, subject).
async fn audit_events(pool: &PgPool) -> Vec<(String, String, Option<String>, String)> {
    let rows: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'audit' ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.iter()
        .map(|p| {
            assert_eq!(p["type"], "audit.recorded");
            assert_eq!(p["version"], 1);
            let d = &p["data"];
            assert_eq!(d["actor_ref"], d["subject_ref"]);
            (
                d["action"].as_str().unwrap().to_owned(),
                d["function"].as_str().unwrap().to_owned(),
                d["object_id"].as_str().map(str::to_owned),
                d["subject_ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn every_read_and_change_leaves_one_audit_event_with_ids_only(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let mut night = spring_night(id);
    night["comment"] = json!("bad dreams about work");
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(night.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let one = format!("/v1/sleep-logs/{id}");
    assert_eq!(
        call(&s, "GET", &one, Some(user), None).await.0,
        StatusCode::OK
    );
    let (status, _, list) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-03-01&to=2025-03-31",
        Some(user),
        None,
    )
    .await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    night["quality"] = json!(4);
    assert_eq!(
        call(&s, "PUT", &one, Some(user), Some(night)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "DELETE", &one, Some(user), None).await.0,
        StatusCode::NO_CONTENT
    );
    // Reads that find nothing read nothing: another user's id, an empty range.
    let other = testkit::user(&pool).await;
    assert_eq!(
        call(&s, "GET", &one, Some(other), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, _, empty) = call(
        &s,
        "GET",
        "/v1/sleep-logs?from=2025-03-01&to=2025-03-31",
        Some(other),
        None,
    )
    .await;
    assert_eq!(empty, json!([]));

    let pseudonym = common::events::pseudonym(user);
    let id = Some(id.to_string());
    let f = "sleep-diary".to_owned();
    assert_eq!(
        audit_events(&pool).await,
        vec![
            (
                "sleep-log.created".into(),
                f.clone(),
                id.clone(),
                pseudonym.clone()
            ),
            (
                "sleep-log.read".into(),
                f.clone(),
                id.clone(),
                pseudonym.clone()
            ),
            ("sleep-log.read".into(), f.clone(), None, pseudonym.clone()),
            (
                "sleep-log.updated".into(),
                f.clone(),
                id.clone(),
                pseudonym.clone()
            ),
            ("sleep-log.deleted".into(), f, id, pseudonym),
        ]
    );
    // Ids only: neither the user id nor any of the entry's content is in an audit event.
    let text: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(payload::text, ' '), '') FROM outbox WHERE topic = 'audit'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!text.contains(&user.to_string()));
    assert!(!text.contains("bad dreams") && !text.contains("Europe/Berlin"));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_create_without_consent_leaves_no_audit_event(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user_without_consent(&pool).await;
    let (status, _, p) = call(
        &s,
        "POST",
        "/v1/sleep-logs",
        Some(user),
        Some(spring_night(Uuid::new_v4())),
    )
    .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("intended_use"))
    );
    assert_eq!(audit_events(&pool).await, vec![]);
}
