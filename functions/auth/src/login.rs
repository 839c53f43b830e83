//! Two-factor login (TR-03161-3 O.Auth_4): the password yields only a short-lived challenge;
//! a session exists only after a TOTP code (RFC 6238) or a single-use recovery code. The
//! first login enrols TOTP and returns the recovery codes once.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use common::cache::{random_token, token_hash};
use common::error::Problem;
use common::http::ApiJson;
use rand::Rng as _;
use redis::Script;
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

use crate::account::Credentials;
use crate::session::Tokens;
use crate::{AppState, Error, Result, client_ip};

/// How long the password step's challenge lives.
pub const MFA_TTL: Duration = Duration::from_secs(5 * 60);
/// Second-factor attempts (enrolment included) per challenge.
pub const MFA_ATTEMPTS: u32 = 5;
/// Issuer shown in authenticator apps.
pub const TOTP_ISSUER: &str = "dta-wide";
/// RFC 6238 time step.
pub const TOTP_STEP_SECS: u64 = 30;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Result of the password step.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginChallenge {
    /// Single use, valid `expires_in` seconds; send it with the second factor.
    pub mfa_token: String,
    /// `totp` (send a code) or `totp_enrolment` (enrol first at `/v1/auth/login/totp-enrolment`).
    pub second_factor: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for LoginChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginChallenge")
            .field("second_factor", &self.second_factor)
            .finish()
    }
}

/// The challenge of the password step.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaToken {
    pub mfa_token: String,
}

/// A TOTP secret to put into an authenticator app; active after the first valid code.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Base32 shared secret.
    pub secret: String,
    /// `otpauth://totp/...` URI (for a QR code).
    pub otpauth_uri: String,
}

/// The second factor: a TOTP code, or one of the recovery codes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactor {
    pub mfa_token: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// First factor: e-mail and password. Answers a challenge, never a session.
#[utoipa::path(post, path = "/v1/auth/login", request_body = Credentials,
    responses((status = 200, body = LoginChallenge),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Json<LoginChallenge>> {
    let lookup = state.lookup(&c.email);
    state.limit("login", &headers, Some(&lookup)).await?;
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT id, password_hash, email_verified_at, totp_enabled_at FROM users WHERE email_lookup = $1",
    )
    .bind(&lookup)
    .fetch_optional(&state.pool)
    .await?;
    let ok = state
        .verify_password(c.password, row.as_ref().map(|r| r.1.clone()))
        .await?;
    let ip = client_ip(&headers, state.limits.trusted_proxy_hops);
    let (user, verified, enrolled) = match row {
        Some((id, _, verified, enrolled)) if ok => (id, verified.is_some(), enrolled.is_some()),
        row => {
            let user_id = row.map(|r| r.0.to_string());
            tracing::warn!(target: "audit", event = "login_failed", user_id = user_id.as_deref().unwrap_or("unknown"), client_ip = %ip, "wrong e-mail or password");
            return Err(
                Problem::new(401, "invalid_credentials", "e-mail or password is wrong").into(),
            );
        }
    };
    if !verified {
        return Err(Problem::new(
            403,
            "email_not_verified",
            "confirm the e-mail address first (see the message we sent)",
        )
        .into());
    }
    let token = random_token(32);
    let _: i64 = Script::new(
        "redis.call('HSET', KEYS[1], 'u', ARGV[1], 'n', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1",
    )
    .key(mfa_key(&state, &token))
    .arg(user.to_string())
    .arg(MFA_TTL.as_millis() as u64)
    .invoke_async(&mut state.redis.conn())
    .await
    .map_err(common::cache::CacheError::from)?;
    tracing::info!(target: "audit", event = "password_accepted", user_id = %user, client_ip = %ip, "first factor passed");
    Ok(Json(LoginChallenge {
        mfa_token: token,
        second_factor: if enrolled { "totp" } else { "totp_enrolment" }.into(),
        expires_in: MFA_TTL.as_secs(),
    }))
}

/// Plaintext TOTP secret (enrolled before encryption), encrypted secret, enabled at.
type SecretRow = (Option<String>, Option<Vec<u8>>, Option<DateTime<Utc>>);

/// id, password hash, e-mail verified at, TOTP enabled at.
type AccountRow = (Uuid, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn mfa_key(state: &AppState, token: &str) -> String {
    state.redis.key(&["mfa", &token_hash(token)])
}

/// Counts one attempt on a challenge; the user, or 401 when it is unknown, expired or spent.
async fn attempt(state: &AppState, headers: &HeaderMap, token: &str) -> Result<Uuid> {
    let (n, user): (i64, String) = Script::new(
        "local u = redis.call('HGET', KEYS[1], 'u')
if not u then return {0, ''} end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {-1, u}
end
return {n, u}",
    )
    .key(mfa_key(state, token))
    .arg(MFA_ATTEMPTS)
    .invoke_async(&mut state.redis.conn())
    .await
    .map_err(common::cache::CacheError::from)?;
    let refused = || Problem::new(401, "invalid_challenge", "log in again");
    if n == 0 {
        return Err(refused().into());
    }
    if n < 0 {
        tracing::warn!(target: "audit", event = "second_factor_exhausted", user_id = %user, "too many second-factor attempts; challenge dropped");
        return Err(refused().into());
    }
    let user = Uuid::parse_str(&user).map_err(|_| refused())?;
    state
        .limit("second-factor", headers, Some(&user.to_string()))
        .await?;
    Ok(user)
}

/// Starts TOTP enrolment for an account without an active second factor.
#[utoipa::path(post, path = "/v1/auth/login/totp-enrolment", request_body = MfaToken,
    responses((status = 200, body = TotpEnrolment),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn enrol_totp(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MfaToken>,
) -> Result<Json<TotpEnrolment>> {
    let user = attempt(&state, &headers, &body.mfa_token).await?;
    let enabled: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT totp_enabled_at FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&state.pool)
            .await?;
    if enabled.is_some() {
        return Err(Problem::conflict("a second factor is already enrolled").into());
    }
    // The authenticator app shows the address as the account name (otpauth URI label).
    let email = state
        .email_of(user)
        .await?
        .unwrap_or_else(|| user.to_string());
    let secret = Secret::generate_secret();
    let encoded = match secret.to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => return Err(Error::Hash("TOTP secret encoding".into())),
    };
    let totp = totp(&encoded, &email)?;
    let sealed = state
        .crypto
        .data_key(user)
        .await?
        .encrypt_str(&secret_context(user), &encoded)?;
    sqlx::query(
        "UPDATE users SET totp_secret_enc = $2, totp_secret = NULL, totp_last_step = NULL
         WHERE id = $1 AND totp_enabled_at IS NULL",
    )
    .bind(user)
    .bind(&sealed)
    .execute(&state.pool)
    .await?;
    tracing::info!(target: "audit", event = "totp_enrolment_started", user_id = %user, "TOTP secret issued");
    Ok(Json(TotpEnrolment {
        otpauth_uri: totp.get_url(),
        secret: encoded,
    }))
}

fn secret_context(user: Uuid) -> String {
    common::crypto::field_context("users", "totp_secret", user)
}

fn totp(secret_b32: &str, email: &str) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|_| Error::Hash("stored TOTP secret is not base32".into()))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP_SECS,
        bytes,
        Some(TOTP_ISSUER.into()),
        email.replace(':', ""),
    )
    .map_err(|e| Error::Hash(format!("TOTP parameters: {e}")))
}

/// The time step a code belongs to within ±1 step of now, compared in constant time.
fn matching_step(totp: &TOTP, code: &str, now: u64) -> Option<u64> {
    let current = now / TOTP_STEP_SECS;
    (current.saturating_sub(1)..=current + 1).find(|step| {
        let expected = totp.generate(step * TOTP_STEP_SECS);
        expected.len() == code.len()
            && expected
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// Second factor: a TOTP code (which activates a pending enrolment) or a recovery code.
/// Answers the session's tokens.
#[utoipa::path(post, path = "/v1/auth/login/second-factor", request_body = SecondFactor,
    responses((status = 200, body = Tokens),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn second_factor(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactor>,
) -> Result<Json<Tokens>> {
    if body.code.is_none() && body.recovery_code.is_none() {
        return Err(Problem::validation("code", "send a TOTP code or a recovery code").into());
    }
    let user = attempt(&state, &headers, &body.mfa_token).await?;
    let (legacy, sealed, enabled): SecretRow = sqlx::query_as(
        "SELECT totp_secret, totp_secret_enc, totp_enabled_at FROM users WHERE id = $1",
    )
    .bind(user)
    .fetch_one(&state.pool)
    .await?;
    let secret = match sealed {
        Some(sealed) => Some(
            state
                .crypto
                .decrypt_str(user, &secret_context(user), &sealed)
                .await?,
        ),
        None => legacy,
    };
    let ip = client_ip(&headers, state.limits.trusted_proxy_hops);
    let mut recovery_codes = None;
    let passed = if let Some(code) = body.code.as_deref() {
        match &secret {
            None => false,
            Some(secret) => {
                let now = Utc::now().timestamp().max(0) as u64;
                // The label does not enter the codes (RFC 6238 §4: secret and time only), so
                // the address need not be decrypted here.
                match matching_step(&totp(secret, &user.to_string())?, code.trim(), now) {
                    None => false,
                    Some(step) => {
                        // Each step's code is accepted once (replay within the window).
                        let done = sqlx::query(
                            "UPDATE users SET totp_last_step = $2, totp_enabled_at = COALESCE(totp_enabled_at, now())
                             WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                        )
                        .bind(user)
                        .bind(step as i64)
                        .execute(&state.pool)
                        .await?
                        .rows_affected()
                            == 1;
                        if done && enabled.is_none() {
                            recovery_codes = Some(issue_recovery_codes(&state, user).await?);
                            tracing::info!(target: "audit", event = "totp_enrolled", user_id = %user, "second factor enrolled");
                        }
                        done
                    }
                }
            }
        }
    } else {
        let code = body
            .recovery_code
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_lowercase();
        let used = enabled.is_some()
            && sqlx::query(
                "UPDATE auth_recovery_codes SET used_at = now()
                 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            )
            .bind(user)
            .bind(token_hash(&code))
            .execute(&state.pool)
            .await?
            .rows_affected()
                == 1;
        if used {
            tracing::warn!(target: "audit", event = "recovery_code_used", user_id = %user, client_ip = %ip, "login with a recovery code");
        }
        used
    };
    if !passed {
        tracing::warn!(target: "audit", event = "second_factor_failed", user_id = %user, client_ip = %ip, "wrong second factor");
        return Err(Problem::new(401, "invalid_second_factor", "the code is wrong or used").into());
    }
    let _: i64 = redis::cmd("DEL")
        .arg(mfa_key(&state, &body.mfa_token))
        .query_async(&mut state.redis.conn())
        .await
        .map_err(common::cache::CacheError::from)?;
    let session = state.sessions.create(user).await?;
    tracing::info!(target: "audit", event = "login_succeeded", user_id = %user, client_ip = %ip, "session started");
    let mut tokens = Tokens::issue(&state, user, &session);
    tokens.recovery_codes = recovery_codes;
    Ok(Json(tokens))
}

async fn issue_recovery_codes(state: &AppState, user: Uuid) -> Result<Vec<String>> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = {
        let mut rng = rand::rng();
        (0..RECOVERY_CODES)
            .map(|_| {
                let mut c: String = (0..12)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                    .collect();
                c.insert(6, '-');
                c
            })
            .collect()
    };
    let mut tx = state.pool.begin().await?;
    sqlx::query("DELETE FROM auth_recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for code in &codes {
        sqlx::query("INSERT INTO auth_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user)
            .bind(token_hash(code))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_own_step_and_its_neighbours_only() {
        let totp = totp("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "a@b.de").unwrap();
        let now = 1_700_000_000u64;
        let step = now / TOTP_STEP_SECS;
        let code = totp.generate(now);
        assert_eq!(matching_step(&totp, &code, now), Some(step));
        assert_eq!(matching_step(&totp, &code, now + 30), Some(step));
        assert_eq!(matching_step(&totp, &code, now + 90), None);
        assert_eq!(matching_step(&totp, "12345", now), None);
    }
}
