//! Accounts, two-factor login, sessions and the guard, against the real PostgreSQL and Redis.

mod support;

use std::time::Duration;

use auth::{ApiDoc, Limits, routes};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use common::error::Problem;
use common::guard::{AppVersion, GuardConfig};
use common::http::AuthUser;
use serde_json::json;
use sqlx::PgPool;
use support::*;
use tower::ServiceExt;
use utoipa::OpenApi;
use uuid::Uuid;

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn registration_verification_and_two_factor_login_yield_a_session(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (s, _) = env
        .post(
            "/v1/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Before the address is confirmed the right password still gives no challenge.
    let (s, p) = env
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_not_verified"))
    );
    let token = env.mailed_token(&email, "verify_email");
    let (s, _) = env
        .post("/v1/auth/email-verification", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, p) = env
        .post("/v1/auth/email-verification", json!({"token": token}))
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token")),
        "single use"
    );

    let (tokens, secret) = env.enrol(&email).await;
    let (plain, sealed): (Option<String>, Vec<u8>) =
        sqlx::query_as("SELECT totp_secret, totp_secret_enc FROM users")
            .fetch_one(&env.state.pool)
            .await
            .unwrap();
    assert_eq!(plain, None, "the TOTP secret is stored encrypted only");
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    let claims = env.state.keys.verify(access(&tokens)).unwrap();
    assert!(claims.sid.is_some());
    assert_eq!(tokens["expires_in"], 600);
    assert_eq!(tokens["recovery_codes"].as_array().unwrap().len(), 10);
    // Only the claims the services need: no e-mail, no health data.
    let payload = access(&tokens).split('.').nth(1).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let mut names: Vec<_> = payload.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["aud", "exp", "iat", "iss", "sid", "sub"]);

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&env.state.pool)
        .await
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    // Registering the address again answers the same and reveals nothing.
    let (s, _) = env
        .post(
            "/v1/auth/register",
            json!({"email": email, "password": "another long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(env.mails(&email).last().unwrap().kind, "account_exists");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_password_alone_never_yields_a_session(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (_, secret) = env.enrolled_user(&email).await;
    let challenge = env.password_step(&email).await;
    assert_eq!(challenge["second_factor"], "totp");
    assert!(challenge.get("access_token").is_none() && challenge.get("refresh_token").is_none());
    // The challenge is not an access token.
    let (s, _, _) = env
        .call(
            "GET",
            "/v1/auth/sessions",
            challenge["mfa_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mfa = challenge["mfa_token"].as_str().unwrap();
    let (s, p) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": mfa, "code": "000000"}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_second_factor"))
    );
    // The code that enrolled the factor cannot be replayed.
    let (s, _) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": mfa, "code": code(&secret, 0)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, tokens) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": mfa, "code": code(&secret, 1)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    // A challenge is single use.
    let (s, _) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": mfa, "code": code(&secret, 1)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_challenge_allows_five_second_factor_attempts(pool: PgPool) {
    // The per-account limit (5 per minute, enrolment included) would answer 429 first.
    let limits = Limits {
        per_account: 20,
        ..Limits::default()
    };
    let env = env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(600, 3600),
        guard_config(),
        limits,
    );
    let email = email();
    let (_, secret) = env.enrolled_user(&email).await;
    let challenge = env.password_step(&email).await;
    for _ in 0..5 {
        let (s, _) = env
            .post(
                "/v1/auth/login/second-factor",
                json!({"mfa_token": challenge["mfa_token"], "code": "123456"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": challenge["mfa_token"], "code": code(&secret, 1)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the challenge is spent");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_recovery_code_works_once(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (tokens, _) = env.enrolled_user(&email).await;
    let rc = tokens["recovery_codes"][3].as_str().unwrap().to_owned();
    for expected in [StatusCode::OK, StatusCode::UNAUTHORIZED] {
        let challenge = env.password_step(&email).await;
        let (s, _) = env
            .post(
                "/v1/auth/login/second-factor",
                json!({"mfa_token": challenge["mfa_token"], "recovery_code": rc}),
            )
            .await;
        assert_eq!(s, expected);
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn refresh_token_reuse_revokes_the_family(pool: PgPool) {
    let env = env(pool);
    let (first, _) = env.enrolled_user(&email()).await;
    let (s, second) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_ne!(refresh(&first), refresh(&second));
    let (s, third) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&second)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The first token again: reuse. The whole family dies, including the newest tokens.
    let (s, reused) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Told as a bad refresh token (sign in again), not as a missing access token.
    assert_eq!(
        (reused["code"].as_str(), reused["field"].as_str()),
        (Some("invalid_refresh_token"), Some("refresh_token"))
    );
    let (s, _) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&third)}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the newest refresh token is revoked too"
    );
    let (s, _, _) = env
        .call("GET", "/v1/auth/sessions", Some(access(&third)), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "and so is its access token");
    let (s, made_up) = env
        .post("/v1/auth/refresh", json!({"refresh_token": "made-up"}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        made_up, reused,
        "a reuse is not told apart from a made-up token"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn logout_all_makes_every_refresh_token_of_the_user_fail(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (a, secret) = env.enrolled_user(&email).await;
    let b = env.login(&email, &secret, 1).await;
    let (other, _) = env.enrolled_user(&support::email()).await;
    let (s, _, list) = env
        .call("GET", "/v1/auth/sessions", Some(access(&a)), None)
        .await;
    assert_eq!((s, list.as_array().unwrap().len()), (StatusCode::OK, 2));
    let (s, _, _) = env
        .call("POST", "/v1/auth/logout-all", Some(access(&b)), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        let (s, _) = env
            .post("/v1/auth/refresh", json!({"refresh_token": refresh(t)}))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, _) = env
            .call("GET", "/v1/auth/sessions", Some(access(t)), None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&other)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "another user's session is untouched");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn logout_ends_the_session_and_its_access_token_at_once(pool: PgPool) {
    let env = env(pool);
    let (t, _) = env.enrolled_user(&email()).await;
    let (s, _, _) = env
        .call("POST", "/v1/auth/logout", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The JWT itself is still valid for minutes; the session check refuses it.
    assert!(env.state.keys.verify(access(&t)).is_ok());
    let (s, _, _) = env
        .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env
        .post("/v1/auth/refresh", json!({"refresh_token": refresh(&t)}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn another_users_session_id_answers_404_and_stays_alive(pool: PgPool) {
    let env = env(pool);
    let (mine, _) = env.enrolled_user(&email()).await;
    let (theirs, _) = env.enrolled_user(&email()).await;
    let their_sid = env.state.keys.verify(access(&theirs)).unwrap().sid.unwrap();
    let (s, _, p) = env
        .call(
            "DELETE",
            &format!("/v1/auth/sessions/{their_sid}"),
            Some(access(&mine)),
            None,
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _, _) = env
        .call(
            "DELETE",
            "/v1/auth/sessions/no-such-session",
            Some(access(&mine)),
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "unknown and foreign ids look the same"
    );
    let (s, _, list) = env
        .call("GET", "/v1/auth/sessions", Some(access(&theirs)), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["id"], their_sid.as_str());
    assert_eq!(list[0]["current"], true);
    let my_sid = env.state.keys.verify(access(&mine)).unwrap().sid.unwrap();
    let (s, _, _) = env
        .call(
            "DELETE",
            &format!("/v1/auth/sessions/{my_sid}"),
            Some(access(&mine)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_password_change_needs_the_current_password_and_ends_the_other_sessions(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (a, secret) = env.enrolled_user(&email).await;
    let b = env.login(&email, &secret, 1).await;
    let (s, _, p) = env
        .call("POST", "/v1/auth/password", Some(access(&a)),
            Some(json!({"current_password": "wrong wrong wrong", "new_password": "a brand new passphrase"})))
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("current_password"))
    );
    let (s, _, p) = env
        .call(
            "POST",
            "/v1/auth/password",
            Some(access(&a)),
            Some(json!({"current_password": PASSWORD, "new_password": "short"})),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let (s, _, _) = env
        .call(
            "POST",
            "/v1/auth/password",
            Some(access(&a)),
            Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = env
        .call("GET", "/v1/auth/sessions", Some(access(&a)), None)
        .await;
    assert_eq!(s, StatusCode::OK, "the session that changed it stays");
    let (s, _, _) = env
        .call("GET", "/v1/auth/sessions", Some(access(&b)), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the other one ends");
    assert_eq!(env.mails(&email).last().unwrap().kind, "password_changed");
    let (s, _) = env
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_reset_token_sets_a_new_password_once_and_ends_every_session(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (t, _) = env.enrolled_user(&email).await;
    let (s, _) = env
        .post(
            "/v1/auth/password-reset",
            json!({"email": "nobody@example.org"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "unknown addresses answer the same");
    assert!(env.mails("nobody@example.org").is_empty());
    let (s, _) = env
        .post("/v1/auth/password-reset", json!({"email": email}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let token = env.mailed_token(&email, "reset_password");
    let (s, p) = env
        .post(
            "/v1/auth/password-reset/confirm",
            json!({"token": token, "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let (s, _) = env
        .post(
            "/v1/auth/password-reset/confirm",
            json!({"token": token, "new_password": "reset to something long"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env
        .post(
            "/v1/auth/password-reset/confirm",
            json!({"token": token, "new_password": "and again something"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .post("/v1/auth/refresh", json!({"refresh_token": refresh(&t)}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, challenge) = env
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": "reset to something long"}),
        )
        .await;
    assert_eq!(
        (s, challenge["second_factor"].as_str()),
        (StatusCode::OK, Some("totp")),
        "the second factor stays"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn idle_and_absolute_timeouts_end_sessions_server_side(pool: PgPool) {
    let idle = env_with(
        pool.clone(),
        &unique_prefix(),
        &redis_url(),
        sessions(1, 60),
        guard_config(),
        Limits::default(),
    );
    let (t, _) = idle.enrolled_user(&email()).await;
    let (s, _, _) = idle
        .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, _, _) = idle
        .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "idle too long");

    let absolute = env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(60, 2),
        guard_config(),
        Limits::default(),
    );
    let (t, _) = absolute.enrolled_user(&email()).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (s, _, _) = absolute
            .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
            .await;
        assert_eq!(s, StatusCode::OK, "active within the absolute lifetime");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, _) = absolute
        .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "however active, past the absolute lifetime"
    );
    let (s, _) = absolute
        .post("/v1/auth/refresh", json!({"refresh_token": refresh(&t)}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn with_redis_down_auth_and_data_routes_fail_closed(pool: PgPool) {
    let up = env(pool.clone());
    let email = email();
    let (t, _) = up.enrolled_user(&email).await;
    let down = env_with(
        pool,
        &up.prefix,
        "redis://127.0.0.1:1",
        sessions(600, 3600),
        guard_config(),
        Limits::default(),
    );
    let (s, h, p) = down
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    assert_eq!(h["retry-after"], "1");
    assert_eq!(
        down.state.password_checks(),
        0,
        "no password check without the limiter"
    );
    let (s, _) = down
        .post("/v1/auth/refresh", json!({"refresh_token": refresh(&t)}))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _, _) = down
        .call("GET", "/v1/auth/sessions", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let data = data_app(&down);
    let (s, _) = data_call(&data, Some(access(&t)), Uuid::new_v4()).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "a data route cannot check the session: 503"
    );
}

/// A data route behind the guard, as the data services wire it: only the owner's ids exist.
fn data_app(env: &Env) -> Router {
    async fn entry(user: AuthUser, Path(id): Path<Uuid>) -> Result<String, Problem> {
        if id == user.user_id {
            Ok("mine".into())
        } else {
            Err(Problem::not_found())
        }
    }
    let router = Router::new()
        .route("/v1/entries/{id}", axum::routing::get(entry))
        .with_state(env.state.keys.clone());
    common::http::platform(env.state.guard.protect(router), Duration::from_secs(5))
}

async fn data_call(
    app: &Router,
    bearer: Option<&str>,
    id: Uuid,
) -> (StatusCode, axum::http::HeaderMap) {
    let mut req = axum::http::Request::get(format!("/v1/entries/{id}"));
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    (res.status(), res.headers().clone())
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn data_routes_check_the_session_and_refuse_other_users_ids(pool: PgPool) {
    let env = env(pool);
    let (t, _) = env.enrolled_user(&email()).await;
    let user = env.state.keys.verify(access(&t)).unwrap().sub;
    let data = data_app(&env);
    assert_eq!(
        data_call(&data, Some(access(&t)), user).await.0,
        StatusCode::OK
    );
    assert_eq!(
        data_call(&data, Some(access(&t)), Uuid::new_v4()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        data_call(&data, None, user).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A valid signature without a session (as the old tokens were) is not enough.
    let sessionless = env.state.keys.sign(user, Duration::from_secs(60), None);
    assert_eq!(
        data_call(&data, Some(&sessionless), user).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, _) = env
        .call("POST", "/v1/auth/logout", Some(access(&t)), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        data_call(&data, Some(access(&t)), user).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn data_routes_limit_each_user_with_retry_after(pool: PgPool) {
    let guard = GuardConfig {
        data_rate_limit_per_min: 3,
        min_app_version: None,
    };
    let env = env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(600, 3600),
        guard,
        Limits::default(),
    );
    let (t, _) = env.enrolled_user(&email()).await;
    let (other, _) = env.enrolled_user(&email()).await;
    let user = env.state.keys.verify(access(&t)).unwrap().sub;
    let data = data_app(&env);
    for _ in 0..3 {
        assert_eq!(
            data_call(&data, Some(access(&t)), user).await.0,
            StatusCode::OK
        );
    }
    let (s, h) = data_call(&data, Some(access(&t)), user).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let other_user = env.state.keys.verify(access(&other)).unwrap().sub;
    assert_eq!(
        data_call(&data, Some(access(&other)), other_user).await.0,
        StatusCode::OK
    );
    for (key, ttl) in env.keys_with_ttl().await {
        assert!(ttl > 0, "{key} has no TTL");
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn outdated_app_versions_get_426(pool: PgPool) {
    let guard = GuardConfig {
        data_rate_limit_per_min: 300,
        min_app_version: Some("2.4.0".parse::<AppVersion>().unwrap()),
    };
    let env = env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(600, 3600),
        guard,
        Limits::default(),
    );
    let body = Some(json!({"email": email(), "password": PASSWORD}));
    for (version, expected) in [
        (None, StatusCode::UPGRADE_REQUIRED),
        (Some("2.3.9"), StatusCode::UPGRADE_REQUIRED),
        (Some("garbage"), StatusCode::UPGRADE_REQUIRED),
        (Some("2.4.0"), StatusCode::UNAUTHORIZED),
        (Some("2.10"), StatusCode::UNAUTHORIZED),
    ] {
        let headers: Vec<(&str, &str)> =
            version.map(|v| ("x-app-version", v)).into_iter().collect();
        let (s, _, p) = env
            .call_with("POST", "/v1/auth/login", None, body.clone(), &headers)
            .await;
        assert_eq!(s, expected, "{version:?}");
        if s == StatusCode::UPGRADE_REQUIRED {
            assert_eq!(p["code"], "app_update_required");
            assert!(p["detail"].as_str().unwrap().contains("2.4.0"));
        }
    }
    let (s, _, _) = env.call("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK, "health checks carry no app version");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn weak_passwords_and_bad_emails_are_refused(pool: PgPool) {
    let env = env(pool);
    let (s, p) = env
        .post(
            "/v1/auth/register",
            json!({"email": "a@b.de", "password": "short"}),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    let (s, p) = env
        .post(
            "/v1/auth/register",
            json!({"email": "not-an-email", "password": "long enough password"}),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
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
