//! `sleep-diary`: HTTPS API for Consensus Sleep Diary entries (create idempotently, edit within
//! a window, delete, list by night) with per-night metrics. Called by the app through the load
//! balancer at `/v1/sleep-logs`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig, PubSubConfig};
use common::consent::Purpose;
use common::crypto::DataKey;
use common::diary::{DiaryEntry, DiaryInput, LocalInstant, NightMetrics};
use common::error::Problem;
use common::events::{AuditRecorded, Event, NightSummary, SleepLogRecorded};
use common::http::{ApiJson, ApiQuery, AuthUser};
use common::openapi::{ApiRouter, BearerAuth};
use common::pubsub::OutboxRow;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use utoipa::OpenApi;
use uuid::Uuid;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sleep-diary", about = "Sleep diary HTTP service")]
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
    #[command(flatten)]
    pub data_keys: common::crypto::KeyConfig,
    /// Days after creation during which an entry may still be edited (limits retrospective
    /// changes; REFERENCE §2.3, MiNap default 7).
    #[arg(long, env = "DIARY_EDIT_WINDOW_DAYS", default_value_t = 7)]
    pub edit_window_days: u32,
}

/// State built once in `run` and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The connections of the hot path (a new entry), returned without a round trip.
    pub writes: common::db::StatementPool,
    pub keys: Arc<JwtKeys>,
    pub edit_window: chrono::Duration,
    /// The users' data keys; the free-text comment is stored encrypted.
    pub crypto: common::crypto::Keyring,
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
    /// 500: a field could not be encrypted or decrypted; the cause is logged, not returned.
    #[error("crypto: {0}")]
    Crypto(#[from] common::crypto::CryptoError),
}

/// Result of a handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Crypto(common::crypto::CryptoError::Db(e))
                if common::db::is_foreign_key_violation(&e) =>
            {
                // The data key of an account that no longer exists (a valid token after the
                // erasure): nothing was stored.
                Problem::unauthorized().into_response()
            }
            Error::Crypto(e) => {
                tracing::error!(error = %e, "field encryption error");
                Problem::internal().into_response()
            }
            Error::Db(e) if common::db::constraint(&e) == Some("diary_entries_user_night_key") => {
                night_taken().into_response()
            }
            Error::Db(e) if common::db::is_foreign_key_violation(&e) => {
                // A valid token for an account that no longer exists.
                Problem::unauthorized().into_response()
            }
            Error::Db(e) => common::db::problem(&e).into_response(),
        }
    }
}

/// The 409 of an entry for a night the caller already has an entry for.
fn night_taken() -> Problem {
    Problem::new(
        409,
        "night_taken",
        "there is already an entry for this night; edit it instead",
    )
    .with_field("final_awakening")
}

/// Starts the service: connects, serves until SIGTERM/SIGINT, closes the pool.
pub async fn run(config: Config) -> anyhow_like::Result<()> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    let pool = common::db::connect(&config.db).await?;
    let redis = common::cache::Redis::connect(&config.redis)?;
    let guard = common::guard::Guard::new(keys.clone(), redis, config.sessions, &config.guard);
    // A statement of the hot path never outlives its request.
    let writes = common::db::StatementPool::beside(
        &pool,
        Duration::from_secs(config.http.request_timeout_secs),
    );
    let state = AppState {
        pool: pool.clone(),
        writes: writes.clone(),
        keys,
        edit_window: chrono::Duration::days(i64::from(config.edit_window_days)),
        crypto: common::crypto::Keyring::new(pool.clone(), config.data_keys.provider()?),
    };
    let drainer = common::pubsub::Drainer::start(pool.clone(), &config.pubsub);
    let timeout = Duration::from_secs(config.http.request_timeout_secs);
    let app = guarded_app(state, timeout, Some(guard));
    common::http::serve(app, &config.http).await?;
    drainer.stop().await;
    writes.close().await;
    common::db::close(&pool).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A boxed error for start-up failures.
pub mod anyhow_like {
    /// Start-up result.
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

/// The routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .post("/v1/sleep-logs", create)
        .get("/v1/sleep-logs", list)
        .get("/v1/sleep-logs/{id}", get_one)
        .put("/v1/sleep-logs/{id}", update)
        .delete("/v1/sleep-logs/{id}", remove)
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

#[derive(OpenApi)]
#[openapi(
    info(title = "dta-wide sleep-diary", version = "1"),
    paths(create, list, get_one, update, remove, openapi, healthz),
    components(schemas(DiaryInput, EntryView, NightMetrics, Problem, common::diary::NapInput, common::diary::IntakeInput, common::diary::MedicationInput)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// A stored entry as the API returns it; times carry the offset the user was on.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryView {
    pub id: Uuid,
    /// Local date of the final awakening.
    pub night: NaiveDate,
    pub zone: String,
    pub into_bed: String,
    pub lights_out: String,
    pub sol_min: u32,
    pub awakenings: u32,
    pub waso_min: u32,
    pub final_awakening: String,
    pub out_of_bed: String,
    pub quality: Option<u8>,
    pub naps: Vec<common::diary::NapInput>,
    pub caffeine: Vec<common::diary::IntakeInput>,
    pub alcohol: Vec<common::diary::IntakeInput>,
    pub medication: Vec<common::diary::MedicationInput>,
    pub comment: Option<String>,
    pub metrics: NightMetrics,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Night range of a listing, both inclusive.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NightRange {
    /// First night (local date of the final awakening).
    pub from: NaiveDate,
    /// Last night.
    pub to: NaiveDate,
}

/// Longest listing range, so one request stays cheap.
pub const MAX_RANGE_DAYS: i64 = 366;

const SELECT: &str = "SELECT id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
    final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
    tib_min, tst_min, twak_min, se_pct, nap_min, input, comment_ct, created_at, updated_at FROM diary_entries";

/// The AAD of an entry's encrypted comment: the value belongs to this column of this row.
fn comment_context(id: Uuid) -> String {
    common::crypto::field_context("diary_entries", "comment", id)
}

/// The comment of a row: decrypted when stored encrypted, else what older rows kept in `input`.
fn comment_of(
    row: &sqlx::postgres::PgRow,
    key: Option<&DataKey>,
    legacy: Option<String>,
) -> Result<Option<String>> {
    let ct: Option<Vec<u8>> = row.try_get("comment_ct")?;
    match (ct, key) {
        (Some(ct), Some(key)) => Ok(Some(
            key.decrypt_str(&comment_context(row.try_get("id")?), &ct)?,
        )),
        (Some(_), None) => Err(common::crypto::CryptoError::Shredded.into()),
        (None, _) => Ok(legacy),
    }
}

/// The caller's data key when any of `rows` holds an encrypted value.
async fn key_for(
    state: &AppState,
    user: Uuid,
    rows: &[sqlx::postgres::PgRow],
) -> Result<Option<DataKey>> {
    let any = rows
        .iter()
        .any(|r| matches!(r.try_get::<Option<Vec<u8>>, _>("comment_ct"), Ok(Some(_))));
    Ok(if any {
        state.crypto.existing(user).await?
    } else {
        None
    })
}

/// The comment encrypted with the caller's data key (created on first use).
async fn encrypt_comment(
    state: &AppState,
    user: Uuid,
    id: Uuid,
    input: &DiaryInput,
) -> Result<Option<Vec<u8>>> {
    match &input.comment {
        Some(text) => {
            // No data key (nor, in production, a KMS call) for a write the missing consent
            // refuses anyway; the statement that stores checks the consent again.
            common::consent::require(&state.pool, user, Purpose::IntendedUse).await??;
            let key = state.crypto.data_key(user).await?;
            Ok(Some(key.encrypt_str(&comment_context(id), text)?))
        }
        None => Ok(None),
    }
}

fn view(row: &sqlx::postgres::PgRow, key: Option<&DataKey>) -> Result<EntryView> {
    let at = |col: &str, off: &str| -> Result<String> {
        Ok(LocalInstant::from_parts(row.try_get(col)?, row.try_get(off)?).to_rfc3339())
    };
    let input: DiaryInput = serde_json::from_value(row.try_get("input")?)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(EntryView {
        id: row.try_get("id")?,
        night: row.try_get("night")?,
        zone: row.try_get("zone")?,
        into_bed: at("into_bed", "into_bed_offset")?,
        lights_out: at("lights_out", "lights_out_offset")?,
        sol_min: input.sol_min,
        awakenings: input.awakenings,
        waso_min: input.waso_min,
        final_awakening: at("final_awakening", "final_awakening_offset")?,
        out_of_bed: at("out_of_bed", "out_of_bed_offset")?,
        quality: input.quality,
        naps: input.naps,
        caffeine: input.caffeine,
        alcohol: input.alcohol,
        medication: input.medication,
        comment: comment_of(row, key, input.comment)?,
        metrics: NightMetrics {
            tib_min: i64::from(row.try_get::<i32, _>("tib_min")?),
            tst_min: i64::from(row.try_get::<i32, _>("tst_min")?),
            sol_min: i64::from(row.try_get::<i32, _>("sol_min")?),
            waso_min: i64::from(row.try_get::<i32, _>("waso_min")?),
            nwak: i64::from(row.try_get::<i32, _>("awakenings")?),
            twak_min: i64::from(row.try_get::<i32, _>("twak_min")?),
            se_pct: row.try_get("se_pct")?,
            nap_min: i64::from(row.try_get::<i32, _>("nap_min")?),
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn view_of(
    id: Uuid,
    entry: &DiaryEntry,
    input: DiaryInput,
    metrics: NightMetrics,
    created_at: DateTime<Utc>,
) -> EntryView {
    EntryView {
        id,
        night: entry.night(),
        zone: entry.zone.name().to_owned(),
        into_bed: entry.into_bed.to_rfc3339(),
        lights_out: entry.lights_out.to_rfc3339(),
        sol_min: input.sol_min,
        awakenings: input.awakenings,
        waso_min: input.waso_min,
        final_awakening: entry.final_awakening.to_rfc3339(),
        out_of_bed: entry.out_of_bed.to_rfc3339(),
        quality: input.quality,
        naps: input.naps,
        caffeine: input.caffeine,
        alcohol: input.alcohol,
        medication: input.medication,
        comment: input.comment,
        metrics,
        created_at,
        updated_at: created_at,
    }
}

/// The input as stored: the id is the row key, not part of the compared content; the comment
/// is stored encrypted beside it.
fn stored_input(input: &DiaryInput) -> serde_json::Value {
    let mut copy = input.clone();
    copy.id = None;
    copy.comment = None;
    serde_json::to_value(copy).unwrap_or_default()
}

/// Writes `sleep-log.recorded` into the outbox, in the caller's transaction: the event leaves
/// only if the change commits.
async fn publish(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    entry_id: Uuid,
    change: &str,
    entry: Option<&DiaryEntry>,
    revision: DateTime<Utc>,
) -> Result<()> {
    let night = entry.map(DiaryEntry::night).unwrap_or_default();
    enqueue(tx, user, entry_id, change, entry, night, revision).await
}

async fn enqueue(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    entry_id: Uuid,
    change: &str,
    entry: Option<&DiaryEntry>,
    night: NaiveDate,
    revision: DateTime<Utc>,
) -> Result<()> {
    let event = recorded(user, entry_id, change, entry, night, revision);
    // No ordering key: the consumer orders by `revision` and recomputes from all nights, and a
    // failed publish on an ordering key would pause that key in the client.
    common::pubsub::enqueue(tx, &event, None).await?;
    Ok(())
}

/// The `sleep-log.recorded` event of a change.
fn recorded(
    user: Uuid,
    entry_id: Uuid,
    change: &str,
    entry: Option<&DiaryEntry>,
    night: NaiveDate,
    revision: DateTime<Utc>,
) -> Event {
    let summary = entry.map(|e| {
        let m = e.metrics();
        let at = |l: &LocalInstant| l.utc.with_timezone(&l.offset);
        NightSummary {
            night: e.night(),
            zone: e.zone.name().to_owned(),
            start: at(&e.into_bed),
            end: at(&e.out_of_bed),
            final_awakening: at(&e.final_awakening),
            tib_min: m.tib_min,
            tst_min: m.tst_min,
            sol_min: Some(m.sol_min),
            waso_min: Some(m.waso_min),
        }
    });
    Event::SleepLogRecorded(SleepLogRecorded {
        user_id: user,
        entry_id,
        change: change.to_owned(),
        night: summary.as_ref().map_or(night, |s| s.night),
        summary,
        revision,
    })
}

/// Validates an entry, and refuses nights that have not happened yet (a day of slack for
/// clocks and zones).
fn parse_entry(input: &DiaryInput) -> Result<DiaryEntry> {
    let entry = DiaryEntry::parse(input)?;
    if entry.out_of_bed.utc > Utc::now() + chrono::Duration::days(1) {
        return Err(Problem::validation("out_of_bed", "this night lies in the future").into());
    }
    if entry.into_bed.utc.year() < 2000 {
        return Err(Problem::validation("into_bed", "dates before 2000 are not accepted").into());
    }
    Ok(entry)
}

/// This function's name in the audit trail.
const FUNCTION: &str = "sleep-diary";

/// The `audit.recorded` row of the caller's `action` on their entry `object` (`None`: a
/// listing).
fn audit(user: Uuid, action: &str, object: Option<Uuid>) -> OutboxRow {
    OutboxRow::audit(&AuditRecorded::own(user, action, FUNCTION, object))
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Create an entry. Idempotent on the client-supplied `id`: the same body again answers 200
/// with the stored entry; another body under the same id answers 409.
#[utoipa::path(post, path = "/v1/sleep-logs", request_body = DiaryInput,
    responses(
        (status = 201, description = "Created", body = EntryView),
        (status = 200, description = "Same entry sent again; nothing changed", body = EntryView),
        (status = 403, description = "No consent to the intended use (`field` names the purpose)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is already used for other content", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid entry; `field` names the item", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<DiaryInput>,
) -> Result<Response> {
    let id = input
        .id
        .ok_or_else(|| Problem::validation("id", "a client-generated UUID is required"))?;
    let entry = parse_entry(&input)?;
    let m = entry.metrics();
    let stored = stored_input(&input);
    let comment_ct = encrypt_comment(&state, user.user_id, id, &input).await?;
    // The hot path is one statement: the consent check, the row, its outbox event and its audit
    // event commit together in one round trip, on a connection that goes back to its pool
    // without another. No row back means no consent, an id in use or a night taken (any
    // unique key: a concurrent create of the same id may meet the night's key first); the
    // slow path below tells which.
    let created_at = Utc::now();
    let event = recorded(
        user.user_id,
        id,
        "created",
        Some(&entry),
        entry.night(),
        created_at,
    );
    let event_id = Uuid::new_v4();
    let envelope =
        serde_json::to_value(event.to_envelope(event_id, created_at)).unwrap_or_default();
    let audited = audit(user.user_id, "sleep-log.created", Some(id));
    let mut lease = state.writes.lease().await?;
    let inserted = sqlx::query(
        "WITH d AS (INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
         final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
         tib_min, tst_min, twak_min, se_pct, nap_min, input, comment_ct, created_at, updated_at) \
         SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$23 \
         WHERE (SELECT action FROM consent_events WHERE user_id = $2 AND purpose = $27 ORDER BY id DESC LIMIT 1) = 'granted' \
         ON CONFLICT DO NOTHING RETURNING created_at), \
         o AS (INSERT INTO outbox (event_id, topic, payload) SELECT $24, $25, $26 FROM d), \
         a AS (INSERT INTO outbox (event_id, topic, payload) SELECT $28, $29, $30 FROM d) \
         SELECT created_at FROM d",
    )
    .bind(id)
    .bind(user.user_id)
    .bind(entry.night())
    .bind(entry.zone.name())
    .bind(entry.into_bed.utc)
    .bind(entry.into_bed.offset.local_minus_utc())
    .bind(entry.lights_out.utc)
    .bind(entry.lights_out.offset.local_minus_utc())
    .bind(entry.final_awakening.utc)
    .bind(entry.final_awakening.offset.local_minus_utc())
    .bind(entry.out_of_bed.utc)
    .bind(entry.out_of_bed.offset.local_minus_utc())
    .bind(to_i32(m.sol_min))
    .bind(to_i32(m.nwak))
    .bind(to_i32(m.waso_min))
    .bind(to_i32(m.tib_min))
    .bind(to_i32(m.tst_min))
    .bind(to_i32(m.twak_min))
    .bind(m.se_pct)
    .bind(to_i32(m.nap_min))
    .bind(&stored)
    .bind(&comment_ct)
    .bind(created_at)
    .bind(event_id)
    .bind(event.topic())
    .bind(&envelope)
    .bind(Purpose::IntendedUse.as_str())
    .bind(audited.event_id)
    .bind(audited.topic)
    .bind(&audited.payload)
    .fetch_optional(lease.conn())
    .await;
    lease.settle(&inserted);
    if let Some(row) = inserted? {
        let created_at: DateTime<Utc> = row.try_get("created_at")?;
        return Ok((
            StatusCode::CREATED,
            Json(view_of(id, &entry, input, m, created_at)),
        )
            .into_response());
    }
    common::consent::require(&state.pool, user.user_id, Purpose::IntendedUse).await??;
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user.user_id)
        .fetch_optional(&state.pool)
        .await?;
    let conflict =
        || Problem::conflict("this id is already used for another entry; use PUT to edit");
    let Some(row) = row else {
        let night_in_use: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM diary_entries WHERE user_id = $1 AND night = $2)",
        )
        .bind(user.user_id)
        .bind(entry.night())
        .fetch_one(&state.pool)
        .await?;
        return Err(if night_in_use {
            night_taken()
        } else {
            conflict()
        }
        .into());
    };
    let existing: serde_json::Value = row.try_get("input")?;
    let key = key_for(&state, user.user_id, std::slice::from_ref(&row)).await?;
    let existing_view = view(&row, key.as_ref())?;
    if existing == stored && existing_view.comment == input.comment {
        // The repeat answers the stored entry: a read.
        common::pubsub::enqueue_audit(
            &state.pool,
            &AuditRecorded::own(user.user_id, "sleep-log.read", FUNCTION, Some(id)),
        )
        .await?;
        Ok((StatusCode::OK, Json(existing_view)).into_response())
    } else {
        Err(conflict().into())
    }
}

/// List the caller's entries whose night lies in `[from, to]`, ordered by night.
#[utoipa::path(get, path = "/v1/sleep-logs", params(NightRange),
    responses(
        (status = 200, description = "Entries", body = Vec<EntryView>),
        (status = 422, description = "Bad range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(range): ApiQuery<NightRange>,
) -> Result<Json<Vec<EntryView>>> {
    if range.to < range.from {
        return Err(Problem::validation("to", "to is before from").into());
    }
    if (range.to - range.from).num_days() >= MAX_RANGE_DAYS {
        return Err(Problem::validation(
            "to",
            format!("a range covers at most {MAX_RANGE_DAYS} nights"),
        )
        .into());
    }
    // One audit event per listing that returned entries, written by the same statement.
    let audited = audit(user.user_id, "sleep-log.read", None);
    let rows = sqlx::query(&format!(
        "WITH r AS ({SELECT} WHERE user_id = $1 AND night BETWEEN $2 AND $3), \
         a AS (INSERT INTO outbox (event_id, topic, payload) SELECT $4, $5, $6 WHERE EXISTS (SELECT 1 FROM r)) \
         SELECT * FROM r ORDER BY night, into_bed"
    ))
    .bind(user.user_id)
    .bind(range.from)
    .bind(range.to)
    .bind(audited.event_id)
    .bind(audited.topic)
    .bind(&audited.payload)
    .fetch_all(&state.pool)
    .await?;
    let key = key_for(&state, user.user_id, &rows).await?;
    rows.iter()
        .map(|r| view(r, key.as_ref()))
        .collect::<Result<Vec<_>>>()
        .map(Json)
}

/// One of the caller's entries; 404 for ids of other users.
#[utoipa::path(get, path = "/v1/sleep-logs/{id}", params(("id" = Uuid, Path, description = "Entry id")),
    responses(
        (status = 200, description = "Entry", body = EntryView),
        (status = 404, description = "No such entry for this user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<EntryView>> {
    let id = parse_id(&id)?;
    // The audit event is written by the same statement, only when the entry is found.
    let audited = audit(user.user_id, "sleep-log.read", Some(id));
    let row = sqlx::query(&format!(
        "WITH r AS ({SELECT} WHERE id = $1 AND user_id = $2), \
         a AS (INSERT INTO outbox (event_id, topic, payload) SELECT $3, $4, $5 FROM r) \
         SELECT * FROM r"
    ))
    .bind(id)
    .bind(user.user_id)
    .bind(audited.event_id)
    .bind(audited.topic)
    .bind(&audited.payload)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(Problem::not_found)?;
    let key = key_for(&state, user.user_id, std::slice::from_ref(&row)).await?;
    Ok(Json(view(&row, key.as_ref())?))
}

fn parse_id(id: &str) -> Result<Uuid> {
    // A malformed id cannot name anything the caller owns.
    Uuid::parse_str(id).map_err(|_| Problem::not_found().into())
}

/// Replace one of the caller's entries, within the edit window.
#[utoipa::path(put, path = "/v1/sleep-logs/{id}", params(("id" = Uuid, Path, description = "Entry id")), request_body = DiaryInput,
    responses(
        (status = 200, description = "Updated", body = EntryView),
        (status = 403, description = "No consent to the intended use (`field` names the purpose)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry for this user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Edit window closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid entry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<DiaryInput>,
) -> Result<Json<EntryView>> {
    let id = parse_id(&id)?;
    if input.id.is_some_and(|body_id| body_id != id) {
        return Err(Problem::validation("id", "the id in the body differs from the path").into());
    }
    let entry = parse_entry(&input)?;
    let m = entry.metrics();
    common::consent::require(&state.pool, user.user_id, Purpose::IntendedUse).await??;
    let comment_ct = encrypt_comment(&state, user.user_id, id, &input).await?;
    let mut tx = state.pool.begin().await?;
    let created: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT created_at FROM diary_entries WHERE id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let created = created.ok_or_else(Problem::not_found)?;
    if Utc::now() - created > state.edit_window {
        return Err(Problem::new(
            409,
            "edit_window_closed",
            format!(
                "entries can be edited for {} days after they were created",
                state.edit_window.num_days()
            ),
        )
        .into());
    }
    sqlx::query(
        "UPDATE diary_entries SET night=$3, zone=$4, into_bed=$5, into_bed_offset=$6, lights_out=$7, lights_out_offset=$8, \
         final_awakening=$9, final_awakening_offset=$10, out_of_bed=$11, out_of_bed_offset=$12, sol_min=$13, awakenings=$14, \
         waso_min=$15, tib_min=$16, tst_min=$17, twak_min=$18, se_pct=$19, nap_min=$20, input=$21, comment_ct=$22, updated_at=now() \
         WHERE id=$1 AND user_id=$2",
    )
    .bind(id)
    .bind(user.user_id)
    .bind(entry.night())
    .bind(entry.zone.name())
    .bind(entry.into_bed.utc)
    .bind(entry.into_bed.offset.local_minus_utc())
    .bind(entry.lights_out.utc)
    .bind(entry.lights_out.offset.local_minus_utc())
    .bind(entry.final_awakening.utc)
    .bind(entry.final_awakening.offset.local_minus_utc())
    .bind(entry.out_of_bed.utc)
    .bind(entry.out_of_bed.offset.local_minus_utc())
    .bind(to_i32(m.sol_min))
    .bind(to_i32(m.nwak))
    .bind(to_i32(m.waso_min))
    .bind(to_i32(m.tib_min))
    .bind(to_i32(m.tst_min))
    .bind(to_i32(m.twak_min))
    .bind(m.se_pct)
    .bind(to_i32(m.nap_min))
    .bind(stored_input(&input))
    .bind(&comment_ct)
    .execute(&mut *tx)
    .await?;
    publish(
        &mut tx,
        user.user_id,
        id,
        "updated",
        Some(&entry),
        Utc::now(),
    )
    .await?;
    common::pubsub::enqueue_audit(
        &mut *tx,
        &AuditRecorded::own(user.user_id, "sleep-log.updated", FUNCTION, Some(id)),
    )
    .await?;
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let key = key_for(&state, user.user_id, std::slice::from_ref(&row)).await?;
    Ok(Json(view(&row, key.as_ref())?))
}

/// Delete one of the caller's entries.
#[utoipa::path(delete, path = "/v1/sleep-logs/{id}", params(("id" = Uuid, Path, description = "Entry id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry for this user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let night: Option<NaiveDate> = sqlx::query_scalar(
        "DELETE FROM diary_entries WHERE id = $1 AND user_id = $2 RETURNING night",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let night = night.ok_or_else(Problem::not_found)?;
    enqueue(
        &mut tx,
        user.user_id,
        id,
        "deleted",
        None,
        night,
        Utc::now(),
    )
    .await?;
    common::pubsub::enqueue_audit(
        &mut *tx,
        &AuditRecorded::own(user.user_id, "sleep-log.deleted", FUNCTION, Some(id)),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
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
