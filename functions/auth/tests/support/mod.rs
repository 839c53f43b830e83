//! A test environment: the auth app on a fresh database, the shared local Redis under a key
//! prefix of its own (tests run in parallel processes), and a mail directory of its own.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auth::mail::{DirSink, Mail};
use auth::{AppState, Limits, app};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::cache::{Redis, RedisConfig, SessionConfig};
use common::guard::GuardConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use totp_rs::{Algorithm, Secret, TOTP};
use tower::ServiceExt;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn redis(url: &str, prefix: &str) -> Redis {
    Redis::connect(&RedisConfig {
        redis_url: url.to_owned().into(),
        redis_key_prefix: prefix.to_owned(),
        redis_timeout_ms: 500,
    })
    .unwrap()
}

pub fn sessions(idle_secs: u64, absolute_secs: u64) -> SessionConfig {
    SessionConfig {
        session_idle_timeout_secs: idle_secs,
        session_absolute_timeout_secs: absolute_secs,
    }
}

pub fn guard_config() -> GuardConfig {
    GuardConfig {
        data_rate_limit_per_min: 300,
        min_app_version: None,
    }
}

#[derive(Clone)]
pub struct Env {
    pub state: AppState,
    pub prefix: String,
    pub mail_dir: PathBuf,
    pub redis: Redis,
}

pub fn unique_prefix() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

pub fn env(pool: PgPool) -> Env {
    env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(600, 3600),
        guard_config(),
        Limits::default(),
    )
}

pub fn env_with(
    pool: PgPool,
    prefix: &str,
    redis_url: &str,
    sessions: SessionConfig,
    guard: GuardConfig,
    limits: Limits,
) -> Env {
    let mail_dir = std::env::temp_dir().join(format!("auth-mail-{prefix}"));
    let redis = redis(redis_url, prefix);
    let crypto = common::testkit::keyring(&pool);
    let state = AppState::new(
        pool,
        common::testkit::jwt_keys(),
        redis.clone(),
        sessions,
        &guard,
        limits,
        Arc::new(DirSink::new(mail_dir.clone())),
        crypto,
        common::testkit::email_lookup(),
    );
    Env {
        state,
        prefix: prefix.to_owned(),
        mail_dir,
        redis,
    }
}

pub fn email() -> String {
    format!(
        "patient-{}@example.org",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

impl Env {
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.call_with(method, uri, bearer, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        {
            req = req.header("x-forwarded-for", "198.51.100.7, 35.191.0.1");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = app(self.state.clone(), Duration::from_secs(10))
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        (status, headers, common::testkit::json_body(res).await)
    }

    pub async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self.call("POST", uri, None, Some(body)).await;
        (s, b)
    }

    pub fn mails(&self, to: &str) -> Vec<Mail> {
        auth::mail::read_sink(&self.mail_dir)
            .into_iter()
            .filter(|m| m.to == to)
            .collect()
    }

    /// The token of the newest mail of `kind` to `to`.
    pub fn mailed_token(&self, to: &str, kind: &str) -> String {
        let mail = self
            .mails(to)
            .into_iter()
            .rev()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} mail to {to}"));
        mail.text
            .lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .expect("token line")
            .to_owned()
    }

    pub async fn register_verified(&self, email: &str) {
        let (s, b) = self
            .post(
                "/v1/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let token = self.mailed_token(email, "verify_email");
        let (s, b) = self
            .post("/v1/auth/email-verification", json!({"token": token}))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }

    /// Password step; the mfa token.
    pub async fn password_step(&self, email: &str) -> Value {
        let (s, b) = self
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// Registers, verifies, enrols TOTP and logs in: (tokens, TOTP secret).
    pub async fn enrolled_user(&self, email: &str) -> (Value, String) {
        self.register_verified(email).await;
        self.enrol(email).await
    }

    /// Enrols TOTP for a verified account and logs in: (tokens, TOTP secret).
    pub async fn enrol(&self, email: &str) -> (Value, String) {
        let challenge = self.password_step(email).await;
        assert_eq!(challenge["second_factor"], "totp_enrolment");
        let mfa = challenge["mfa_token"].as_str().unwrap();
        let (s, enrol) = self
            .post("/v1/auth/login/totp-enrolment", json!({"mfa_token": mfa}))
            .await;
        assert_eq!(s, StatusCode::OK, "{enrol}");
        let secret = enrol["secret"].as_str().unwrap().to_owned();
        let (s, tokens) = self
            .post(
                "/v1/auth/login/second-factor",
                json!({"mfa_token": mfa, "code": code(&secret, 0)}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{tokens}");
        (tokens, secret)
    }

    /// A further login with a code `steps_ahead` steps from now (each step's code works once).
    pub async fn login(&self, email: &str, secret: &str, steps_ahead: i64) -> Value {
        let challenge = self.password_step(email).await;
        let (s, tokens) = self
            .post(
                "/v1/auth/login/second-factor",
                json!({"mfa_token": challenge["mfa_token"], "code": code(secret, steps_ahead)}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{tokens}");
        tokens
    }

    /// Every key under this test's prefix with its TTL in ms.
    pub async fn keys_with_ttl(&self) -> Vec<(String, i64)> {
        let mut conn = self.redis.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.push((k, ttl));
        }
        out
    }
}

pub fn code(secret: &str, steps_ahead: i64) -> String {
    let totp = TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        Secret::Encoded(secret.to_owned()).to_bytes().unwrap(),
        None,
        String::new(),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp() + steps_ahead * 30;
    totp.generate(now as u64)
}

pub fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

pub fn refresh(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}
