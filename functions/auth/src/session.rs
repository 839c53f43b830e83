//! Refresh-token rotation with reuse detection, logout of one or all sessions, the session list.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use common::cache::{NewSession, Refreshed};
use common::error::Problem;
use common::guard::SessionId;
use common::http::{ApiJson, AuthUser};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ACCESS_TTL, AppState, Result, access_token, client_ip};

/// The caller's session, verified by the guard (token, live session); 401 otherwise.
pub struct CurrentSession {
    /// User.
    pub user_id: Uuid,
    /// Session id.
    pub session_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        match (
            parts.extensions.get::<AuthUser>(),
            parts.extensions.get::<SessionId>(),
        ) {
            (Some(user), Some(sid)) => Ok(Self {
                user_id: user.user_id,
                session_id: sid.0.clone(),
            }),
            _ => Err(Problem::unauthorized()),
        }
    }
}

/// An access token and the refresh token that replaces itself on every use.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque, single use: send it to `/v1/auth/refresh` for the next pair.
    pub refresh_token: String,
    /// Seconds of inactivity after which the session ends.
    pub idle_timeout: u64,
    /// Shown once, after TOTP enrolment: single-use codes for when the authenticator is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

impl Tokens {
    /// The pair for a session.
    pub fn issue(state: &AppState, user: Uuid, session: &NewSession) -> Self {
        Self {
            access_token: access_token(state, user, &session.id),
            token_type: "Bearer".into(),
            expires_in: ACCESS_TTL.as_secs(),
            refresh_token: session.refresh_token.clone(),
            idle_timeout: state.sessions.config().session_idle_timeout_secs,
            recovery_codes: None,
        }
    }
}

/// A refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Exchange a refresh token for a new pair. A token that was already used revokes the whole
/// session (all tokens descending from the same login).
#[utoipa::path(post, path = "/v1/auth/refresh", request_body = RefreshBody,
    responses((status = 200, body = Tokens),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<Tokens>> {
    state.limit("refresh", &headers, None).await?;
    if let Some(user) = state.sessions.refresh_owner(&body.refresh_token).await? {
        state
            .limit("refresh", &headers, Some(&user.to_string()))
            .await?;
    }
    match state.sessions.refresh(&body.refresh_token).await? {
        Refreshed::Rotated { user, session } => Ok(Json(Tokens::issue(&state, user, &session))),
        Refreshed::Reused { user } => {
            tracing::warn!(target: "audit", event = "refresh_token_reused", user_id = %user,
                client_ip = %client_ip(&headers, state.limits.trusted_proxy_hops),
                "a rotated refresh token was presented again; the session is revoked");
            Err(invalid_refresh_token().into())
        }
        Refreshed::Invalid => Err(invalid_refresh_token().into()),
    }
}

/// The 401 of a refresh token that is unknown, expired, revoked or used already; the same for
/// all four, so a reuse (which revoked the session) is not told apart from a made-up token.
fn invalid_refresh_token() -> Problem {
    Problem::new(
        401,
        "invalid_refresh_token",
        "the refresh token is invalid, expired or already used; sign in again",
    )
    .with_field("refresh_token")
}

/// End this session: its refresh token and access tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", security(("bearer" = [])),
    responses((status = 204, description = "Session ended"),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout(State(state): State<AppState>, s: CurrentSession) -> Result<StatusCode> {
    state.sessions.revoke(&s.session_id, s.user_id).await?;
    tracing::info!(target: "audit", event = "logout", user_id = %s.user_id, "session ended");
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller (log out everywhere).
#[utoipa::path(post, path = "/v1/auth/logout-all", security(("bearer" = [])),
    responses((status = 204, description = "All sessions ended"),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout_all(State(state): State<AppState>, s: CurrentSession) -> Result<StatusCode> {
    let n = state.sessions.revoke_all(s.user_id, None).await?;
    tracing::info!(target: "audit", event = "logout_all", user_id = %s.user_id, sessions = n, "all sessions ended");
    Ok(StatusCode::NO_CONTENT)
}

/// A live session.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the session ends at the latest (absolute timeout).
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Whether this is the session of the request.
    pub current: bool,
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionView>),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    s: CurrentSession,
) -> Result<Json<Vec<SessionView>>> {
    let ms = |t: i64| chrono::DateTime::from_timestamp_millis(t).unwrap_or_default();
    let out = state
        .sessions
        .list(s.user_id)
        .await?
        .into_iter()
        .map(|i| SessionView {
            current: i.id == s.session_id,
            created_at: ms(i.created_ms),
            expires_at: ms(i.expires_ms),
            id: i.id,
        })
        .collect();
    Ok(Json(out))
}

/// End one of the caller's sessions; another user's session id answers 404.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Session ended"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(state): State<AppState>,
    s: CurrentSession,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if state.sessions.revoke(&id, s.user_id).await? {
        tracing::info!(target: "audit", event = "session_revoked", user_id = %s.user_id, "session ended by its owner");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found().into())
    }
}
