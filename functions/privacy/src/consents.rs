//! The consent register (TR-03161-3 O.Purp_2–5): the current state per purpose with the text
//! in force, grants of a named text version, withdrawals, and the full history. Events are only
//! appended; the newest per purpose is the state.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use common::consent::Purpose;
use common::error::Problem;
use common::http::{ApiJson, AuthUser};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{AppState, Result};

/// One purpose: the text in force and whether the user consents to it now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentState {
    pub purpose: Purpose,
    /// Whether processing for this purpose is allowed now.
    pub granted: bool,
    /// Whether the purpose is needed to use the therapy at all (only `intended_use`).
    pub required: bool,
    /// Version of the text in force.
    pub current_version: i32,
    pub title: String,
    pub text: String,
    /// The version the newest grant or withdrawal referred to.
    pub decided_version: Option<i32>,
    /// When the newest grant or withdrawal was recorded.
    pub decided_at: Option<DateTime<Utc>>,
}

/// One grant or withdrawal.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentEvent {
    pub purpose: Purpose,
    pub version: i32,
    /// `granted` or `withdrawn`.
    pub action: String,
    pub at: DateTime<Utc>,
}

/// A grant of one purpose, naming the text version the user was shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub purpose: Purpose,
    /// The text version shown to the user; it must be the one in force.
    pub version: i32,
}

/// The caller's consent state for every purpose of DiGAV §4(2), with the texts in force.
#[utoipa::path(get, path = "/v1/me/consents",
    responses((status = 200, description = "One entry per purpose", body = Vec<ConsentState>)),
    security(("bearer" = [])))]
pub async fn current(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<ConsentState>>> {
    let rows = sqlx::query(
        "SELECT t.purpose, t.version, t.title, t.body, e.version AS decided_version, e.action, e.at \
         FROM (SELECT DISTINCT ON (purpose) * FROM consent_texts ORDER BY purpose, version DESC) t \
         LEFT JOIN LATERAL (SELECT version, action, at FROM consent_events \
            WHERE user_id = $1 AND purpose = t.purpose ORDER BY id DESC LIMIT 1) e ON true",
    )
    .bind(user.user_id)
    .fetch_all(&state.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(purpose) = Purpose::parse(row.try_get("purpose")?) else {
            continue;
        };
        let action: Option<String> = row.try_get("action")?;
        out.push(ConsentState {
            purpose,
            granted: action.as_deref() == Some("granted"),
            required: purpose == Purpose::IntendedUse,
            current_version: row.try_get("version")?,
            title: row.try_get("title")?,
            text: row.try_get("body")?,
            decided_version: row.try_get("decided_version")?,
            decided_at: row.try_get("at")?,
        });
    }
    out.sort_by_key(|s| Purpose::ALL.iter().position(|p| *p == s.purpose));
    Ok(Json(out))
}

/// Every grant and withdrawal of the caller, oldest first.
#[utoipa::path(get, path = "/v1/me/consents/history",
    responses((status = 200, description = "Oldest first", body = Vec<ConsentEvent>)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<ConsentEvent>>> {
    let rows = sqlx::query(
        "SELECT purpose, version, action, at FROM consent_events WHERE user_id = $1 ORDER BY id",
    )
    .bind(user.user_id)
    .fetch_all(&state.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(purpose) = Purpose::parse(row.try_get("purpose")?) else {
            continue;
        };
        out.push(ConsentEvent {
            purpose,
            version: row.try_get("version")?,
            action: row.try_get("action")?,
            at: row.try_get("at")?,
        });
    }
    Ok(Json(out))
}

/// Grant one purpose. The body names the text version shown; an outdated version is refused
/// (409) so a consent always refers to the wording in force. Granting again records nothing new.
#[utoipa::path(post, path = "/v1/me/consents", request_body = Grant,
    responses(
        (status = 201, description = "Granted", body = ConsentEvent),
        (status = 200, description = "Already granted for this version", body = ConsentEvent),
        (status = 409, description = "The version is not the text in force", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(grant): ApiJson<Grant>,
) -> Result<(StatusCode, Json<ConsentEvent>)> {
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 11))")
        .bind(user.user_id)
        .execute(&mut *tx)
        .await?;
    let in_force: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM consent_texts WHERE purpose = $1")
            .bind(grant.purpose.as_str())
            .fetch_one(&mut *tx)
            .await?;
    if in_force != Some(grant.version) {
        return Err(Problem::new(
            409,
            "consent_text_outdated",
            format!(
                "version {} is not the text in force (version {})",
                grant.version,
                in_force.unwrap_or_default()
            ),
        )
        .with_field("version")
        .into());
    }
    let last = sqlx::query(
        "SELECT version, action, at FROM consent_events WHERE user_id = $1 AND purpose = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(user.user_id)
    .bind(grant.purpose.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = last {
        let action: String = row.try_get("action")?;
        let version: i32 = row.try_get("version")?;
        if action == "granted" && version == grant.version {
            return Ok((
                StatusCode::OK,
                Json(ConsentEvent {
                    purpose: grant.purpose,
                    version,
                    action,
                    at: row.try_get("at")?,
                }),
            ));
        }
    }
    let at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO consent_events (user_id, purpose, version, action) VALUES ($1, $2, $3, 'granted') RETURNING at",
    )
    .bind(user.user_id)
    .bind(grant.purpose.as_str())
    .bind(grant.version)
    .fetch_one(&mut *tx)
    .await?;
    audited(&mut tx, user.user_id, "consent.granted").await?;
    tx.commit().await?;
    tracing::info!(target: "audit", event = "consent_granted", user_id = %user.user_id, purpose = grant.purpose.as_str(), version = grant.version, "consent granted");
    Ok((
        StatusCode::CREATED,
        Json(ConsentEvent {
            purpose: grant.purpose,
            version: grant.version,
            action: "granted".into(),
            at,
        }),
    ))
}

/// The answer to a withdrawal: the withdrawal itself and, for `intended_use`, the erasure it
/// started.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawal {
    pub purpose: Purpose,
    pub version: i32,
    /// Always `withdrawn`.
    pub action: String,
    pub at: DateTime<Utc>,
    /// Present when the withdrawal was of `intended_use`: the erasure of the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure: Option<crate::erasure::Erasure>,
}

/// Withdraw one purpose (GDPR Art. 7(3)). Processing for it stops at once. Withdrawing
/// `intended_use` (DiGAV §4(2) Nr. 1) removes the only legal ground the health data are kept on
/// (GDPR Art. 6(1)(a), 9(2)(a)), so they must be erased (Art. 17(1)(b)): the withdrawal is
/// recorded first, then the same erasure as `DELETE /v1/me` runs — 200 when every store was
/// erased and verified, 202 naming the stores still pending (the retention job retries them).
/// Withdrawing another purpose stops only that purpose. Withdrawing what is not granted
/// answers 404.
#[utoipa::path(delete, path = "/v1/me/consents/{purpose}", params(("purpose" = Purpose, Path, description = "Purpose")),
    responses(
        (status = 200, description = "Withdrawn (for intended_use: and the account erased and verified)", body = Withdrawal),
        (status = 202, description = "intended_use withdrawn; some stores of the erasure are pending and retried", body = Withdrawal),
        (status = 404, description = "Not granted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    user: AuthUser,
    Path(purpose): Path<String>,
) -> Result<(StatusCode, Json<Withdrawal>)> {
    let purpose =
        Purpose::parse(&purpose).ok_or_else(|| Problem::not_found().with_field("purpose"))?;
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 11))")
        .bind(user.user_id)
        .execute(&mut *tx)
        .await?;
    let last = sqlx::query(
        "SELECT version, action FROM consent_events WHERE user_id = $1 AND purpose = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(user.user_id)
    .bind(purpose.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let version: i32 = match last {
        Some(row) if row.try_get::<String, _>("action")? == "granted" => row.try_get("version")?,
        _ => return Err(Problem::not_found().with_field("purpose").into()),
    };
    let at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO consent_events (user_id, purpose, version, action) VALUES ($1, $2, $3, 'withdrawn') RETURNING at",
    )
    .bind(user.user_id)
    .bind(purpose.as_str())
    .bind(version)
    .fetch_one(&mut *tx)
    .await?;
    audited(&mut tx, user.user_id, "consent.withdrawn").await?;
    tx.commit().await?;
    tracing::info!(target: "audit", event = "consent_withdrawn", user_id = %user.user_id, purpose = purpose.as_str(), "consent withdrawn");
    let (status, erasure) = if purpose == Purpose::IntendedUse {
        let (status, erasure) = crate::erase_and_audit(&state, user.user_id).await?;
        (status, Some(erasure))
    } else {
        (StatusCode::OK, None)
    };
    Ok((
        status,
        Json(Withdrawal {
            purpose,
            version,
            action: "withdrawn".into(),
            at,
            erasure,
        }),
    ))
}

async fn audited(tx: &mut sqlx::PgConnection, user: uuid::Uuid, action: &str) -> sqlx::Result<()> {
    crate::audit::append(
        tx,
        &crate::audit::Entry {
            actor: user,
            subject: user,
            action,
            function: "privacy",
            object: None,
        },
    )
    .await
    .map(|_| ())
}
