//! HTTP routes, storage and configuration of `log-ingestion`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig, PubSubConfig};
use common::error::Problem;
use common::events::{AuditRecorded, Event, NightSummary, SleepLogIngested};
use common::http::{ApiQuery, AuthUser};
use common::openapi::{ApiRouter, BearerAuth};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::model::{Night, ParseError, Segment, Session, SessionKind, Source};
use crate::{merge, parse};

/// Cloud Run caps an HTTP/1 request body at 32 MiB; larger exports come through Cloud Storage.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "log-ingestion", about = "Wearable sleep imports")]
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
    pub pubsub: PubSubConfig,
    #[command(flatten)]
    pub jwt_files: common::auth::JwtKeyFiles,
    #[command(flatten)]
    pub redis: common::cache::RedisConfig,
    #[command(flatten)]
    pub sessions: common::cache::SessionConfig,
    #[command(flatten)]
    pub guard: common::guard::GuardConfig,
}

/// State built once.
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
    /// 4xx as given.
    #[error(transparent)]
    Client(#[from] Problem),
    /// 422: the file cannot be imported; nothing of it was stored.
    #[error("unreadable file: {0}")]
    Parse(#[from] ParseError),
    /// 503 when the database is unreachable, else 500.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Parse(e) => {
                let mut p = Problem::new(
                    422,
                    "unreadable_file",
                    format!("the file was not imported: {}", e.message),
                );
                p.field = Some(e.location.unwrap_or_else(|| "body".into()));
                p.into_response()
            }
            Error::Db(e) if common::db::is_foreign_key_violation(&e) => {
                // A valid token for an account that no longer exists.
                Problem::unauthorized().into_response()
            }
            Error::Db(e) => common::db::problem(&e).into_response(),
        }
    }
}

/// Starts the service.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    let pool = common::db::connect(&config.db).await?;
    let redis = common::cache::Redis::connect(&config.redis)?;
    let guard = common::guard::Guard::new(keys.clone(), redis, config.sessions, &config.guard);
    let app = guarded_app(
        AppState {
            pool: pool.clone(),
            keys,
        },
        Duration::from_secs(config.http.request_timeout_secs),
        Some(guard),
    );
    let drainer = common::pubsub::Drainer::start(pool.clone(), &config.pubsub);
    common::http::serve(app, &config.http).await?;
    drainer.stop().await;
    common::db::close(&pool).await;
    Ok(())
}

/// Routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .post("/v1/imports/{source}", import)
        .get("/v1/imports/nights", nights)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// The service with the platform layers and the 32 MiB body limit (tests; `run` serves
/// [`guarded_app`]).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    guarded_app(state, request_timeout, None)
}

/// The service behind the guard (live session, per-user rate limit, minimum app version).
pub fn guarded_app(
    state: AppState,
    request_timeout: Duration,
    guard: Option<common::guard::Guard>,
) -> Router {
    let router = routes()
        .into_router()
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(state);
    common::http::platform(common::guard::protect(router, guard), request_timeout)
}

#[derive(OpenApi)]
#[openapi(info(title = "dta-wide log-ingestion", version = "1"), paths(import, nights, openapi, healthz),
    components(schemas(ImportResult, Problem)), modifiers(&BearerAuth))]
pub struct ApiDoc;

/// The zone offset-less source times are read in.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The user's IANA zone, e.g. `Europe/Berlin` (Fitbit times carry no offset).
    pub zone: String,
}

/// What an import stored.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub import_id: Uuid,
    pub source: String,
    /// Sleep periods in the file.
    pub sessions_in_file: usize,
    /// Periods not seen before (0 on a re-import).
    pub sessions_new: usize,
    /// Nights the file touches.
    pub nights: Vec<NaiveDate>,
    /// True when this exact file had been imported before.
    pub already_imported: bool,
}

fn source_of(name: &str) -> Result<Source, Problem> {
    match name {
        "apple-health" => Ok(Source::AppleHealth),
        "fitbit" => Ok(Source::Fitbit),
        "oura" => Ok(Source::Oura),
        _ => Err(Problem::not_found()),
    }
}

/// Parses a file of the given source (the same code serves uploads and Cloud Storage objects).
pub fn parse_file(source: Source, bytes: &[u8], zone: Tz) -> Result<Vec<Session>, ParseError> {
    match source {
        Source::AppleHealth => parse::apple_health(std::io::BufReader::new(bytes), zone),
        Source::Fitbit => parse::fitbit(bytes, zone),
        Source::Oura => parse::oura(bytes, zone),
    }
}

/// A stable key of a period within its source, so the same period is stored once.
fn source_key(session: &Session) -> String {
    let mut ids = session.record_ids.clone();
    ids.sort();
    let mut h = Sha256::new();
    h.update(session.source.as_str());
    h.update([0]);
    h.update(session.start.timestamp().to_be_bytes());
    for id in &ids {
        h.update(id.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn kind_str(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Main => "main",
        SessionKind::Nap => "nap",
        SessionKind::Rest => "rest",
    }
}

/// Import a file. `source` is `apple-health` (export.xml), `fitbit` (sleep JSON v1.2) or `oura`
/// (v2 sleep JSON). Re-importing the same data changes nothing; an unreadable file is refused
/// whole.
#[utoipa::path(post, path = "/v1/imports/{source}",
    params(("source" = String, Path, description = "apple-health | fitbit | oura"), ImportQuery),
    request_body(content = String, description = "The export file, at most 32 MiB", content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ImportResult, description = "Imported"),
        (status = 200, body = ImportResult, description = "This file was imported before; nothing changed"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "No consent to the intended use (`field` names the purpose)"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "Larger than 32 MiB"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Unreadable file; nothing stored"),
    ),
    security(("bearer" = [])))]
async fn import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(source): Path<String>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    req: Request,
) -> Result<Response, Error> {
    let source = source_of(&source)?;
    let zone = common::diary::parse_zone("zone", &query.zone)?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    {
        if declared.is_some_and(|len| len > MAX_UPLOAD_BYTES) {
            return Err(Problem::new(
                413,
                "payload_too_large",
                "uploads are limited to 32 MiB; larger exports go through Cloud Storage",
            )
            .into());
        }
    }
    let bytes = common::http::body_bytes(req, &()).await?;
    if bytes.is_empty() {
        return Err(Problem::validation("body", "the file is empty").into());
    }
    let sha = Sha256::digest(&bytes).to_vec();
    let sessions = tokio::task::spawn_blocking(move || parse_file(source, &bytes, zone))
        .await
        .map_err(|_| Problem::internal())??;
    check_plausible(&sessions)?;
    common::consent::require(
        &state.pool,
        user.user_id,
        common::consent::Purpose::IntendedUse,
    )
    .await??;

    let mut tx = state.pool.begin().await?;
    // Serialise imports of one user so that the duplicate check and the inserts agree.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind(user.user_id)
        .execute(&mut *tx)
        .await?;
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM imports WHERE user_id = $1 AND source = $2 AND content_sha256 = $3",
    )
    .bind(user.user_id)
    .bind(source.as_str())
    .bind(&sha)
    .fetch_optional(&mut *tx)
    .await?;
    let mut night_set: Vec<NaiveDate> = sessions.iter().map(night_of).collect();
    night_set.sort();
    night_set.dedup();
    if let Some(import_id) = existing {
        tx.commit().await?;
        return Ok((
            StatusCode::OK,
            Json(ImportResult {
                import_id,
                source: source.as_str().into(),
                sessions_in_file: sessions.len(),
                sessions_new: 0,
                nights: night_set,
                already_imported: true,
            }),
        )
            .into_response());
    }
    let import_id = Uuid::new_v4();
    sqlx::query("INSERT INTO imports (id, user_id, source, content_sha256, zone, sessions) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(import_id)
        .bind(user.user_id)
        .bind(source.as_str())
        .bind(&sha)
        .bind(zone.name())
        .bind(i32::try_from(sessions.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    let mut new = 0;
    for s in &sessions {
        let segments = serde_json::to_value(&s.segments).unwrap_or_default();
        let done = sqlx::query(
            "INSERT INTO sleep_sessions (id, user_id, import_id, source, source_key, device, record_ids, kind, night, \
             start_at, start_offset, end_at, end_offset, in_bed_secs, segments, source_day, stated) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) ON CONFLICT (user_id, source, source_key) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(user.user_id)
        .bind(import_id)
        .bind(source.as_str())
        .bind(source_key(s))
        .bind(&s.device)
        .bind(&s.record_ids)
        .bind(kind_str(s.kind))
        .bind(night_of(s))
        .bind(s.start.with_timezone(&Utc))
        .bind(s.start.offset().local_minus_utc())
        .bind(s.end.with_timezone(&Utc))
        .bind(s.end.offset().local_minus_utc())
        .bind(s.in_bed_secs)
        .bind(segments)
        .bind(s.source_day)
        .bind(s.stated.map(|st| serde_json::to_value(st).unwrap_or_default()))
        .execute(&mut *tx)
        .await?;
        new += done.rows_affected() as usize;
    }
    if new > 0 {
        publish_nights(
            &mut tx,
            user.user_id,
            import_id,
            source,
            zone.name(),
            &night_set,
        )
        .await?;
    }
    // The audit event commits with the import it records (ids only).
    common::pubsub::enqueue_audit(
        &mut *tx,
        &AuditRecorded::own(user.user_id, "import.created", FUNCTION, Some(import_id)),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        source = source.as_str(),
        sessions = sessions.len(),
        new,
        "import stored"
    );
    Ok((
        StatusCode::CREATED,
        Json(ImportResult {
            import_id,
            source: source.as_str().into(),
            sessions_in_file: sessions.len(),
            sessions_new: new,
            nights: night_set,
            already_imported: false,
        }),
    )
        .into_response())
}

/// This function's name in the audit trail.
const FUNCTION: &str = "log-ingestion";

/// Longest sleep period accepted from any source.
pub const MAX_PERIOD: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Refuses files with no sleep at all, or with periods no body sleeps (longer than a day,
/// ending before they start): such a file is corrupt or edited, and stored it would skew nights.
pub fn check_plausible(sessions: &[Session]) -> Result<(), ParseError> {
    if sessions.is_empty() {
        return Err(ParseError::new("the file contains no sleep records", None));
    }
    for s in sessions {
        let length = s.end.with_timezone(&Utc) - s.start.with_timezone(&Utc);
        if length < chrono::TimeDelta::zero() || length > MAX_PERIOD {
            return Err(ParseError::new(
                format!(
                    "a sleep period from {} to {} is not plausible (0 to 24 hours)",
                    s.start.to_rfc3339(),
                    s.end.to_rfc3339()
                ),
                Some(format!(
                    "record {}",
                    s.record_ids.first().map(String::as_str).unwrap_or("?")
                )),
            ));
        }
    }
    Ok(())
}

/// Writes `sleep-log.ingested` with the merged nights as they are now into the outbox, in the
/// import's transaction.
async fn publish_nights(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    import_id: Uuid,
    source: Source,
    zone: &str,
    dates: &[NaiveDate],
) -> Result<(), sqlx::Error> {
    let (Some(from), Some(to)) = (dates.first(), dates.last()) else {
        return Ok(());
    };
    let sessions = load_sessions(&mut *tx, user, *from, *to).await?;
    let nights: Vec<NightSummary> = merge::nights(&sessions)
        .into_iter()
        .filter(|n| dates.contains(&n.date))
        .filter_map(|n| {
            let main = n.main?;
            Some(NightSummary {
                night: n.date,
                zone: zone.to_owned(),
                start: main.start,
                end: main.end,
                final_awakening: main.end,
                tib_min: main.tib_min,
                tst_min: main.tst_min,
                sol_min: None,
                waso_min: None,
            })
        })
        .collect();
    if nights.is_empty() {
        return Ok(());
    }
    let event = Event::SleepLogIngested(SleepLogIngested {
        user_id: user,
        import_id,
        source: source.as_str().to_owned(),
        nights,
    });
    common::pubsub::enqueue(tx, &event, None).await?;
    Ok(())
}

/// The night a single session is filed under, by the merge rules.
fn night_of(session: &Session) -> NaiveDate {
    merge::nights(std::slice::from_ref(session))
        .first()
        .map(|n| n.date)
        .unwrap_or_else(|| session.end.date_naive())
}

/// Night range, both inclusive.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NightRange {
    /// First night.
    pub from: NaiveDate,
    /// Last night.
    pub to: NaiveDate,
}

/// Loads a user's stored sessions with nights in `[from, to]`.
pub async fn load_sessions(
    pool: impl sqlx::PgExecutor<'_>,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Session>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT source, device, record_ids, kind, start_at, start_offset, end_at, end_offset, in_bed_secs, segments, source_day, stated \
         FROM sleep_sessions WHERE user_id = $1 AND night BETWEEN $2 AND $3 ORDER BY start_at, source",
    )
    .bind(user)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter().map(session_from_row).collect()
}

/// A stored `sleep_sessions` row (the columns `load_sessions` selects) as the session it was
/// imported as, with the offsets the source gave.
pub fn session_from_row(r: &sqlx::postgres::PgRow) -> Result<Session, sqlx::Error> {
    let at = |utc: DateTime<Utc>, off: i32| {
        utc.with_timezone(
            &FixedOffset::east_opt(off)
                .unwrap_or(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!())),
        )
    };
    let source = match r.try_get::<String, _>("source")?.as_str() {
        "apple_health" => Source::AppleHealth,
        "fitbit" => Source::Fitbit,
        _ => Source::Oura,
    };
    let kind = match r.try_get::<String, _>("kind")?.as_str() {
        "main" => SessionKind::Main,
        "nap" => SessionKind::Nap,
        _ => SessionKind::Rest,
    };
    let segments: Vec<Segment> = serde_json::from_value(r.try_get("segments")?)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Session {
        source,
        device: r.try_get("device")?,
        record_ids: r.try_get("record_ids")?,
        kind,
        start: at(r.try_get("start_at")?, r.try_get("start_offset")?),
        end: at(r.try_get("end_at")?, r.try_get("end_offset")?),
        in_bed_secs: r.try_get("in_bed_secs")?,
        source_day: r.try_get("source_day")?,
        stated: r
            .try_get::<Option<serde_json::Value>, _>("stated")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        segments,
    })
}

/// The caller's merged device nights in `[from, to]`, with naps, rests and provenance.
#[utoipa::path(get, path = "/v1/imports/nights", params(NightRange),
    responses((status = 200, description = "Merged nights, by date"), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
async fn nights(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(range): ApiQuery<NightRange>,
) -> Result<Json<Vec<Night>>, Error> {
    if range.to < range.from {
        return Err(Problem::validation("to", "to is before from").into());
    }
    if (range.to - range.from).num_days() >= 366 {
        return Err(Problem::validation("to", "a range covers at most 366 nights").into());
    }
    let sessions = load_sessions(&state.pool, user.user_id, range.from, range.to).await?;
    if !sessions.is_empty() {
        // One audit event per read that returned data.
        common::pubsub::enqueue_audit(
            &state.pool,
            &AuditRecorded::own(user.user_id, "device-nights.read", FUNCTION, None),
        )
        .await?;
    }
    let nights = merge::nights(&sessions)
        .into_iter()
        .filter(|n| n.date >= range.from && n.date <= range.to)
        .collect();
    Ok(Json(nights))
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
