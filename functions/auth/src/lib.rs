//! `auth`: HTTPS registration and login (Argon2id) issuing the HS256 access tokens every data
//! route verifies. Called by the app through the load balancer at `/v1/auth/*`.
//! Minimal for now: second factor, refresh tokens and rate limiting come with the hardening issue.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig};
use common::error::Problem;
use common::http::ApiJson;
use common::openapi::ApiRouter;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::OpenApi;
use uuid::Uuid;

/// Argon2id parameters: OWASP Password Storage Cheat Sheet (2023) minimum for Argon2id,
/// m = 19 MiB, t = 2, p = 1; RFC 9106 §4 names Argon2id the recommended variant.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;
/// Shortest accepted password (NIST SP 800-63B §3.1.1.2 asks ≥ 8; we ask more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Access tokens live 15 minutes.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "auth", about = "Registration and login")]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
}

/// State built once.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
    /// A real Argon2id hash with our parameters, verified when the account does not exist so
    /// that timing does not tell which e-mails are registered.
    dummy_hash: Arc<String>,
}

impl AppState {
    /// Builds the state (hashes the dummy password once).
    pub fn new(pool: PgPool, keys: Arc<JwtKeys>) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let dummy = hasher()
            .hash_password(b"no account has this password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self {
            pool,
            keys,
            dummy_hash: Arc::new(dummy),
        }
    }
}

/// Errors of this function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 4xx as given.
    #[error(transparent)]
    Client(#[from] Problem),
    /// 503 if the database is unreachable, else 500.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// 500: hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Db(e) => {
                tracing::error!(error = %e, "database error");
                if common::db::is_transient(&e) {
                    Problem::unavailable()
                } else {
                    Problem::internal()
                }
                .into_response()
            }
            Error::Hash(e) => {
                tracing::error!(error = %e, "hashing error");
                Problem::internal().into_response()
            }
        }
    }
}

/// Starts the service.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = Arc::new(JwtKeys::from_config(&config.jwt)?);
    let pool = common::db::connect(&config.db).await?;
    let app = app(
        AppState::new(pool.clone(), keys),
        Duration::from_secs(config.http.request_timeout_secs),
    );
    common::http::serve(app, &config.http).await?;
    pool.close().await;
    Ok(())
}

/// Routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .post("/v1/auth/register", register)
        .post("/v1/auth/login", login)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// The service with the platform layers.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    common::http::platform(routes().into_router().with_state(state), request_timeout)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dta-wide auth", version = "1"),
    paths(register, login, openapi, healthz),
    components(schemas(Credentials, Registered, TokenResponse, Problem))
)]
pub struct ApiDoc;

/// E-mail and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// A new account.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registered {
    pub user_id: Uuid,
}

/// An access token.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until expiry.
    pub expires_in: u64,
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn normalise_email(email: &str) -> Result<String, Problem> {
    let email = email.trim().to_lowercase();
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

/// Register an account.
#[utoipa::path(post, path = "/v1/auth/register", request_body = Credentials,
    responses((status = 201, body = Registered), (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn register(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Registered>), Error> {
    let email = normalise_email(&c.email)?;
    if c.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Problem::validation(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        )
        .into());
    }
    if c.password.len() > 1024 {
        return Err(Problem::validation("password", "at most 1024 bytes").into());
    }
    let password = c.password;
    let hash = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| Error::Hash(e.to_string()))?
    .map_err(|e| Error::Hash(e.to_string()))?;
    let id = Uuid::new_v4();
    let res = sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&email)
        .bind(&hash)
        .execute(&state.pool)
        .await;
    match res {
        Ok(_) => Ok((StatusCode::CREATED, Json(Registered { user_id: id }))),
        Err(e) if common::db::is_unique_violation(&e) => {
            Err(Problem::conflict("an account with this e-mail exists").into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Log in; answers an access token.
#[utoipa::path(post, path = "/v1/auth/login", request_body = Credentials,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Json<TokenResponse>, Error> {
    let email = c.email.trim().to_lowercase();
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?;
    let password = c.password;
    // Without an account, verify against a fixed hash anyway so timing does not tell.
    let (user, stored) = row.map_or_else(
        || (None, state.dummy_hash.as_ref().clone()),
        |(id, h)| (Some(id), h),
    );
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(|e| Error::Hash(e.to_string()))?;
    match (user, ok) {
        (Some(user), true) => Ok(Json(TokenResponse {
            access_token: state.keys.sign(user, ACCESS_TTL, None),
            token_type: "Bearer".into(),
            expires_in: ACCESS_TTL.as_secs(),
        })),
        _ => {
            tracing::info!(event = "login_failed", "login failed");
            Err(Problem::new(401, "invalid_credentials", "e-mail or password is wrong").into())
        }
    }
}

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
