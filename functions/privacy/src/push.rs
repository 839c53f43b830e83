//! Pub/Sub push endpoint of the audit subscription: every `audit.recorded` event the other
//! functions publish is appended to the hash-chained audit trail, once per event id. The
//! endpoint verifies the Google-signed OIDC token of the push subscription like the
//! sleep-analysis subscriber does and sits outside the session guard (the bearer there is
//! Google's, not ours).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::error::Problem;
use common::events::{AuditRecorded, Event};
use common::openapi::ApiRouter;
use common::pubsub::{OidcVerifier, PushError, parse_push};
use sqlx::PgPool;
use tracing::Instrument;

/// Path of the push endpoint (the subscription's `pushEndpoint` ends in it).
pub const PATH: &str = "/pubsub/audit";

/// Push verification settings, from the environment (the same names as sleep-analysis).
#[derive(Debug, Clone, clap::Args)]
pub struct PushConfig {
    /// Accept pushes without a Google-signed OIDC token. Only for local runs: production
    /// verifies the token's audience and service account.
    #[arg(long, env = "PUSH_AUTH_DISABLED", default_value_t = false)]
    pub push_auth_disabled: bool,
    /// Expected `aud` of push tokens (the audience set on the push subscription).
    #[arg(long, env = "PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// Service account the push subscription signs its tokens as.
    #[arg(long, env = "PUSH_SERVICE_ACCOUNT")]
    pub push_service_account: Option<String>,
}

/// State of the push route.
#[derive(Clone)]
pub struct PushState {
    pub pool: PgPool,
    /// Verifies the push subscription's OIDC token; `None` only for local runs.
    pub verifier: Option<Arc<OidcVerifier>>,
}

impl PushState {
    /// From the configuration; refuses to start without verification settings unless
    /// verification is explicitly off.
    pub fn from_config(pool: PgPool, config: &PushConfig) -> Result<Self, String> {
        let verifier = if config.push_auth_disabled {
            tracing::warn!("push OIDC verification is off (local run)");
            None
        } else {
            let (Some(aud), Some(sa)) = (&config.push_audience, &config.push_service_account)
            else {
                return Err("set PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT (or PUSH_AUTH_DISABLED=true for local runs)".into());
            };
            Some(Arc::new(OidcVerifier::google(aud.clone(), sa.clone())))
        };
        Ok(Self { pool, verifier })
    }
}

/// The push route.
pub fn routes() -> ApiRouter<PushState> {
    ApiRouter::new().post(PATH, push)
}

/// Outcome of one push, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Appended to the trail.
    Appended,
    /// This event id is in the trail already (a redelivery).
    Duplicate,
    /// Can never succeed; acknowledged and recorded in `undeliverable_events`.
    Undeliverable,
}

/// A failure of the push route: 4xx as given, 503 on a database failure so Pub/Sub redelivers.
#[derive(Debug)]
pub enum PushFailure {
    Client(Problem),
    Db(sqlx::Error),
}

impl From<Problem> for PushFailure {
    fn from(p: Problem) -> Self {
        Self::Client(p)
    }
}

impl From<sqlx::Error> for PushFailure {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl IntoResponse for PushFailure {
    fn into_response(self) -> Response {
        match self {
            Self::Client(p) => p.into_response(),
            Self::Db(e) => {
                tracing::error!(error = %e, "database error");
                Problem::unavailable().into_response()
            }
        }
    }
}

/// Pub/Sub push endpoint of the audit subscription: appends each `audit.recorded` event to
/// the audit trail, once per event id. 204 acknowledges (appended, duplicate or undeliverable);
/// 401 refuses a push without a valid token of the subscription's service account; 400
/// refuses a body that is not a push envelope; 503 asks Pub/Sub to redeliver.
#[utoipa::path(post, path = "/pubsub/audit", request_body(content = String, description = "Pub/Sub push envelope carrying an `audit.recorded` v1 event", content_type = "application/json"),
    responses((status = 204, description = "Acknowledged"),
              (status = 400, body = Problem, content_type = "application/problem+json", description = "Not a push envelope"),
              (status = 401, body = Problem, content_type = "application/problem+json", description = "No valid OIDC token of the push subscription"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "Transient failure; redeliver")))]
pub async fn push(State(state): State<PushState>, req: Request) -> Result<StatusCode, PushFailure> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    common::pubsub::OidcVerifier::authorize_push(state.verifier.as_deref(), authorization).await?;
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
            tracing::warn!(message_id = %id, reason = %why, "undeliverable audit message acknowledged");
            record_undeliverable(&state.pool, &id, &why).await?;
            return Ok(StatusCode::NO_CONTENT);
        }
    };
    let span = tracing::info_span!(
        "push",
        message_id = %msg.message_id,
        delivery_attempt = msg.delivery_attempt.unwrap_or(0),
        subscription = %msg.subscription,
    );
    let outcome = handle(&state.pool, &msg.message_id, &msg.data)
        .instrument(span.clone())
        .await?;
    span.in_scope(|| tracing::info!(outcome = ?outcome, "push handled"));
    Ok(StatusCode::NO_CONTENT)
}

/// Appends one message's event; malformed events are acknowledged and recorded with the
/// reason (never their content: a malformed event might carry what it must not).
pub async fn handle(pool: &PgPool, message_id: &str, data: &[u8]) -> sqlx::Result<Outcome> {
    let why = match Event::from_json(data) {
        Ok((envelope, Event::AuditRecorded(event))) => match check(&event) {
            Ok(()) => {
                let mut tx = pool.begin().await?;
                let fresh = crate::audit::append_recorded(&mut tx, envelope.id, &event).await?;
                tx.commit().await?;
                return Ok(if fresh {
                    Outcome::Appended
                } else {
                    tracing::info!(event_id = %envelope.id, "audit event delivered again; kept once");
                    Outcome::Duplicate
                });
            }
            Err(why) => why,
        },
        Ok((_, other)) => format!("{} is not an audit event", other.kind()),
        Err(e) => e.to_string(),
    };
    tracing::warn!(reason = %why, "undeliverable audit event acknowledged");
    record_undeliverable(pool, message_id, &why).await?;
    Ok(Outcome::Undeliverable)
}

/// What the trail accepts: people as pseudonyms (64 lowercase hex digits, never a raw id) and
/// short lowercase names for action and function.
fn check(event: &AuditRecorded) -> Result<(), String> {
    let pseudonym = |s: &str| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let name = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if !pseudonym(&event.actor_ref) {
        return Err("actor_ref is not a pseudonym".into());
    }
    if !pseudonym(&event.subject_ref) {
        return Err("subject_ref is not a pseudonym".into());
    }
    if !name(&event.action) {
        return Err("action is not a short lowercase name".into());
    }
    if !name(&event.function) {
        return Err("function is not a short lowercase name".into());
    }
    Ok(())
}

async fn record_undeliverable(pool: &PgPool, message_id: &str, reason: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO undeliverable_events (message_id, reason) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING")
        .bind(message_id)
        .bind(reason)
        .execute(pool)
        .await?;
    Ok(())
}
