//! Imports through the HTTP API into a real PostgreSQL, with the real sample files.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::testkit;
use log_ingestion::api::{ApiDoc, AppState, MAX_UPLOAD_BYTES, app, routes};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;
use utoipa::OpenApi;
use uuid::Uuid;

fn realdata(rel: &str) -> Vec<u8> {
    let dir = std::env::var("REALDATA_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/realdata").into()
    });
    std::fs::read(format!("{dir}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    user: Uuid,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, testkit::bearer(&state.keys, user))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body))
        .unwrap();
    let res = app(state.clone(), Duration::from_secs(30))
        .oneshot(req)
        .await
        .unwrap();
    (res.status(), testkit::json_body(res).await)
}

async fn counts(pool: &PgPool) -> (i64, i64) {
    let imports: i64 = sqlx::query_scalar("SELECT count(*) FROM imports")
        .fetch_one(pool)
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sleep_sessions")
        .fetch_one(pool)
        .await
        .unwrap();
    (imports, sessions)
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_fitbit_nap_stays_apart_from_the_main_sleep_and_reimport_changes_nothing(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let file = realdata("fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json");
    let (status, body) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        file.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sessions_new"], 2);
    let (status, nights) = call(
        &state,
        "GET",
        "/v1/imports/nights?from=2016-12-13&to=2016-12-13",
        user,
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let night = &nights[0];
    assert_eq!(night["date"], "2016-12-13");
    assert_eq!(
        night["main"]["tst_min"], 112,
        "never the 175 min that includes the nap"
    );
    assert_eq!(night["main"]["start"], "2016-12-13T01:16:00+01:00");
    assert_eq!(night["main"]["end"], "2016-12-13T03:14:00+01:00");
    assert_eq!(night["naps"][0]["asleep_min"], 63);
    assert_eq!(night["provenance"][0]["source"], "fitbit");

    let before = counts(&pool).await;
    let (status, again) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        file,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["already_imported"], true);
    assert_eq!(counts(&pool).await, before);
    let (_, nights_again) = call(
        &state,
        "GET",
        "/v1/imports/nights?from=2016-12-13&to=2016-12-13",
        user,
        vec![],
    )
    .await;
    assert_eq!(nights, nights_again);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_same_records_in_another_file_are_stored_once(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let file = realdata("fitbit/sleepcare-fitbit-sleep-list-v1.2-stages.json");
    let (status, _) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        file.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Same content, different bytes (pretty-printed differently): a new import, no new period.
    let reformatted = serde_json::to_vec(&serde_json::from_slice::<Value>(&file).unwrap()).unwrap();
    let (status, body) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        reformatted,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["sessions_new"], 0);
    assert_eq!(counts(&pool).await.1, 1);
    let night: Value = {
        let date = body["nights"][0].as_str().unwrap().to_owned();
        let (_, n) = call(
            &state,
            "GET",
            &format!("/v1/imports/nights?from={date}&to={date}"),
            user,
            vec![],
        )
        .await;
        n[0].clone()
    };
    assert_eq!(night["main"]["tib_min"], 452);
    assert_eq!(night["main"]["stages"]["deep"], 82);
    assert_eq!(night["main"]["stages"]["light"], 226);
    assert_eq!(night["main"]["stages"]["rem"], 70);
    assert_eq!(night["main"]["stages"]["awake"], 74);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_truncated_export_is_refused_whole_and_nothing_is_stored(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let file = realdata("apple-health/resilio-truncated-INVALID-on-purpose.xml");
    let (status, p) = call(
        &state,
        "POST",
        "/v1/imports/apple-health?zone=Europe/Berlin",
        user,
        file,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "unreadable_file");
    assert_eq!(counts(&pool).await, (0, 0));
    let (status, _) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        b"{\"sleep\": [".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, p) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Mars/Base",
        user,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("zone"))
    );
    let (status, _) = call(
        &state,
        "POST",
        "/v1/imports/garmin?zone=Europe/Berlin",
        user,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(counts(&pool).await, (0, 0));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn apple_inbed_is_never_asleep_through_the_api(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let (status, body) = call(
        &state,
        "POST",
        "/v1/imports/apple-health?zone=Europe/Berlin",
        user,
        realdata("apple-health/resilio-sleep_with_inbed.xml"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let date = body["nights"][0].as_str().unwrap().to_owned();
    let (_, n) = call(
        &state,
        "GET",
        &format!("/v1/imports/nights?from={date}&to={date}"),
        user,
        vec![],
    )
    .await;
    assert_eq!(n[0]["main"]["tst_min"], 420, "7 h, not 16 h");
    assert_eq!(n[0]["main"]["tib_min"], 540);
    // Another user sees none of it.
    let other = testkit::user(&pool).await;
    let (_, none) = call(
        &state,
        "GET",
        &format!("/v1/imports/nights?from={date}&to={date}"),
        other,
        vec![],
    )
    .await;
    assert_eq!(none, serde_json::json!([]));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn uploads_beyond_32_mib_get_413(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let (status, p) = call(
        &state,
        "POST",
        "/v1/imports/apple-health?zone=Europe/Berlin",
        user,
        vec![b' '; MAX_UPLOAD_BYTES + 1],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(p["code"], "payload_too_large");
    assert_eq!(counts(&pool).await, (0, 0));
}

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let (missing, extra) = common::openapi::route_diff(&routes().routes(), &doc);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{missing:?} {extra:?}"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn edited_or_empty_device_files_are_refused_not_crashed_on(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let original = String::from_utf8(realdata(
        "fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json",
    ))
    .unwrap();
    let huge_seconds = original.replacen("\"seconds\": 3780", "\"seconds\": 99999999999999", 1);
    let huge_duration = original.replacen(
        "\"duration\": 3780000",
        "\"duration\": 9000000000000000000",
        1,
    );
    let long_nap = original.replacen(
        "\"startTime\": \"2016-12-13T09:59:00.000\"",
        "\"startTime\": \"2016-03-27T02:30:00.000\"",
        1,
    );
    for body in [
        huge_seconds,
        huge_duration,
        long_nap,
        "{\"sleep\": []}".to_owned(),
    ] {
        let (status, p) = call(
            &state,
            "POST",
            "/v1/imports/fitbit?zone=Europe/Berlin",
            user,
            body.into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["code"], "unreadable_file");
    }
    let (status, p) = call(
        &state,
        "POST",
        "/v1/imports/oura?zone=Europe/Berlin",
        user,
        b"{\"data\": []}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(counts(&pool).await, (0, 0));
    // A valid token whose account is gone.
    let (status, _) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        Uuid::new_v4(),
        original.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_import_and_a_read_of_nights_leave_one_audit_event_each(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    let file = realdata("fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json");
    let uri = "/v1/imports/fitbit?zone=Europe/Berlin";
    let (status, body) = call(&state, "POST", uri, user, file.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let import_id = body["import_id"].as_str().unwrap().to_owned();
    // The same file again changes nothing, so it records nothing.
    assert_eq!(
        call(&state, "POST", uri, user, file).await.0,
        StatusCode::OK
    );
    let nights = "/v1/imports/nights?from=2016-12-13&to=2016-12-13";
    assert_eq!(
        call(&state, "GET", nights, user, vec![]).await.0,
        StatusCode::OK
    );
    // A range without data reads nothing.
    let empty = "/v1/imports/nights?from=2020-01-01&to=2020-01-02";
    assert_eq!(
        call(&state, "GET", empty, user, vec![]).await.0,
        StatusCode::OK
    );
    let rows: Vec<Value> =
        sqlx::query_scalar("SELECT payload->'data' FROM outbox WHERE topic = 'audit' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|d| {
            assert_eq!(d["subject_ref"], common::events::pseudonym(user).as_str());
            (
                d["action"].as_str().unwrap(),
                d["function"].as_str().unwrap(),
                d["object_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("import.created", "log-ingestion", Some(import_id.as_str())),
            ("device-nights.read", "log-ingestion", None),
        ]
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn after_the_consent_is_withdrawn_an_import_is_refused_and_nothing_is_stored(pool: PgPool) {
    let state = AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
    };
    let user = testkit::user(&pool).await;
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) \
         SELECT $1, purpose, max(version), 'withdrawn' FROM consent_texts WHERE purpose = 'intended_use' GROUP BY purpose",
    )
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();
    let file = realdata("fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json");
    let (status, p) = call(
        &state,
        "POST",
        "/v1/imports/fitbit?zone=Europe/Berlin",
        user,
        file,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("consent_required"), Some("intended_use"))
    );
    assert_eq!(counts(&pool).await, (0, 0));
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);
}
