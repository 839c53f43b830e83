//! `auth`: HTTPS accounts (register with e-mail verification, password change and reset),
//! two-factor login (password + TOTP), sessions with rotating refresh tokens, logout of one or
//! all sessions, and the HS256 access tokens every data route verifies. Called by the app
//! through the load balancer at `/v1/auth/*`. Design and parameters: README.md.

pub mod account;
pub mod login;
pub mod mail;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRef;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use common::auth::{JwtKeyFiles, JwtKeys};
use common::cache::{CacheError, Limiter, Redis, RedisConfig, Rule, SessionConfig, Sessions};
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig};
use common::error::Problem;
use common::guard::{Guard, GuardConfig};
use common::openapi::{ApiRouter, BearerAuth};
use sqlx::PgPool;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::mail::{MailConfig, MailError, Mailer};

/// Argon2id parameters: OWASP Password Storage Cheat Sheet minimum for Argon2id,
/// m = 19 MiB, t = 2, p = 1; RFC 9106 §4 names Argon2id the recommended variant.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;
/// Shortest accepted password (NIST SP 800-63B §3.1.1.2 asks ≥ 8 without a second factor).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, so hashing cost stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Access tokens live 10 minutes: short-lived, so a stolen token is useful only briefly; every
/// request still checks the session in Redis, so revocation does not wait for expiry.
pub const ACCESS_TTL: Duration = Duration::from_secs(10 * 60);

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "auth",
    about = "Accounts, two-factor login, sessions and access tokens"
)]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
    #[command(flatten)]
    pub jwt_files: JwtKeyFiles,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub sessions: SessionConfig,
    #[command(flatten)]
    pub guard: GuardConfig,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub mail: MailConfig,
    #[command(flatten)]
    pub data_keys: common::crypto::KeyConfig,
    #[command(flatten)]
    pub email_lookup: common::crypto::EmailLookupConfig,
}

/// Rate limits on the unauthenticated endpoints (login, second factor, refresh, register,
/// e-mail verification, reset), per account and per client IP, shared by every instance.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Attempts per account and endpoint per window; beyond it 429 and a `lockout` audit event.
    #[arg(long, env = "AUTH_LIMIT_PER_ACCOUNT", default_value_t = 5)]
    pub per_account: u32,
    /// Attempts per client IP and endpoint per window (higher: carrier NAT puts many users
    /// behind one address).
    #[arg(long, env = "AUTH_LIMIT_PER_IP", default_value_t = 30)]
    pub per_ip: u32,
    /// Window length in seconds.
    #[arg(long, env = "AUTH_LIMIT_WINDOW_SECS", default_value_t = 60)]
    pub window_secs: u64,
    /// Proxies in front of the service that append to X-Forwarded-For (the load balancer: 1).
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = 1)]
    pub trusted_proxy_hops: usize,
    /// Link the e-mails point to; the token is appended as `?token=`.
    #[arg(long, env = "APP_LINK_BASE", default_value = "https://app.dta-wide.de")]
    pub app_link_base: String,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_ip: 30,
            window_secs: 60,
            trusted_proxy_hops: 1,
            app_link_base: "https://app.dta-wide.de".into(),
        }
    }
}

/// State built once.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
    pub redis: Redis,
    pub sessions: Sessions,
    pub limiter: Limiter,
    pub guard: Guard,
    pub limits: Arc<Limits>,
    pub mailer: Arc<dyn Mailer>,
    /// The users' data keys; TOTP secrets and e-mail addresses are stored encrypted with them.
    pub crypto: common::crypto::Keyring,
    /// The keyed blind index finding an account by its e-mail address (`users.email_lookup`).
    pub email_lookup: Arc<common::crypto::EmailLookup>,
    /// A real Argon2id hash with our parameters, verified when the account does not exist so
    /// that timing does not tell which e-mails are registered.
    dummy_hash: Arc<String>,
    password_checks: Arc<AtomicU64>,
}

impl FromRef<AppState> for Arc<JwtKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

impl AppState {
    /// Builds the state (hashes the dummy password once).
    // Each argument is a dependency built separately in `run`; a builder would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        keys: Arc<JwtKeys>,
        redis: Redis,
        sessions: SessionConfig,
        guard: &GuardConfig,
        limits: Limits,
        mailer: Arc<dyn Mailer>,
        crypto: common::crypto::Keyring,
        email_lookup: common::crypto::EmailLookup,
    ) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let dummy = hasher()
            .hash_password(b"no account has this password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self {
            guard: Guard::new(keys.clone(), redis.clone(), sessions, guard),
            sessions: Sessions::new(redis.clone(), sessions),
            limiter: Limiter::new(redis.clone()),
            pool,
            keys,
            redis,
            limits: Arc::new(limits),
            mailer,
            crypto,
            email_lookup: Arc::new(email_lookup),
            dummy_hash: Arc::new(dummy),
            password_checks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many Argon2id verifications this instance ran (metrics; the rate-limit test).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// Counts one attempt on `endpoint` for the client IP and, when known, the account (its
    /// e-mail blind index, [`AppState::lookup`]); 429 beyond either limit, 503 when Redis
    /// cannot answer (fail closed).
    pub async fn limit(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        account: Option<&str>,
    ) -> Result<()> {
        let window = Duration::from_secs(self.limits.window_secs);
        let ip = client_ip(headers, self.limits.trusted_proxy_hops);
        let mut rules = vec![Rule {
            key: self.redis.key(&["rl", endpoint, "ip", &ip]),
            limit: self.limits.per_ip,
            window,
        }];
        if let Some(account) = account {
            // The keyed blind index, so no e-mail address appears in Redis keys; erasure finds
            // the key from the stored `users.email_lookup`.
            rules.push(Rule {
                key: self.redis.key(&["rl", endpoint, "acct", account]),
                limit: self.limits.per_account,
                window,
            });
        }
        match self.limiter.hit(&rules).await? {
            None => Ok(()),
            Some(wait) => {
                tracing::warn!(target: "audit", event = "lockout", endpoint, client_ip = %ip, "rate limit reached");
                Err(Error::RateLimited(wait))
            }
        }
    }

    /// The blind index of an address (normalised first).
    pub fn lookup(&self, email: &str) -> String {
        self.email_lookup.of(email)
    }

    /// The user's e-mail address, decrypted with their data key; `None` when the row has no
    /// address or does not exist.
    pub async fn email_of(&self, user: Uuid) -> Result<Option<String>> {
        let ct: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT email_ct FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        let Some(ct) = ct.flatten() else {
            return Ok(None);
        };
        let email = self
            .crypto
            .decrypt_str(user, &email_context(user), &ct)
            .await?;
        Ok(Some(email))
    }

    /// Verifies `password` against `stored` (or the dummy hash) off the async threads.
    pub async fn verify_password(&self, password: String, stored: Option<String>) -> Result<bool> {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|parsed| {
                hasher()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| Error::Hash(e.to_string()))
    }

    /// Sends mail; a failure is logged and answered 503.
    pub async fn send(&self, mail: mail::Mail) -> Result<()> {
        self.mailer.send(&mail).await.map_err(Error::Mail)
    }
}

/// Argon2id hash of a password, off the async threads.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| Error::Hash(e.to_string()))?
    .map_err(|e| Error::Hash(e.to_string()))
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The client address: the entry the trusted proxies saw, counted from the right of
/// X-Forwarded-For (the load balancer appends `client, lb`); entries further left are
/// client-supplied and ignored.
pub fn client_ip(headers: &HeaderMap, trusted_hops: usize) -> String {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return "unknown".into();
    }
    let idx = entries.len().saturating_sub(trusted_hops + 1);
    entries[idx]
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| "invalid".into())
}

/// Errors of this function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 4xx as given.
    #[error(transparent)]
    Client(#[from] Problem),
    /// 429 with `Retry-After`.
    #[error("rate limited")]
    RateLimited(Duration),
    /// 503: Redis cannot answer; auth fails closed.
    #[error("redis: {0}")]
    Cache(#[from] CacheError),
    /// 503 if the database is unreachable, else 500.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// 500: hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// 503: the mail provider did not take the message.
    #[error(transparent)]
    Mail(MailError),
    /// 500: a TOTP secret could not be encrypted or decrypted.
    #[error("crypto: {0}")]
    Crypto(#[from] common::crypto::CryptoError),
}

/// Result of a handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::RateLimited(wait) => common::guard::too_many_requests(wait),
            Error::Cache(e) => {
                tracing::error!(error = %e, "redis unavailable; failing closed");
                common::guard::unavailable()
            }
            Error::Db(e) => common::db::problem(&e).into_response(),
            Error::Hash(e) => {
                tracing::error!(error = %e, "hashing error");
                Problem::internal().into_response()
            }
            Error::Mail(e) => {
                tracing::error!(error = %e, "mail not sent");
                Problem::unavailable().into_response()
            }
            Error::Crypto(e) => {
                tracing::error!(error = %e, "data key error");
                Problem::internal().into_response()
            }
        }
    }
}

/// Starts the service.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    tracing::info!(kids = ?keys.kids(), "JWT key versions loaded");
    let pool = common::db::connect(&config.db).await?;
    let redis = Redis::connect(&config.redis)?;
    if let Err(e) = redis.ping().await {
        tracing::warn!(error = %e, "redis not reachable at start-up; answering 503 until it is");
    }
    let mailer = mail::from_config(&config.mail)?;
    let crypto = common::crypto::Keyring::new(pool.clone(), config.data_keys.provider()?);
    let email_lookup = common::crypto::EmailLookup::from_config(&config.email_lookup)?;
    let state = AppState::new(
        pool.clone(),
        keys,
        redis,
        config.sessions,
        &config.guard,
        config.limits.clone(),
        mailer,
        crypto,
        email_lookup,
    );
    let app = app(state, Duration::from_secs(config.http.request_timeout_secs));
    common::http::serve(app, &config.http).await?;
    common::db::close(&pool).await;
    Ok(())
}

/// Routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .post("/v1/auth/register", account::register)
        .post("/v1/auth/email-verification", account::verify_email)
        .post("/v1/auth/password", account::change_password)
        .post("/v1/auth/password-reset", account::request_reset)
        .post("/v1/auth/password-reset/confirm", account::confirm_reset)
        .post("/v1/auth/login", login::login)
        .post("/v1/auth/login/totp-enrolment", login::enrol_totp)
        .post("/v1/auth/login/second-factor", login::second_factor)
        .post("/v1/auth/refresh", session::refresh)
        .post("/v1/auth/logout", session::logout)
        .post("/v1/auth/logout-all", session::logout_all)
        .get("/v1/auth/sessions", session::list)
        .delete("/v1/auth/sessions/{id}", session::revoke)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// The service with the guard (token + session + per-user limit on the bearer routes, the
/// minimum app version) and the platform layers.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let guard = state.guard.clone();
    let router = routes().into_router().with_state(state);
    common::http::platform(guard.protect(router), request_timeout)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dta-wide auth", version = "1"),
    paths(
        account::register, account::verify_email, account::change_password,
        account::request_reset, account::confirm_reset,
        login::login, login::enrol_totp, login::second_factor,
        session::refresh, session::logout, session::logout_all, session::list, session::revoke,
        openapi, healthz
    ),
    components(schemas(
        account::Credentials, account::TokenBody, account::PasswordChange, account::ResetRequest,
        account::ResetConfirm, login::LoginChallenge, login::MfaToken, login::TotpEnrolment,
        login::SecondFactor, session::Tokens, session::RefreshBody, session::SessionView, Problem
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Serving")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The AAD of a stored e-mail address (`users.email_ct`).
pub fn email_context(user: Uuid) -> String {
    common::crypto::field_context("users", "email", user)
}

/// Lower-cased, trimmed e-mail address, or 422 naming `email`.
pub fn normalise_email(email: &str) -> Result<String, Problem> {
    let email = common::crypto::normalise_email(email);
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(Problem::validation("email", "not an e-mail address"))
    }
}

/// The password policy (TR-03161-3 O.Pass_1): 12 to 128 characters, not built from the
/// e-mail address, not a single repeated character. No composition rules (NIST SP 800-63B).
pub fn check_password(field: &str, password: &str, email: &str) -> Result<(), Problem> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Problem::validation(
            field,
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Problem::validation(
            field,
            format!("at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if local.chars().count() >= 4 && lower.contains(local) {
        return Err(Problem::validation(
            field,
            "must not contain the e-mail address",
        ));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err(Problem::validation(field, "too few different characters"));
    }
    Ok(())
}

/// A signed access token for a session.
pub fn access_token(state: &AppState, user: Uuid, sid: &str) -> String {
    state.keys.sign(user, ACCESS_TTL, Some(sid.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_ip_is_the_one_the_load_balancer_saw() {
        let mut h = HeaderMap::new();
        assert_eq!(client_ip(&h, 1), "unknown");
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.7, 35.191.0.1".parse().unwrap(),
        );
        assert_eq!(client_ip(&h, 1), "198.51.100.7");
        assert_eq!(client_ip(&h, 0), "35.191.0.1");
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(client_ip(&h, 1), "198.51.100.7");
    }

    #[test]
    fn the_password_policy_refuses_short_repetitive_and_email_based_passwords() {
        let e = "patient@example.org";
        assert!(check_password("p", "correct horse battery", e).is_ok());
        for bad in [
            "short",
            "aaaaaaaaaaaaaaaa",
            "my-patient-password",
            &"x1y2".repeat(40),
        ] {
            assert!(check_password("p", bad, e).is_err(), "{bad}");
        }
    }
}
