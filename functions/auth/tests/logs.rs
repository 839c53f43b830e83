//! Passwords, tokens, TOTP secrets and codes never reach the logs; security events do
//! (TR-03161-3 O.Auth_18, O.Pass_4).

mod support;

use std::sync::{Arc, Mutex};

use auth::Limits;
use axum::http::StatusCode;
use common::telemetry::CloudLoggingLayer;
use serde_json::json;
use sqlx::PgPool;
use support::*;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn passwords_tokens_and_totp_secrets_never_appear_in_the_logs(pool: PgPool) {
    let buf = Buf::default();
    // Every level of every crate (sqlx, redis, hyper included) goes into the buffer.
    let subscriber = tracing_subscriber::registry().with(CloudLoggingLayer::new(None, buf.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let limits = Limits {
        per_account: 4,
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
    let mut secrets: Vec<String> = vec![PASSWORD.into()];
    let (s, _) = env
        .post(
            "/v1/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let verify = env.mailed_token(&email, "verify_email");
    secrets.push(verify.clone());
    env.post("/v1/auth/email-verification", json!({"token": verify}))
        .await;
    let (first, totp_secret) = env.enrol(&email).await;
    secrets.push(totp_secret.clone());
    secrets.push(access(&first).into());
    secrets.push(refresh(&first).into());
    for rc in first["recovery_codes"].as_array().unwrap() {
        secrets.push(rc.as_str().unwrap().into());
    }
    let challenge = env.password_step(&email).await;
    let mfa = challenge["mfa_token"].as_str().unwrap().to_owned();
    secrets.push(mfa.clone());
    let wrong_code = "987654";
    env.post(
        "/v1/auth/login/second-factor",
        json!({"mfa_token": mfa, "code": wrong_code}),
    )
    .await;
    let good_code = code(&totp_secret, 1);
    secrets.push(good_code.clone());
    let (_, second) = env
        .post(
            "/v1/auth/login/second-factor",
            json!({"mfa_token": mfa, "code": good_code}),
        )
        .await;
    secrets.push(access(&second).into());
    secrets.push(refresh(&second).into());
    let (_, rotated) = env
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await;
    secrets.push(refresh(&rotated).into());
    // Reuse of a rotated token: a security event.
    env.post(
        "/v1/auth/refresh",
        json!({"refresh_token": refresh(&first)}),
    )
    .await;
    let new_password = "an entirely new passphrase";
    secrets.push(new_password.into());
    let (s, _, _) = env
        .call(
            "POST",
            "/v1/auth/password",
            Some(access(&second)),
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    env.post("/v1/auth/password-reset", json!({"email": email}))
        .await;
    let reset = env.mailed_token(&email, "reset_password");
    secrets.push(reset.clone());
    let reset_password = "the password after the reset";
    secrets.push(reset_password.into());
    env.post(
        "/v1/auth/password-reset/confirm",
        json!({"token": reset, "new_password": reset_password}),
    )
    .await;
    let wrong_password = "somebody guessing passwords";
    secrets.push(wrong_password.into());
    for _ in 0..5 {
        env.post(
            "/v1/auth/login",
            json!({"email": email, "password": wrong_password}),
        )
        .await;
    }

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.lines().count() > 20, "the capture works: {out}");
    for secret in &secrets {
        assert!(
            !out.contains(secret.as_str()),
            "a secret is in the logs: {secret}"
        );
    }
    // Nor the session id (a session identifier is sensitive too).
    let sid = env.state.keys.verify(access(&second)).unwrap().sid.unwrap();
    assert!(!out.contains(&sid));
    assert!(!out.contains(&email), "no e-mail addresses either");
    for event in [
        "login_failed",
        "lockout",
        "second_factor_failed",
        "login_succeeded",
        "refresh_token_reused",
        "password_changed",
        "password_reset",
        "totp_enrolled",
    ] {
        assert!(
            out.contains(&format!("\"event\":\"{event}\"")),
            "no {event} audit entry"
        );
    }
}
