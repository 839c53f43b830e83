//! Register and login against a real PostgreSQL.

use std::time::Duration;

use auth::{ApiDoc, AppState, app, routes};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use utoipa::OpenApi;

async fn post(state: &AppState, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app(state.clone(), Duration::from_secs(10))
        .oneshot(req)
        .await
        .unwrap();
    (res.status(), common::testkit::json_body(res).await)
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_registered_user_logs_in_and_gets_a_verifiable_token(pool: PgPool) {
    let state = AppState::new(pool, common::testkit::jwt_keys());
    let creds = json!({"email": "Patient@Example.org", "password": "correct horse battery"});
    let (status, reg) = post(&state, "/v1/auth/register", creds.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let (status, _) = post(
        &state,
        "/v1/auth/register",
        json!({"email": "patient@example.org", "password": "another long password"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, tok) = post(
        &state,
        "/v1/auth/login",
        json!({"email": "patient@example.org", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    let claims = state
        .keys
        .verify(tok["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(json!(claims.sub), reg["user_id"]);
    assert_eq!(tok["expires_in"], 900);
    let (status, p) = post(
        &state,
        "/v1/auth/login",
        json!({"email": "patient@example.org", "password": "wrong password!!"}),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (status, _) = post(
        &state,
        "/v1/auth/login",
        json!({"email": "nobody@example.org", "password": "whatever password"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&state.pool)
        .await
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn weak_passwords_and_bad_emails_are_refused(pool: PgPool) {
    let state = AppState::new(pool, common::testkit::jwt_keys());
    let (status, p) = post(
        &state,
        "/v1/auth/register",
        json!({"email": "a@b.de", "password": "short"}),
    )
    .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    let (status, p) = post(
        &state,
        "/v1/auth/register",
        json!({"email": "not-an-email", "password": "long enough password"}),
    )
    .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("email"))
    );
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
