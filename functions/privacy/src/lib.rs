//! `privacy`: HTTPS API of the data subject's rights — the consent register (DiGAV §4(2),
//! GDPR Art. 7), erasure across every store (Art. 17) and the export (Art. 15/20). Called by the
//! app through the load balancer at `/v1/me`.

pub mod audit;
pub mod consents;
pub mod erasure;
pub mod export;
pub mod push;

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
    #[command(flatten)]
    pub storage: common::storage::StorageConfig,
    /// Firestore project (the emulator is used when FIRESTORE_EMULATOR_HOST is set).
    #[arg(long, env = "FIRESTORE_PROJECT", default_value = "dta-wide-local")]
    pub firestore_project: String,
    /// Cloud Storage buckets holding per-user objects under `users/{id}/`, comma-separated;
    /// erasure empties that prefix in each.
    #[arg(long, env = "ERASURE_BUCKETS", value_delimiter = ',')]
    pub erasure_buckets: Vec<String>,
    #[command(flatten)]
    pub data_keys: common::crypto::KeyConfig,
    /// Verification of the audit subscription's pushes.
    #[command(flatten)]
    pub push: push::PushConfig,
    #[command(flatten)]
    pub archive: erasure::ArchiveConfig,
}

/// State built once in `run` and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
    /// Every store erasure reaches.
    pub stores: erasure::Stores,
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
    /// 500: a stored value could not be decrypted; the cause is logged, not returned.
    #[error("crypto: {0}")]
    Crypto(#[from] common::crypto::CryptoError),
    /// 500: a stored row no longer reads as its model; the cause is logged, not returned.
    #[error("stored data: {0}")]
    Stored(String),
}

/// Result of a handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Crypto(e) => {
                tracing::error!(error = %e, "field decryption error");
                Problem::internal().into_response()
            }
            Error::Stored(e) => {
                tracing::error!(error = %e, "stored data unreadable");
                Problem::internal().into_response()
            }
            Error::Db(e) if common::db::is_foreign_key_violation(&e) => {
                // A valid token for an account that no longer exists.
                Problem::unauthorized().into_response()
            }
            Error::Db(e) => common::db::problem(&e).into_response(),
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
    let guard =
        common::guard::Guard::new(keys.clone(), redis.clone(), config.sessions, &config.guard);
    let firestore = firestore::FirestoreDb::new(&config.firestore_project).await?;
    let mut buckets = Vec::new();
    for bucket in config.erasure_buckets.iter().filter(|b| !b.is_empty()) {
        buckets.push(common::storage::Storage::connect(&config.storage, bucket).await?);
    }
    let state = AppState {
        pool: pool.clone(),
        keys,
        stores: erasure::Stores {
            pool: pool.clone(),
            redis,
            firestore,
            buckets,
            keyring: common::crypto::Keyring::new(pool.clone(), config.data_keys.provider()?),
            archive: config.archive.connect(&config.storage).await?,
        },
    };
    let push = push::PushState::from_config(pool.clone(), &config.push)?;
    let timeout = Duration::from_secs(config.http.request_timeout_secs);
    common::http::serve(service(state, push, timeout, Some(guard)), &config.http).await?;
    common::db::close(&pool).await;
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
        .delete("/v1/me", erase_me)
        .get("/v1/me/export", export::export)
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
    common::http::platform(common::guard::protect(router, guard), request_timeout)
}

/// What `run` serves: the patient's routes behind the guard, the audit push route beside them.
pub fn service(
    state: AppState,
    push: push::PushState,
    request_timeout: Duration,
    guard: Option<common::guard::Guard>,
) -> Router {
    let data = common::guard::protect(routes().into_router().with_state(state), guard);
    let open = push::routes().into_router().with_state(push);
    common::http::platform(data.merge(open), request_timeout)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dta-wide privacy", version = "1"),
    paths(consents::current, consents::grant, consents::history, consents::withdraw, erase_me, export::export, push::push, openapi, healthz),
    components(schemas(consents::ConsentState, consents::ConsentEvent, consents::Withdrawal, consents::Grant, common::consent::Purpose, erasure::Erasure, erasure::StoreOutcome, Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Erase the caller's account and every piece of data about them in every store, then verify.
/// 200 when every store was erased and found empty; 202 naming the stores still pending (they
/// are retried by the retention job and the caller may call again while the session lives).
#[utoipa::path(delete, path = "/v1/me",
    responses(
        (status = 200, description = "Erased and verified in every store this deployment has (`not_configured`: a store it has none of, e.g. no `ERASURE_BUCKETS` or `ARCHIVE_BUCKET`)", body = erasure::Erasure),
        (status = 202, description = "Some stores are pending; they are retried", body = erasure::Erasure),
    ),
    security(("bearer" = [])))]
async fn erase_me(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: common::http::AuthUser,
) -> Result<(axum::http::StatusCode, Json<erasure::Erasure>)> {
    let (status, outcome) = erase_and_audit(&state, user.user_id).await?;
    Ok((status, Json(outcome)))
}

/// Erases `user` everywhere and records the outcome in the audit trail; 200 when done, 202 when
/// stores are pending. Used by `DELETE /v1/me` and by the withdrawal of `intended_use`.
pub(crate) async fn erase_and_audit(
    state: &AppState,
    user: uuid::Uuid,
) -> Result<(axum::http::StatusCode, erasure::Erasure)> {
    let outcome = erasure::erase(&state.stores, user).await?;
    // The trail names the erased user only by the pseudonym the ledger keeps as well.
    let mut tx = state.pool.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            actor: user,
            subject: user,
            action: if outcome.done() {
                "erasure.done"
            } else {
                "erasure.pending"
            },
            function: "privacy",
            object: None,
        },
    )
    .await?;
    tx.commit().await?;
    let status = if outcome.done() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::ACCEPTED
    };
    Ok((status, outcome))
}

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
