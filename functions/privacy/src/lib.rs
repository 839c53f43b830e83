//! `privacy`: HTTPS API of the data subject's rights — the consent register (DiGAV §4(2),
//! GDPR Art. 7), erasure across every store (Art. 17) and the export (Art. 15/20). Called by the
//! app through the load balancer at `/v1/me`.

pub mod consents;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig};
use common::error::Problem;
use common::openapi::{ApiRouter, BearerAuth};
use sqlx::PgPool;
use utoipa::OpenApi;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "privacy", about = "Consent register, export and erasure")]
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
    pub jwt_files: common::auth::JwtKeyFiles,
    #[command(flatten)]
    pub redis: common::cache::RedisConfig,
    #[command(flatten)]
    pub sessions: common::cache::SessionConfig,
    #[command(flatten)]
    pub guard: common::guard::GuardConfig,
}

/// State built once in `run` and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
}

impl FromRef<AppState> for Arc<JwtKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// Errors of this function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 4xx: returned to the client as it is.
    #[error(transparent)]
    Client(#[from] Problem),
    /// 503 when the database is unreachable, else 500; the cause is logged, not returned.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Result of a handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Db(e) if common::db::is_foreign_key_violation(&e) => {
                // A valid token for an account that no longer exists.
                Problem::unauthorized().into_response()
            }
            Error::Db(e) => {
                tracing::error!(error = %e, "database error");
                if common::db::is_transient(&e) {
                    Problem::unavailable().into_response()
                } else {
                    Problem::internal().into_response()
                }
            }
        }
    }
}

/// A boxed error for start-up failures.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the service: connects, serves until SIGTERM/SIGINT, closes the pool.
pub async fn run(config: Config) -> std::result::Result<(), StartError> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    let pool = common::db::connect(&config.db).await?;
    let redis = common::cache::Redis::connect(&config.redis)?;
    let guard = common::guard::Guard::new(keys.clone(), redis, config.sessions, &config.guard);
    let state = AppState {
        pool: pool.clone(),
        keys,
    };
    let timeout = Duration::from_secs(config.http.request_timeout_secs);
    common::http::serve(guarded_app(state, timeout, Some(guard)), &config.http).await?;
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .get("/v1/me/consents", consents::current)
        .post("/v1/me/consents", consents::grant)
        .get("/v1/me/consents/history", consents::history)
        .delete("/v1/me/consents/{purpose}", consents::withdraw)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// The service with the platform layers (tests; `run` serves [`guarded_app`]).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    guarded_app(state, request_timeout, None)
}

/// The service behind the guard (live session, per-user rate limit, minimum app version).
pub fn guarded_app(
    state: AppState,
    request_timeout: Duration,
    guard: Option<common::guard::Guard>,
) -> Router {
    let router = routes().into_router().with_state(state);
    let router = match guard {
        Some(guard) => guard.protect(router),
        None => router,
    };
    common::http::platform(router, request_timeout)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dta-wide privacy", version = "1"),
    paths(consents::current, consents::grant, consents::history, consents::withdraw, openapi, healthz),
    components(schemas(consents::ConsentState, consents::ConsentEvent, consents::Grant, common::consent::Purpose, Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// This service's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Serving")))]
async fn healthz() -> &'static str {
    "ok"
}
