//! A still-valid access token of an erased account, and a caller without consent, writing a
//! diary entry with a comment (the path that first creates the data key).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::testkit;
use serde_json::{Value, json};
use sleep_diary::{AppState, app};
use sqlx::PgPool;
use tower::ServiceExt;
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

async fn post(state: &AppState, user: Uuid, body: Value) -> (StatusCode, String, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/sleep-logs")
        .header(header::AUTHORIZATION, testkit::bearer(&state.keys, user))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app(state.clone(), Duration::from_secs(10))
        .oneshot(req)
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

fn night(id: Uuid) -> Value {
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
        "comment": "Grübeln",
    })
}

async fn rows(pool: &PgPool, user: Uuid) -> (i64, i64, i64) {
    let q = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(user);
    (
        q("SELECT count(*) FROM users WHERE id = $1")
            .fetch_one(pool)
            .await
            .unwrap(),
        q("SELECT count(*) FROM user_keys WHERE user_id = $1")
            .fetch_one(pool)
            .await
            .unwrap(),
        q("SELECT count(*) FROM diary_entries WHERE user_id = $1")
            .fetch_one(pool)
            .await
            .unwrap(),
    )
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_erased_account_s_token_writing_a_comment_gets_401_and_resurrects_nothing(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    // The erasure removed the account (and with it the data key and the consent); the access
    // token stays valid for its minutes.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
    let (status, ctype, body) = post(&s, user, night(Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(rows(&pool, user).await, (0, 0, 0));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_comment_without_consent_is_403_and_stores_no_entry(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user_without_consent(&pool).await;
    let (status, ctype, body) = post(&s, user, night(Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["field"], "intended_use");
    let (_, keys, entries) = rows(&pool, user).await;
    assert_eq!(entries, 0);
    assert_eq!(
        keys, 0,
        "no data key is made for a write the consent refuses"
    );
}
