//! `questionnaire-scoring`: HTTPS API for the validated questionnaires (ISI, PSQI, ESS,
//! DBAS-16, PHQ-9, GAD-7, WHO-5): definitions as FHIR `Questionnaire`, submission as plain
//! answers or a FHIR `QuestionnaireResponse`, versioned scoring, history, re-scoring and the
//! score as a FHIR `Observation`. Called by the app through the load balancer at
//! `/v1/questionnaires` and `/v1/questionnaire-responses`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use common::auth::JwtKeys;
use common::config::{DbConfig, HttpConfig, JwtConfig, PlatformConfig, PubSubConfig};
use common::error::Problem;
use common::events::{AuditRecorded, Event, QuestionnaireScored, SafetyFlagged};
use common::http::{ApiJson, ApiQuery, AuthUser};
use common::openapi::{ApiRouter, BearerAuth};
use common::questionnaire::{
    self, Answers, BandRef, Component, Definition, Flag, FlagKind, Instrument, Score, fhir,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use utoipa::OpenApi;
use uuid::Uuid;

/// Media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Longest history one request returns.
pub const MAX_HISTORY: i64 = 500;
/// Clock skew tolerated on `authored` before it counts as in the future.
const AUTHORED_SKEW_SECS: i64 = 300;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "questionnaire-scoring",
    about = "Questionnaire scoring HTTP service"
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
    /// 4xx: returned to the client as it is (422 names the item).
    #[error(transparent)]
    Client(#[from] Problem),
    /// 503 when the database is unreachable, else 500; the cause is logged, not returned.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// 500: a stored row no longer reads back (the cause is logged).
    #[error("stored data: {0}")]
    Stored(String),
}

/// Result of a handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::Db(e) => common::db::problem(&e).into_response(),
            Error::Stored(e) => {
                tracing::error!(error = %e, "stored questionnaire data unreadable");
                Problem::internal().into_response()
            }
        }
    }
}

/// Starts the service: connects, serves until SIGTERM/SIGINT, closes the pool.
pub async fn run(
    config: Config,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = Arc::new(JwtKeys::load(&config.jwt, &config.jwt_files)?);
    let pool = common::db::connect(&config.db).await?;
    let redis = common::cache::Redis::connect(&config.redis)?;
    let guard = common::guard::Guard::new(keys.clone(), redis, config.sessions, &config.guard);
    let state = AppState {
        pool: pool.clone(),
        keys,
    };
    let app = guarded_app(
        state,
        Duration::from_secs(config.http.request_timeout_secs),
        Some(guard),
    );
    let drainer = common::pubsub::Drainer::start(pool.clone(), &config.pubsub);
    common::http::serve(app, &config.http).await?;
    drainer.stop().await;
    common::db::close(&pool).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The routes, documented in [`ApiDoc`].
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .get("/v1/questionnaires", list_questionnaires)
        .get("/v1/questionnaires/{id}", get_questionnaire)
        .get("/v1/questionnaires/code-systems/{id}", get_code_system)
        .post("/v1/questionnaire-responses", submit)
        .get("/v1/questionnaire-responses", history)
        .get("/v1/questionnaire-responses/{id}", get_response)
        .get("/v1/questionnaire-responses/{id}/fhir", get_response_fhir)
        .get(
            "/v1/questionnaire-responses/{id}/observation",
            get_observation,
        )
        .post("/v1/questionnaire-responses/{id}/rescore", rescore)
        .get("/openapi.json", openapi)
        .get("/healthz", healthz)
}

/// The service with the platform layers.
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
    info(title = "dta-wide questionnaire-scoring", version = "1"),
    paths(list_questionnaires, get_questionnaire, get_code_system, submit, history, get_response,
        get_response_fhir, get_observation, rescore, openapi, healthz),
    components(schemas(Submission, ResponseView, ScoreRecord, Score, BandRef, Component, Flag, FlagKind, Instrument, Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// A submission in the plain form. A FHIR `QuestionnaireResponse` (with `resourceType`) is
/// accepted in its place; its `id`, if a UUID, plays the part of `id` here.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Submission {
    /// Client-generated id; sending the same id and answers again changes nothing.
    pub id: Option<Uuid>,
    /// What was answered: a questionnaire id (`isi-1`), an instrument (`isi`, its current
    /// version) or a canonical URL (`https://dta-wide.de/fhir/Questionnaire/isi|1`).
    pub questionnaire: String,
    /// When the patient answered (RFC 3339); now if absent.
    pub authored: Option<DateTime<Utc>>,
    /// `{ linkId: value }`: choice items take the option's ordinal value, times `"HH:MM"`,
    /// numbers a JSON number, free text a string; `null` or absent means unanswered.
    #[schema(value_type = Object)]
    pub answers: Value,
}

/// One score of a response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoreRecord {
    pub id: Uuid,
    pub scored_at: DateTime<Utc>,
    /// `false` once a re-score with a newer algorithm superseded it.
    pub current: bool,
    pub score: Score,
}

/// A stored response with its current score (and, for one response, the earlier ones).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseView {
    pub id: Uuid,
    pub instrument: Instrument,
    /// Questionnaire id and version answered.
    pub questionnaire: String,
    pub authored: DateTime<Utc>,
    /// The validated answers `{ linkId: value }`.
    #[schema(value_type = Object)]
    pub answers: Value,
    pub score: ScoreRecord,
    /// Superseded scores, newest first (only on `GET /v1/questionnaire-responses/{id}` and
    /// after a re-score).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_scores: Vec<ScoreRecord>,
}

/// History filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this instrument (`isi`, `psqi`, `ess`, `dbas-16`, `phq-9`, `gad-7`, `who-5`).
    pub instrument: Option<String>,
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<String>,
}

fn fhir_response(status: StatusCode, resource: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        resource.to_string(),
    )
        .into_response()
}

fn parse_id(id: &str) -> Result<Uuid> {
    // A malformed id cannot name anything the caller owns.
    Uuid::parse_str(id).map_err(|_| Problem::not_found().into())
}

fn subject(user: Uuid) -> String {
    format!("Patient/{user}")
}

/// All published questionnaires as a FHIR `searchset` Bundle.
#[utoipa::path(get, path = "/v1/questionnaires",
    responses((status = 200, description = "FHIR Bundle of Questionnaire resources", content_type = "application/fhir+json")),
    security(("bearer" = [])))]
async fn list_questionnaires(_user: AuthUser) -> Response {
    let entries: Vec<Value> = questionnaire::DEFINITIONS
        .iter()
        .map(|d| json!({ "fullUrl": d.url(), "resource": fhir::questionnaire(d) }))
        .collect();
    fhir_response(
        StatusCode::OK,
        json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries }),
    )
}

/// One questionnaire version as a FHIR `Questionnaire`.
#[utoipa::path(get, path = "/v1/questionnaires/{id}", params(("id" = String, Path, description = "Questionnaire id, e.g. isi-1")),
    responses(
        (status = 200, description = "FHIR Questionnaire", content_type = "application/fhir+json"),
        (status = 404, description = "No such questionnaire", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_questionnaire(_user: AuthUser, Path(id): Path<String>) -> Result<Response> {
    let definition = questionnaire::definition(&id).ok_or_else(Problem::not_found)?;
    Ok(fhir_response(
        StatusCode::OK,
        fhir::questionnaire(definition),
    ))
}

/// One of our CodeSystems: `score-codes`, `score-flags` or `{instrument}-answers`.
#[utoipa::path(get, path = "/v1/questionnaires/code-systems/{id}", params(("id" = String, Path, description = "CodeSystem id")),
    responses(
        (status = 200, description = "FHIR CodeSystem", content_type = "application/fhir+json"),
        (status = 404, description = "No such CodeSystem", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_code_system(_user: AuthUser, Path(id): Path<String>) -> Result<Response> {
    let resource = match id.as_str() {
        "score-codes" => fhir::score_code_system(),
        "score-flags" => fhir::flag_code_system(),
        other => {
            let definition = other
                .strip_suffix("-answers")
                .and_then(|name| Instrument::ALL.into_iter().find(|i| i.as_str() == name))
                .map(questionnaire::current)
                .ok_or_else(Problem::not_found)?;
            fhir::answer_code_system(definition)
        }
    };
    Ok(fhir_response(StatusCode::OK, resource))
}

/// What a submission resolves to before it is stored.
struct Parsed {
    id: Uuid,
    authored: DateTime<Utc>,
    answers: Answers,
}

fn resolve_questionnaire(reference: &str) -> Result<&'static Definition> {
    if let Some(d) = questionnaire::definition(reference) {
        return Ok(d);
    }
    if let Some(i) = Instrument::ALL
        .into_iter()
        .find(|i| i.as_str() == reference)
    {
        return Ok(questionnaire::current(i));
    }
    Ok(questionnaire::by_canonical("questionnaire", reference)?)
}

fn parse_authored(field: &str, value: &Value) -> Result<DateTime<Utc>> {
    let at = value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| {
            Problem::validation(field, "authored must be an RFC 3339 date-time with offset")
        })?
        .with_timezone(&Utc);
    if at > Utc::now() + chrono::Duration::seconds(AUTHORED_SKEW_SECS) {
        return Err(Problem::validation(field, "authored is in the future").into());
    }
    Ok(at)
}

fn parse_submission(body: &Value) -> Result<Parsed> {
    let Value::Object(map) = body else {
        return Err(Problem::validation("body", "the body must be a JSON object").into());
    };
    if map.contains_key("resourceType") {
        let answers = fhir::parse_questionnaire_response(body)?;
        let id = map
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let authored = match map.get("authored") {
            Some(v) => parse_authored("authored", v)?,
            None => Utc::now(),
        };
        return Ok(Parsed {
            id: id.unwrap_or_else(Uuid::new_v4),
            authored,
            answers,
        });
    }
    if let Some(key) = map
        .keys()
        .find(|k| !["id", "questionnaire", "authored", "answers"].contains(&k.as_str()))
    {
        return Err(Problem::validation(key.as_str(), format!("unknown field {key:?}")).into());
    }
    let id = match map.get("id") {
        None | Some(Value::Null) => Uuid::new_v4(),
        Some(v) => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| Problem::validation("id", "id must be a UUID"))?,
    };
    let reference = map
        .get("questionnaire")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Problem::validation(
                "questionnaire",
                "questionnaire is required: e.g. \"isi-1\" or \"isi\"",
            )
        })?;
    let definition = resolve_questionnaire(reference)?;
    let answers = map
        .get("answers")
        .ok_or_else(|| Problem::validation("answers", "answers is required: { linkId: value }"))?;
    let answers = Answers::from_json(definition, answers)?;
    let authored = match map.get("authored") {
        None | Some(Value::Null) => Utc::now(),
        Some(v) => parse_authored("authored", v)?,
    };
    Ok(Parsed {
        id,
        authored,
        answers,
    })
}

const VIEW: &str = "SELECT r.id, r.instrument, r.questionnaire, r.answers, r.authored_at, \
    s.id AS score_id, s.algorithm, s.total_code, s.total, s.band, s.band_display, s.components, s.flags, s.current, s.scored_at \
    FROM questionnaire_responses r JOIN questionnaire_scores s ON s.response_id = r.id";

fn stored<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> Result<T> {
    serde_json::from_value(row.try_get(col)?).map_err(|e| Error::Stored(format!("{col}: {e}")))
}

fn score_of(row: &PgRow, instrument: Instrument, questionnaire: &str) -> Result<ScoreRecord> {
    let band: Option<String> = row.try_get("band")?;
    let band_display: Option<String> = row.try_get("band_display")?;
    Ok(ScoreRecord {
        id: row.try_get("score_id")?,
        scored_at: row.try_get("scored_at")?,
        current: row.try_get("current")?,
        score: Score {
            instrument,
            questionnaire: questionnaire.to_owned(),
            algorithm: row.try_get("algorithm")?,
            total_code: row.try_get("total_code")?,
            total: row.try_get("total")?,
            band: band.map(|code| BandRef {
                code,
                display: band_display.unwrap_or_default(),
            }),
            components: stored(row, "components")?,
            flags: stored(row, "flags")?,
        },
    })
}

fn view_of(row: &PgRow) -> Result<ResponseView> {
    let instrument: String = row.try_get("instrument")?;
    let instrument = Instrument::ALL
        .into_iter()
        .find(|i| i.as_str() == instrument)
        .ok_or_else(|| Error::Stored(format!("instrument {instrument}")))?;
    let questionnaire: String = row.try_get("questionnaire")?;
    Ok(ResponseView {
        id: row.try_get("id")?,
        instrument,
        score: score_of(row, instrument, &questionnaire)?,
        questionnaire,
        authored: row.try_get("authored_at")?,
        answers: row.try_get("answers")?,
        previous_scores: Vec::new(),
    })
}

fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The events a new score publishes through the outbox, as `[{id, topic, envelope}]` for the
/// submit statement: `questionnaire.scored`, and `safety.flagged` per safety flag.
fn events_of(user: Uuid, response_id: Uuid, score_id: Uuid, score: &Score) -> Value {
    let mut events = vec![Event::QuestionnaireScored(QuestionnaireScored {
        user_id: user,
        response_id,
        score_id,
        instrument: score.instrument.as_str().to_owned(),
        algorithm: score.algorithm.clone(),
        total: score.total,
        band: score.band.as_ref().map(|b| b.code.clone()),
    })];
    for f in score
        .flags
        .iter()
        .filter(|f| f.kind == common::questionnaire::FlagKind::Safety)
    {
        events.push(Event::SafetyFlagged(SafetyFlagged {
            user_id: user,
            response_id,
            score_id,
            flag: f.code.clone(),
            item: f.item.clone(),
        }));
    }
    // The audit event travels in the same outbox insert, so it commits with the response.
    events.push(Event::AuditRecorded(AuditRecorded::own(
        user,
        "questionnaire-response.created",
        FUNCTION,
        Some(response_id),
    )));
    Value::Array(
        events
            .iter()
            .map(|e| {
                let row = common::pubsub::OutboxRow::of(e);
                serde_json::json!({"id": row.event_id, "topic": row.topic, "envelope": row.payload})
            })
            .collect(),
    )
}

/// This function's name in the audit trail.
const FUNCTION: &str = "questionnaire-scoring";

/// Records that the caller read their response `object` (`None`: a listing); one event per
/// request.
async fn audit_read(pool: &PgPool, user: Uuid, object: Option<Uuid>) -> Result<()> {
    common::pubsub::enqueue_audit(
        pool,
        &AuditRecorded::own(user, "questionnaire-response.read", FUNCTION, object),
    )
    .await?;
    Ok(())
}

/// Inserts a score (and its safety events) for a stored response, in one statement.
async fn insert_score<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    response_id: Uuid,
    user: Uuid,
    score: &Score,
) -> Result<(Uuid, DateTime<Utc>)> {
    let score_id = Uuid::new_v4();
    let row = sqlx::query(
        "WITH s AS (INSERT INTO questionnaire_scores \
           (id, response_id, user_id, algorithm, total_code, total, band, band_display, components, flags) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id, scored_at), \
         e AS (INSERT INTO safety_events (user_id, response_id, score_id, flag, item, detail) \
           SELECT $3, $2, s.id, f->>'code', f->>'item', f->>'detail' FROM s, jsonb_array_elements($10) f \
           WHERE f->>'kind' = 'safety' ON CONFLICT (response_id, flag) DO NOTHING) \
         SELECT scored_at FROM s",
    )
    .bind(score_id)
    .bind(response_id)
    .bind(user)
    .bind(&score.algorithm)
    .bind(&score.total_code)
    .bind(score.total)
    .bind(score.band.as_ref().map(|b| b.code.as_str()))
    .bind(score.band.as_ref().map(|b| b.display.as_str()))
    .bind(json_of(&score.components))
    .bind(json_of(&score.flags))
    .fetch_one(db)
    .await?;
    Ok((score_id, row.try_get("scored_at")?))
}

/// Submit answers (plain or FHIR) and get the score. Idempotent on `id`: the same answers
/// again answer 200 with the stored result; other answers under the same id answer 409.
/// A PHQ-9 item 9 above 0 also records a safety event for clinician follow-up.
#[utoipa::path(post, path = "/v1/questionnaire-responses",
    request_body(content = Submission, description = "Plain answers, or a FHIR QuestionnaireResponse"),
    responses(
        (status = 201, description = "Stored and scored", body = ResponseView),
        (status = 200, description = "Same response sent again; nothing changed", body = ResponseView),
        (status = 403, description = "No consent to the intended use (`field` names the purpose)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is already used for other answers", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid answers; `field` names the item", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let parsed = parse_submission(&body)?;
    let definition = parsed.answers.definition();
    let score = definition.score(&parsed.answers)?;
    let answers = parsed.answers.to_json();
    common::consent::require(
        &state.pool,
        user.user_id,
        common::consent::Purpose::IntendedUse,
    )
    .await??;
    // One statement, so response, score and safety events commit together in one round trip;
    // no row back means the id exists already.
    let score_id = Uuid::new_v4();
    let inserted = sqlx::query(
        "WITH r AS (INSERT INTO questionnaire_responses (id, user_id, instrument, questionnaire, answers, authored_at) \
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id), \
         s AS (INSERT INTO questionnaire_scores \
           (id, response_id, user_id, algorithm, total_code, total, band, band_display, components, flags) \
           SELECT $7, r.id, $2, $8, $9, $10, $11, $12, $13, $14 FROM r RETURNING id, scored_at), \
         e AS (INSERT INTO safety_events (user_id, response_id, score_id, flag, item, detail) \
           SELECT $2, $1, s.id, f->>'code', f->>'item', f->>'detail' FROM s, jsonb_array_elements($14) f \
           WHERE f->>'kind' = 'safety'), \
         o AS (INSERT INTO outbox (event_id, topic, payload) \
           SELECT (ev->>'id')::uuid, ev->>'topic', ev->'envelope' FROM s, jsonb_array_elements($15) ev) \
         SELECT scored_at FROM s",
    )
    .bind(parsed.id)
    .bind(user.user_id)
    .bind(definition.instrument.as_str())
    .bind(definition.id)
    .bind(&answers)
    .bind(parsed.authored)
    .bind(score_id)
    .bind(&score.algorithm)
    .bind(&score.total_code)
    .bind(score.total)
    .bind(score.band.as_ref().map(|b| b.code.as_str()))
    .bind(score.band.as_ref().map(|b| b.display.as_str()))
    .bind(json_of(&score.components))
    .bind(json_of(&score.flags))
    .bind(events_of(user.user_id, parsed.id, score_id, &score))
    .fetch_optional(&state.pool)
    .await?;
    let Some(inserted) = inserted else {
        let row = sqlx::query(&format!(
            "{VIEW} WHERE r.id = $1 AND r.user_id = $2 AND s.current"
        ))
        .bind(parsed.id)
        .bind(user.user_id)
        .fetch_optional(&state.pool)
        .await?;
        let conflict = || Problem::conflict("this id is already used for another response");
        let view = view_of(&row.ok_or_else(conflict)?)?;
        if view.questionnaire == definition.id && view.answers == answers {
            audit_read(&state.pool, user.user_id, Some(parsed.id)).await?;
            return Ok((StatusCode::OK, Json(view)).into_response());
        }
        return Err(conflict().into());
    };
    let scored_at: DateTime<Utc> = inserted.try_get("scored_at")?;
    if score.needs_safety_follow_up() {
        // Ids only: the answers are health data and stay out of the log.
        tracing::warn!(response_id = %parsed.id, "safety event recorded for clinician follow-up");
    }
    let view = ResponseView {
        id: parsed.id,
        instrument: definition.instrument,
        questionnaire: definition.id.to_owned(),
        authored: parsed.authored,
        answers,
        score: ScoreRecord {
            id: score_id,
            scored_at,
            current: true,
            score,
        },
        previous_scores: Vec::new(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The caller's responses, newest first, with their current scores.
#[utoipa::path(get, path = "/v1/questionnaire-responses", params(HistoryQuery),
    responses(
        (status = 200, description = "Responses", body = Vec<ResponseView>),
        (status = 422, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<ResponseView>>> {
    let instrument = query
        .instrument
        .as_deref()
        .map(|s| Instrument::parse("instrument", s))
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY).contains(n))
            .ok_or_else(|| {
                Problem::validation("limit", format!("limit must be 1–{MAX_HISTORY}"))
            })?,
    };
    let rows = sqlx::query(&format!(
        "{VIEW} WHERE r.user_id = $1 AND s.current AND ($2::text IS NULL OR r.instrument = $2) \
         ORDER BY r.authored_at DESC, r.created_at DESC LIMIT $3"
    ))
    .bind(user.user_id)
    .bind(instrument.map(Instrument::as_str))
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    if !rows.is_empty() {
        audit_read(&state.pool, user.user_id, None).await?;
    }
    rows.iter()
        .map(view_of)
        .collect::<Result<Vec<_>>>()
        .map(Json)
}

/// The response with all its scores (current first, then superseded ones newest first).
async fn load(pool: &PgPool, user: Uuid, id: Uuid) -> Result<ResponseView> {
    let rows = sqlx::query(&format!(
        "{VIEW} WHERE r.id = $1 AND r.user_id = $2 ORDER BY s.current DESC, s.scored_at DESC"
    ))
    .bind(id)
    .bind(user)
    .fetch_all(pool)
    .await?;
    let (first, rest) = rows.split_first().ok_or_else(Problem::not_found)?;
    let mut view = view_of(first)?;
    for row in rest {
        view.previous_scores
            .push(score_of(row, view.instrument, &view.questionnaire)?);
    }
    Ok(view)
}

/// One of the caller's responses with its current and earlier scores; 404 for other users'.
#[utoipa::path(get, path = "/v1/questionnaire-responses/{id}", params(("id" = Uuid, Path, description = "Response id")),
    responses(
        (status = 200, description = "Response", body = ResponseView),
        (status = 404, description = "No such response for this user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_response(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ResponseView>> {
    let id = parse_id(&id)?;
    let view = load(&state.pool, user.user_id, id).await?;
    audit_read(&state.pool, user.user_id, Some(id)).await?;
    Ok(Json(view))
}

fn stored_answers(view: &ResponseView) -> Result<Answers> {
    let definition = questionnaire::definition(&view.questionnaire).ok_or_else(|| {
        Error::Stored(format!(
            "questionnaire {} no longer published",
            view.questionnaire
        ))
    })?;
    Answers::from_json(definition, &view.answers).map_err(|p| Error::Stored(p.to_string()))
}

/// The response as a FHIR `QuestionnaireResponse`.
#[utoipa::path(get, path = "/v1/questionnaire-responses/{id}/fhir", params(("id" = Uuid, Path, description = "Response id")),
    responses(
        (status = 200, description = "FHIR QuestionnaireResponse", content_type = "application/fhir+json"),
        (status = 404, description = "No such response for this user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_response_fhir(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let view = load(&state.pool, user.user_id, id).await?;
    audit_read(&state.pool, user.user_id, Some(id)).await?;
    let answers = stored_answers(&view)?;
    let resource = fhir::questionnaire_response(
        &answers,
        &view.id.to_string(),
        &subject(user.user_id),
        view.authored,
    );
    Ok(fhir_response(StatusCode::OK, resource))
}

/// The current score as a FHIR `Observation` derived from the response.
#[utoipa::path(get, path = "/v1/questionnaire-responses/{id}/observation", params(("id" = Uuid, Path, description = "Response id")),
    responses(
        (status = 200, description = "FHIR Observation", content_type = "application/fhir+json"),
        (status = 404, description = "No such response for this user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_observation(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let view = load(&state.pool, user.user_id, id).await?;
    audit_read(&state.pool, user.user_id, Some(id)).await?;
    let resource = fhir::observation(
        &view.score.score,
        &view.score.id.to_string(),
        &view.id.to_string(),
        &subject(user.user_id),
        view.authored,
    );
    Ok(fhir_response(StatusCode::OK, resource))
}

/// Score the stored answers again with the algorithm now in force. The earlier score is kept
/// (as superseded); when the algorithm version has not changed nothing is added.
#[utoipa::path(post, path = "/v1/questionnaire-responses/{id}/rescore", params(("id" = Uuid, Path, description = "Response id")),
    responses(
        (status = 201, description = "Re-scored; the earlier score is in previous_scores", body = ResponseView),
        (status = 200, description = "The current score already uses the current algorithm", body = ResponseView),
        (status = 404, description = "No such response for this user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stored answers cannot be scored by the current rules", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn rescore(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let locked = sqlx::query(
        "SELECT id FROM questionnaire_responses WHERE id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    locked.ok_or_else(Problem::not_found)?;
    let view = load(&state.pool, user.user_id, id).await?;
    let answers = stored_answers(&view)?;
    let definition = answers.definition();
    if view.score.score.algorithm == definition.algorithm {
        tx.rollback().await?;
        audit_read(&state.pool, user.user_id, Some(id)).await?;
        return Ok((StatusCode::OK, Json(view)).into_response());
    }
    let score = questionnaire::rescore(&answers).map_err(|p| {
        Problem::conflict(format!(
            "the stored answers cannot be scored by {}: {}",
            definition.algorithm, p.detail
        ))
    })?;
    sqlx::query(
        "UPDATE questionnaire_scores SET current = false WHERE response_id = $1 AND current",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    insert_score(&mut *tx, id, user.user_id, &score).await?;
    common::pubsub::enqueue_audit(
        &mut *tx,
        &AuditRecorded::own(
            user.user_id,
            "questionnaire-response.rescored",
            FUNCTION,
            Some(id),
        ),
    )
    .await?;
    tx.commit().await?;
    let view = load(&state.pool, user.user_id, id).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
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
