//! `sleep-analysis`: Pub/Sub push subscriber on the sleep-log topic. Per user and week it
//! aggregates the nights, titrates the CBT-I sleep window (versioned parameter sets), writes an
//! analysis log and an event-stream entry to Firestore, and serves the prescribed window at
//! `GET /v1/sleep-window` (through the load balancer).

pub mod titration;
pub mod week;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig, PubSubConfig};
use common::consent::Purpose;
use common::documents::{ANALYSIS_LOGS, Documents, EVENTS, StoredDoc};
use common::error::Problem;
use common::events::{AuditRecorded, Event, NightSummary};
use common::http::AuthUser;
use common::openapi::{ApiRouter, BearerAuth};
use common::pubsub::{OidcVerifier, PushError, parse_push};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use tracing::Instrument;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::titration::Params;
use crate::week::{NightRow, WeekResult};

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sleep-analysis",
    about = "Weekly sleep analysis and sleep-window titration"
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
    /// Titration parameter set: `S` (≥ 90 / < 85 %) or `A` (≥ 85 / < 80 %), REFERENCE §2.7.
    #[arg(long, env = "TITRATION_PROFILE", default_value = "S")]
    pub titration_profile: String,
    /// Firestore project (the emulator is used when FIRESTORE_EMULATOR_HOST is set).
    #[arg(long, env = "FIRESTORE_PROJECT", default_value = "dta-wide-local")]
    pub firestore_project: String,
    /// Accept pushes without a Google-signed OIDC token. Only for local runs: production
    /// verifies the token's audience and service account.
    #[arg(long, env = "PUSH_AUTH_DISABLED", default_value_t = false)]
    pub push_auth_disabled: bool,
    /// Expected `aud` of push tokens: the push endpoint URL of the subscription.
    #[arg(long, env = "PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// Service account the push subscription signs its tokens as.
    #[arg(long, env = "PUSH_SERVICE_ACCOUNT")]
    pub push_service_account: Option<String>,
    #[command(flatten)]
    pub jwt_files: common::auth::JwtKeyFiles,
    #[command(flatten)]
    pub redis: common::cache::RedisConfig,
    #[command(flatten)]
    pub sessions: common::cache::SessionConfig,
    #[command(flatten)]
    pub guard: common::guard::GuardConfig,
    /// Where the outbox drainer publishes this function's audit events.
    #[command(flatten)]
    pub pubsub: PubSubConfig,
}

/// State built once.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
    pub docs: Documents,
    pub params: Params,
    /// Verifies the push subscription's OIDC token; `None` only for local runs.
    pub push_auth: Option<Arc<OidcVerifier>>,
}

impl FromRef<AppState> for Arc<JwtKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// Errors of this function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 4xx as given.
    #[error(transparent)]
    Client(#[from] Problem),
    /// 503: Pub/Sub redelivers. The database is down or overloaded.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// 503: Pub/Sub redelivers. Firestore is unavailable.
    #[error(transparent)]
    Docs(#[from] common::documents::DocError),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Db(e) if common::db::is_foreign_key_violation(&e) => {
                Problem::unauthorized().into_response()
            }
            Error::Db(e) => {
                tracing::error!(error = %e, "database error");
                Problem::unavailable().into_response()
            }
            Error::Docs(e) => {
                tracing::error!(error = %e, "firestore error");
                Problem::unavailable().into_response()
            }
        }
    }
}

/// Starts the service.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    let redis = common::cache::Redis::connect(&config.redis)?;
    let guard = common::guard::Guard::new(keys.clone(), redis, config.sessions, &config.guard);
    let params =
        titration::profile(&config.titration_profile).ok_or("TITRATION_PROFILE must be S or A")?;
    let push_auth = if config.push_auth_disabled {
        tracing::warn!("push OIDC verification is off (local run)");
        None
    } else {
        let (Some(aud), Some(sa)) = (&config.push_audience, &config.push_service_account) else {
            return Err("set PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT (or PUSH_AUTH_DISABLED=true for local runs)".into());
        };
        Some(Arc::new(OidcVerifier::google(aud.clone(), sa.clone())))
    };
    let pool = common::db::connect(&config.db).await?;
    let docs = Documents::connect(&config.firestore_project).await?;
    let drainer = common::pubsub::Drainer::start(pool.clone(), &config.pubsub);
    let app = guarded_app(
        AppState {
            pool: pool.clone(),
            keys,
            docs,
            params,
            push_auth,
        },
        Duration::from_secs(config.http.request_timeout_secs),
        Some(guard),
    );
    common::http::serve(app, &config.http).await?;
    drainer.stop().await;
    common::db::close(&pool).await;
    Ok(())
}

/// The patient's routes: behind the session guard.
fn data_routes() -> ApiRouter<AppState> {
    ApiRouter::new().get("/v1/sleep-window", sleep_window)
}

/// Pub/Sub push (its own OIDC check; the bearer there is Google's, not ours) and the platform
/// routes: not behind the session guard.
fn open_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .post("/pubsub/push", push)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// Every route served, documented in [`ApiDoc`].
pub fn served_routes() -> Vec<(String, String)> {
    let mut all = data_routes().routes();
    all.extend(open_routes().routes());
    all
}

/// The service with the platform layers (tests; `run` serves [`guarded_app`]).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    guarded_app(state, request_timeout, None)
}

/// The service with `/v1/sleep-window` behind the guard and the push route beside it.
pub fn guarded_app(
    state: AppState,
    request_timeout: Duration,
    guard: Option<common::guard::Guard>,
) -> Router {
    let data = common::guard::protect(data_routes().into_router().with_state(state.clone()), guard);
    let open = open_routes().into_router().with_state(state);
    common::http::platform(data.merge(open), request_timeout)
}

#[derive(OpenApi)]
#[openapi(info(title = "dta-wide sleep-analysis", version = "1"), paths(push, sleep_window, openapi, healthz),
    components(schemas(SleepWindow, Problem)), modifiers(&BearerAuth))]
pub struct ApiDoc;

/// Outcome of one push, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; the weeks' results may or may not have changed.
    Processed,
    /// The same business fact was processed before.
    Duplicate,
    /// Can never succeed; acknowledged and recorded.
    Undeliverable,
    /// The user has withdrawn (or never given) the consent to the intended use: acknowledged
    /// and not processed (DiGAV §4(2) Nr. 1; TR-03161-3 O.Purp).
    Skipped,
}

/// Pub/Sub push endpoint for the sleep-log subscription. 204 acknowledges (processed,
/// duplicate or undeliverable); 503 asks Pub/Sub to redeliver; 400 refuses a body that is not
/// a push envelope.
#[utoipa::path(post, path = "/pubsub/push", request_body(content = String, description = "Pub/Sub push envelope", content_type = "application/json"),
    responses((status = 204, description = "Acknowledged"), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "Transient failure; redeliver")))]
async fn push(State(state): State<AppState>, req: Request) -> Result<StatusCode, Error> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    common::pubsub::OidcVerifier::authorize_push(state.push_auth.as_deref(), authorization).await?;
    let body = common::http::body_bytes(req, &()).await?;
    let msg = match parse_push(&body) {
        Ok(m) => m,
        Err(PushError::NotAnEnvelope(why)) => {
            return Err(Problem::bad_request(format!("not a Pub/Sub push envelope: {why}")).into());
        }
        Err(PushError::Unreadable(why)) => {
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"]["messageId"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            record_undeliverable(&state.pool, &id, &why).await?;
            return Ok(StatusCode::NO_CONTENT);
        }
    };
    // Every line of this delivery carries the message id and the attempt (Cloud Logging puts
    // span fields on each entry).
    let span = tracing::info_span!(
        "push",
        message_id = %msg.message_id,
        delivery_attempt = msg.delivery_attempt.unwrap_or(0),
        subscription = %msg.subscription,
    );
    let outcome = async {
        tracing::info!("push received");
        match Event::from_json(&msg.data) {
            Ok((envelope, event)) => {
                handle(&state, &msg.message_id, envelope.occurred_at, &event).await
            }
            Err(e) => {
                tracing::warn!(reason = %e, "undeliverable event acknowledged");
                record_undeliverable(&state.pool, &msg.message_id, &e.to_string()).await?;
                Ok(Outcome::Undeliverable)
            }
        }
    }
    .instrument(span.clone())
    .await?;
    span.in_scope(|| tracing::info!(outcome = ?outcome, "push handled"));
    Ok(StatusCode::NO_CONTENT)
}

async fn record_undeliverable(
    pool: &PgPool,
    message_id: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO undeliverable_events (message_id, reason) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING")
        .bind(message_id)
        .bind(reason)
        .execute(pool)
        .await?;
    Ok(())
}

fn offset_secs(t: &DateTime<FixedOffset>) -> i32 {
    t.offset().local_minus_utc()
}

async fn upsert_night(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    source: &str,
    n: &NightSummary,
    revision: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analysis_nights (user_id, night, source, zone, final_awakening, final_offset, tib_min, tst_min, sol_min, waso_min, revision, deleted) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,false) \
         ON CONFLICT (user_id, night, source) DO UPDATE SET zone = EXCLUDED.zone, final_awakening = EXCLUDED.final_awakening, \
           final_offset = EXCLUDED.final_offset, tib_min = EXCLUDED.tib_min, tst_min = EXCLUDED.tst_min, sol_min = EXCLUDED.sol_min, \
           waso_min = EXCLUDED.waso_min, revision = EXCLUDED.revision, deleted = false \
         WHERE analysis_nights.revision <= EXCLUDED.revision",
    )
    .bind(user)
    .bind(n.night)
    .bind(source)
    .bind(&n.zone)
    .bind(n.final_awakening.with_timezone(&Utc))
    .bind(offset_secs(&n.final_awakening))
    .bind(i32::try_from(n.tib_min).unwrap_or(0))
    .bind(i32::try_from(n.tst_min).unwrap_or(0))
    .bind(n.sol_min.and_then(|v| i32::try_from(v).ok()))
    .bind(n.waso_min.and_then(|v| i32::try_from(v).ok()))
    .bind(revision)
    .execute(tx)
    .await?;
    Ok(())
}

/// Applies one event: idempotent on its business key, recomputes the user's weeks, writes the
/// changed weeks to Firestore before the database commit (so a Firestore failure rolls back and
/// the redelivery does the whole work again; the documents' ids are deterministic).
/// `occurred_at` is when the producer wrote the event; it orders device nights, since events
/// may arrive in any order.
pub async fn handle(
    state: &AppState,
    message_id: &str,
    occurred_at: DateTime<Utc>,
    event: &Event,
) -> Result<Outcome, Error> {
    let mut tx = state.pool.begin().await?;
    // One user's events are analysed one at a time: concurrent pushes would each see only
    // their own night and the last commit would win with a stale week.
    let owner = match event {
        Event::SleepLogRecorded(e) => e.user_id,
        Event::SleepLogIngested(e) => e.user_id,
        // Not for this subscriber; acknowledged without work.
        Event::QuestionnaireScored(_) | Event::SafetyFlagged(_) | Event::AuditRecorded(_) => {
            return Ok(Outcome::Undeliverable);
        }
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 11))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    // Withdrawal stops the processing it covered: without the consent to the intended use the
    // event is acknowledged and nothing is analysed (DiGAV §4(2) Nr. 1; TR-03161-3 O.Purp).
    // Not recorded as processed, so nothing about it stays behind.
    if !common::consent::granted(&mut *tx, owner, Purpose::IntendedUse).await? {
        tx.rollback().await?;
        tracing::info!(
            message_id,
            purpose = Purpose::IntendedUse.as_str(),
            "event skipped: no consent to the purpose"
        );
        return Ok(Outcome::Skipped);
    }
    let fresh: bool = sqlx::query_scalar(
        "INSERT INTO processed_events (business_key, first_message_id) VALUES ($1, $2) \
         ON CONFLICT (business_key) DO UPDATE SET duplicates = processed_events.duplicates + 1 RETURNING (xmax = 0)",
    )
    .bind(event.business_key())
    .bind(message_id)
    .fetch_one(&mut *tx)
    .await?;
    if !fresh {
        tx.commit().await?;
        tracing::info!(message_id, "duplicate event counted");
        return Ok(Outcome::Duplicate);
    }
    let user = match event {
        Event::SleepLogRecorded(e) => {
            match &e.summary {
                Some(n) if e.change != "deleted" => {
                    upsert_night(&mut tx, e.user_id, "diary", n, e.revision).await?
                }
                _ => {
                    sqlx::query("UPDATE analysis_nights SET deleted = true, revision = $4 WHERE user_id = $1 AND night = $2 AND source = $3 AND revision <= $4")
                        .bind(e.user_id)
                        .bind(e.night)
                        .bind("diary")
                        .bind(e.revision)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            e.user_id
        }
        Event::SleepLogIngested(e) => {
            for n in &e.nights {
                upsert_night(&mut tx, e.user_id, "device", n, occurred_at).await?;
            }
            e.user_id
        }
        Event::QuestionnaireScored(_) | Event::SafetyFlagged(_) | Event::AuditRecorded(_) => owner,
    };
    let rows = load_nights(&mut tx, user).await?;
    let results = week::analyse(&rows, &state.params);
    for r in &results {
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT fingerprint FROM sleep_windows WHERE user_id = $1 AND week_start = $2",
        )
        .bind(user)
        .bind(r.week_start)
        .fetch_optional(&mut *tx)
        .await?;
        if previous.as_deref() == Some(r.fingerprint.as_str()) {
            continue;
        }
        store_week(&mut tx, user, r).await?;
        let id = format!("{}-{}", r.week_start, &r.fingerprint[..12]);
        let payload = serde_json::to_value(r).unwrap_or_default();
        let log = StoredDoc::new(user, Utc::now(), "sleep-analysis.week", payload);
        let stream = StoredDoc::new(
            user,
            Utc::now(),
            "sleep-window.prescribed",
            serde_json::json!({"week_start": r.week_start, "window_min": r.window_min, "change": r.change, "params_version": r.params_version}),
        );
        // Both documents at once: the round trips to Firestore dominate a push.
        let (a, b) = tokio::join!(
            state.docs.put(user, ANALYSIS_LOGS, &id, &log),
            state.docs.put(user, EVENTS, &id, &stream),
        );
        a?;
        b?;
    }
    tx.commit().await?;
    Ok(Outcome::Processed)
}

async fn load_nights(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
) -> Result<Vec<NightRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT night, source, final_awakening, final_offset, tib_min, tst_min, sol_min, waso_min FROM analysis_nights \
         WHERE user_id = $1 AND NOT deleted ORDER BY night, source",
    )
    .bind(user)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| {
            let at: DateTime<Utc> = r.try_get("final_awakening")?;
            let offset = FixedOffset::east_opt(r.try_get("final_offset")?)
                .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
            Ok(NightRow {
                night: r.try_get("night")?,
                source: r.try_get("source")?,
                final_local: at.with_timezone(&offset).time(),
                tib_min: i64::from(r.try_get::<i32, _>("tib_min")?),
                tst_min: i64::from(r.try_get::<i32, _>("tst_min")?),
                sol_min: r.try_get::<Option<i32>, _>("sol_min")?.map(i64::from),
                waso_min: r.try_get::<Option<i32>, _>("waso_min")?.map(i64::from),
            })
        })
        .collect()
}

async fn store_week(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    r: &WeekResult,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sleep_windows (user_id, week_start, params_version, nights, tib_mean_min, tst_mean_min, se_pct, sol_mean_min, waso_mean_min, \
         change, reason, window_min, bedtime, wake_time, fingerprint, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,now()) \
         ON CONFLICT (user_id, week_start) DO UPDATE SET params_version = EXCLUDED.params_version, nights = EXCLUDED.nights, \
         tib_mean_min = EXCLUDED.tib_mean_min, tst_mean_min = EXCLUDED.tst_mean_min, se_pct = EXCLUDED.se_pct, sol_mean_min = EXCLUDED.sol_mean_min, \
         waso_mean_min = EXCLUDED.waso_mean_min, change = EXCLUDED.change, reason = EXCLUDED.reason, window_min = EXCLUDED.window_min, \
         bedtime = EXCLUDED.bedtime, wake_time = EXCLUDED.wake_time, fingerprint = EXCLUDED.fingerprint, updated_at = now()",
    )
    .bind(user)
    .bind(r.week_start)
    .bind(r.params_version)
    .bind(i32::try_from(r.nights).unwrap_or(0))
    .bind(i32::try_from(r.tib_mean_min).unwrap_or(0))
    .bind(i32::try_from(r.tst_mean_min).unwrap_or(0))
    .bind(r.se_pct)
    .bind(r.sol_mean_min.and_then(|v| i32::try_from(v).ok()))
    .bind(r.waso_mean_min.and_then(|v| i32::try_from(v).ok()))
    .bind(serde_json::to_value(r.change).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
    .bind(&r.reason)
    .bind(r.window_min.and_then(|v| i32::try_from(v).ok()))
    .bind(&r.bedtime)
    .bind(&r.wake_time)
    .bind(&r.fingerprint)
    .execute(tx)
    .await?;
    Ok(())
}

/// The prescribed sleep window.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SleepWindow {
    /// The analysed week (Monday) the prescription comes from; it applies to the week after.
    pub week_start: NaiveDate,
    /// Window length, minutes (absent while the baseline is incomplete).
    pub window_min: Option<i64>,
    /// Bedtime, local clock.
    pub bedtime: Option<String>,
    /// Fixed wake time, local clock.
    pub wake_time: Option<String>,
    /// `initial`, `increase`, `hold`, `decrease` or `insufficient_data`.
    pub change: String,
    /// Why.
    pub reason: String,
    /// Parameter set.
    pub params_version: String,
    /// Nights in the analysed week.
    pub nights: i64,
    /// Weekly SE, ratio of sums.
    pub se_pct: f64,
    /// Mean TIB.
    pub tib_mean_min: i64,
    /// Mean TST.
    pub tst_mean_min: i64,
}

/// This function's name in the audit trail.
const FUNCTION: &str = "sleep-analysis";

/// The caller's current sleep window: the newest analysed week. Served only while the consent
/// to the intended use stands (the prescription is that processing).
#[utoipa::path(get, path = "/v1/sleep-window",
    responses((status = 200, body = SleepWindow),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "No consent to the intended use (`field` names the purpose)"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "No week analysed yet")),
    security(("bearer" = [])))]
async fn sleep_window(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SleepWindow>, Error> {
    common::consent::require(&state.pool, user.user_id, Purpose::IntendedUse).await??;
    // The read and its audit event in one statement; the event only when a week is found.
    let audited = common::pubsub::OutboxRow::audit(&AuditRecorded::own(
        user.user_id,
        "sleep-window.read",
        FUNCTION,
        None,
    ));
    let row = sqlx::query(
        "WITH w AS (SELECT week_start, window_min, bedtime, wake_time, change, reason, params_version, nights, se_pct, tib_mean_min, tst_mean_min \
         FROM sleep_windows WHERE user_id = $1 ORDER BY week_start DESC LIMIT 1), \
         a AS (INSERT INTO outbox (event_id, topic, payload) SELECT $2, $3, $4 FROM w) \
         SELECT * FROM w",
    )
    .bind(user.user_id)
    .bind(audited.event_id)
    .bind(audited.topic)
    .bind(&audited.payload)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(Problem::not_found)?;
    Ok(Json(SleepWindow {
        week_start: row.try_get("week_start")?,
        window_min: row.try_get::<Option<i32>, _>("window_min")?.map(i64::from),
        bedtime: row.try_get("bedtime")?,
        wake_time: row.try_get("wake_time")?,
        change: row.try_get("change")?,
        reason: row.try_get("reason")?,
        params_version: row.try_get("params_version")?,
        nights: i64::from(row.try_get::<i32, _>("nights")?),
        se_pct: row.try_get("se_pct")?,
        tib_mean_min: i64::from(row.try_get::<i32, _>("tib_mean_min")?),
        tst_mean_min: i64::from(row.try_get::<i32, _>("tst_mean_min")?),
    }))
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
