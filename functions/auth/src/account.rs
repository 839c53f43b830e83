//! Accounts: registration with e-mail verification, password change (re-authentication,
//! other sessions revoked) and reset by an e-mailed single-use token (TR-03161-3 O.Pass,
//! O.Auth_12/13). Answers never tell whether an address is registered.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::cache::{random_token, token_hash};
use common::error::Problem;
use common::http::ApiJson;
use serde::Deserialize;
use uuid::Uuid;

use crate::mail::Mail;
use crate::session::CurrentSession;
use crate::{
    AppState, Result, check_password, client_ip, email_context, hash_password, normalise_email,
};

/// How long an e-mail verification link works.
pub const VERIFY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a password-reset link works.
pub const RESET_TTL: Duration = Duration::from_secs(30 * 60);

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

/// A single-use token from an e-mail.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub token: String,
}

/// The current password (re-authentication) and the new one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Whose password to reset.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// The e-mailed token and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    pub new_password: String,
}

fn accepted() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "check your e-mail"})),
    )
}

async fn mail_token(
    state: &AppState,
    user: Uuid,
    email: &str,
    purpose: &str,
    ttl: Duration,
) -> Result<()> {
    let token = random_token(32);
    sqlx::query(
        "INSERT INTO auth_tokens (token_hash, user_id, purpose, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash(&token))
    .bind(user)
    .bind(purpose)
    .bind(ttl.as_secs() as f64)
    .execute(&state.pool)
    .await?;
    let link = format!(
        "{}/{}?token={token}",
        state.limits.app_link_base.trim_end_matches('/'),
        purpose.replace('_', "-")
    );
    let (subject, text) = match purpose {
        "verify_email" => (
            "Confirm your e-mail address",
            format!(
                "Open this link in the app to confirm your address (valid 24 hours):\n{link}\n\nToken: {token}\n"
            ),
        ),
        _ => (
            "Reset your password",
            format!(
                "Open this link in the app to choose a new password (valid 30 minutes):\n{link}\n\nToken: {token}\n\nIf you did not ask for this, ignore this message.\n"
            ),
        ),
    };
    state
        .send(Mail {
            to: email.to_owned(),
            subject: subject.into(),
            text,
            kind: purpose.into(),
        })
        .await
}

/// Takes a single-use token: the user, or 400 when it is unknown, used or expired.
async fn take_token(state: &AppState, token: &str, purpose: &str) -> Result<Uuid> {
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE auth_tokens SET used_at = now()
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(token_hash(token))
    .bind(purpose)
    .fetch_optional(&state.pool)
    .await?;
    user.ok_or_else(|| {
        Problem::new(400, "invalid_token", "the link is invalid, used or expired")
            .with_field("token")
            .into()
    })
}

/// Register an account. Always 202: a new address gets a verification link, an unverified
/// one a fresh link, a registered one a notice (so answers do not reveal accounts).
#[utoipa::path(post, path = "/v1/auth/register", request_body = Credentials,
    responses((status = 202, description = "Check your e-mail"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>)> {
    let email = normalise_email(&c.email)?;
    let lookup = state.lookup(&email);
    state.limit("register", &headers, Some(&lookup)).await?;
    check_password("password", &c.password, &email)?;
    let hash = hash_password(c.password).await?;
    let id = Uuid::new_v4();
    // The blind index keeps addresses unique (any case or surrounding whitespace: it is taken
    // over the normalised address); the address itself is stored only encrypted.
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (id, email_lookup, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (email_lookup) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&lookup)
    .bind(&hash)
    .fetch_optional(&state.pool)
    .await?;
    if inserted.is_some() {
        store_email(&state, id, &email).await?;
        tracing::info!(target: "audit", event = "account_registered", user_id = %id, "account created");
        mail_token(&state, id, &email, "verify_email", VERIFY_TTL).await?;
        return Ok(accepted());
    }
    let (existing, verified, missing): (Uuid, bool, bool) = sqlx::query_as(
        "SELECT id, email_verified_at IS NOT NULL, email_ct IS NULL FROM users WHERE email_lookup = $1",
    )
    .bind(&lookup)
    .fetch_one(&state.pool)
    .await?;
    if missing {
        // A registration that stopped between the row and its encrypted address.
        store_email(&state, existing, &email).await?;
    }
    if verified {
        state
            .send(Mail {
                to: email,
                subject: "Someone tried to register with your address".into(),
                text: "Your address already has an account. If this was you, log in or reset your password.\n".into(),
                kind: "account_exists".into(),
            })
            .await?;
    } else {
        mail_token(&state, existing, &email, "verify_email", VERIFY_TTL).await?;
    }
    Ok(accepted())
}

/// Stores the address encrypted under the user's data key (which needs the row first:
/// `user_keys` references it).
async fn store_email(state: &AppState, user: Uuid, email: &str) -> Result<()> {
    let key = state.crypto.data_key(user).await?;
    sqlx::query("UPDATE users SET email_ct = $2 WHERE id = $1")
        .bind(user)
        .bind(key.encrypt_str(&email_context(user), email)?)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// Confirm the e-mail address with the token from the verification message.
#[utoipa::path(post, path = "/v1/auth/email-verification", request_body = TokenBody,
    responses((status = 204, description = "Address confirmed"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn verify_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<StatusCode> {
    state.limit("email-verification", &headers, None).await?;
    let user = take_token(&state, &body.token, "verify_email").await?;
    sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1",
    )
    .bind(user)
    .execute(&state.pool)
    .await?;
    tracing::info!(target: "audit", event = "email_verified", user_id = %user, "e-mail address confirmed");
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password: the current one is required again; every other session ends.
#[utoipa::path(post, path = "/v1/auth/password", request_body = PasswordChange, security(("bearer" = [])),
    responses((status = 204, description = "Password changed"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: CurrentSession,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode> {
    state
        .limit("password", &headers, Some(&s.user_id.to_string()))
        .await?;
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(s.user_id)
        .fetch_one(&state.pool)
        .await?;
    let email = state.email_of(s.user_id).await?.unwrap_or_default();
    let ip = client_ip(&headers, state.limits.trusted_proxy_hops);
    if !state
        .verify_password(body.current_password, Some(stored))
        .await?
    {
        tracing::warn!(target: "audit", event = "password_change_refused", user_id = %s.user_id, client_ip = %ip, "wrong current password");
        return Err(
            Problem::new(401, "invalid_credentials", "the current password is wrong")
                .with_field("current_password")
                .into(),
        );
    }
    check_password("new_password", &body.new_password, &email)?;
    let hash = hash_password(body.new_password).await?;
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(s.user_id)
        .bind(&hash)
        .execute(&state.pool)
        .await?;
    let ended = state
        .sessions
        .revoke_all(s.user_id, Some(&s.session_id))
        .await?;
    tracing::warn!(target: "audit", event = "password_changed", user_id = %s.user_id, client_ip = %ip, other_sessions_ended = ended, "password changed");
    if !email.is_empty() {
        state
            .send(Mail {
                to: email,
                subject: "Your password was changed".into(),
                text: "Your password was just changed and your other sessions were ended. If this was not you, reset your password now.\n".into(),
                kind: "password_changed".into(),
            })
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Ask for a password-reset link. Always 202.
#[utoipa::path(post, path = "/v1/auth/password-reset", request_body = ResetRequest,
    responses((status = 202, description = "Check your e-mail"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn request_reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>)> {
    let lookup = state.lookup(&body.email);
    state
        .limit("password-reset", &headers, Some(&lookup))
        .await?;
    let user: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE email_lookup = $1")
        .bind(&lookup)
        .fetch_optional(&state.pool)
        .await?;
    if let Some(user) = user {
        // To the stored address (decrypted), the one the account was verified with.
        if let Some(email) = state.email_of(user).await? {
            tracing::info!(target: "audit", event = "password_reset_requested", user_id = %user, "reset link sent");
            mail_token(&state, user, &email, "reset_password", RESET_TTL).await?;
        }
    }
    Ok(accepted())
}

/// Set a new password with the e-mailed token; every session ends. The second factor stays.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", request_body = ResetConfirm,
    responses((status = 204, description = "Password set"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode> {
    state
        .limit("password-reset-confirm", &headers, None)
        .await?;
    // Check the policy before spending the token, so a weak choice can be corrected.
    let owner: Option<Uuid> = sqlx::query_scalar(
        "SELECT t.user_id FROM auth_tokens t
         WHERE t.token_hash = $1 AND t.purpose = 'reset_password' AND t.used_at IS NULL AND t.expires_at > now()",
    )
    .bind(token_hash(&body.token))
    .fetch_optional(&state.pool)
    .await?;
    let email = match owner {
        Some(user) => state.email_of(user).await?,
        None => None,
    };
    if let Some(email) = &email {
        check_password("new_password", &body.new_password, email)?;
    }
    let user = take_token(&state, &body.token, "reset_password").await?;
    let hash = hash_password(body.new_password).await?;
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(user)
        .bind(&hash)
        .execute(&state.pool)
        .await?;
    let ended = state.sessions.revoke_all(user, None).await?;
    tracing::warn!(target: "audit", event = "password_reset", user_id = %user,
        client_ip = %client_ip(&headers, state.limits.trusted_proxy_hops), sessions_ended = ended,
        "password reset by e-mailed token");
    Ok(StatusCode::NO_CONTENT)
}
