//! The middlewares in front of every data route: access token + live session + per-user rate
//! limit in one Redis round trip, and the minimum app version (TR-03161-3 O.Auth_7, O.Auth_10,
//! O.Auth_16/17, O.Arch_12).
//!
//! The guard verifies the bearer token, runs one Lua script that checks the session named by
//! its `sid` (and restarts its idle timer) and counts the request against the user's limit,
//! then hands the verified [`AuthUser`] to the handler. When Redis cannot answer, data routes
//! fail closed with 503: a revoked session must never be served.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use redis::Script;

use crate::auth::JwtKeys;
use crate::cache::{LUA_PRELUDE, Redis, SessionConfig, retry_after_secs};
use crate::error::Problem;
use crate::http::AuthUser;

/// Header the app sends its version in.
pub const APP_VERSION_HEADER: &str = "x-app-version";

/// Data-route protection.
#[derive(Debug, Clone, Args)]
pub struct GuardConfig {
    /// Requests one user may make per minute on the data routes; beyond it 429 with Retry-After.
    #[arg(long, env = "DATA_RATE_LIMIT_PER_MIN", default_value_t = 300)]
    pub data_rate_limit_per_min: u32,
    /// Oldest app version served on `/v1/*` (`X-App-Version: 2.4.0`); older or missing
    /// versions get 426. Unset: no check.
    #[arg(long, env = "MIN_APP_VERSION")]
    pub min_app_version: Option<AppVersion>,
}

/// A dotted numeric app version (`2`, `2.4`, `2.4.1`); missing parts are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppVersion(pub [u32; 3]);

impl FromStr for AppVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = [0u32; 3];
        for (n, piece) in s.trim().split('.').enumerate() {
            if n == 3 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("not a version like 2.4.1: {s}"));
            }
            parts[n] = piece
                .parse()
                .map_err(|_| format!("version part too large: {s}"))?;
        }
        Ok(Self(parts))
    }
}

impl std::fmt::Display for AppVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0[0], self.0[1], self.0[2])
    }
}

/// Refuses `/v1/*` requests from app versions below `min` (or without a readable version)
/// with 426; health and OpenAPI paths stay open.
pub fn min_app_version(router: Router, min: Option<AppVersion>) -> Router {
    match min {
        None => router,
        Some(min) => router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| check_version(min, req, next),
        )),
    }
}

async fn check_version(min: AppVersion, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let version = req
        .headers()
        .get(APP_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<AppVersion>().ok());
    match version {
        Some(v) if v >= min => next.run(req).await,
        _ => {
            tracing::info!(event = "app_version_refused", minimum = %min, "app version below the minimum");
            Problem::new(
                426,
                "app_update_required",
                format!("this app version is no longer supported; update to {min} or newer"),
            )
            .into_response()
        }
    }
}

/// The session of a guarded request (the `sid` claim); never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(pub String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// Token, session and per-user rate limit for data routes.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Arc<JwtKeys>,
    redis: Redis,
    idle_ms: u64,
    limit: u32,
    min_version: Option<AppVersion>,
    script: Script,
}

/// Outcome of the guard script.
const LIVE: i64 = 1;
const LIMITED: i64 = 2;

impl Guard {
    /// A guard verifying with `keys` and checking sessions and limits in `redis`.
    pub fn new(
        keys: Arc<JwtKeys>,
        redis: Redis,
        sessions: SessionConfig,
        config: &GuardConfig,
    ) -> Self {
        // KEYS: sess, counter; ARGV: user, idle ms, limit, window ms → {status, retry ms}
        let script = Script::new(&format!(
            "{LUA_PRELUDE}
if touch(KEYS[1], ARGV[1], tonumber(ARGV[2])) == 0 then return {{0, 0}} end
local retry = hit(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if retry > 0 then return {{2, retry}} end
return {{1, 0}}"
        ));
        Self {
            inner: Arc::new(Inner {
                keys,
                redis,
                idle_ms: sessions.idle().as_millis() as u64,
                limit: config.data_rate_limit_per_min,
                min_version: config.min_app_version,
                script,
            }),
        }
    }

    /// Puts the guard (and the minimum app version) in front of every route of `router`.
    /// Requests without a bearer token pass on, so open routes stay open and [`AuthUser`]
    /// answers 401 on the protected ones.
    pub fn protect(&self, router: Router) -> Router {
        let router = router.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            guard_request,
        ));
        min_app_version(router, self.inner.min_version)
    }

    /// Verifies the token and the session and counts the request; the verified user and
    /// session, or the response to send instead.
    pub async fn check(&self, token: &str) -> Result<(AuthUser, SessionId), Response> {
        let g = &self.inner;
        let claims = g.keys.verify(token).map_err(|e| {
            tracing::info!(reason = %e, "access token refused");
            Problem::unauthorized().into_response()
        })?;
        let Some(sid) = claims.sid.as_deref() else {
            tracing::info!("access token without a session refused");
            return Err(Problem::unauthorized().into_response());
        };
        let user = claims.sub.to_string();
        let answer: Result<(i64, i64), _> = g
            .script
            .key(g.redis.key(&["sess", sid]))
            .key(g.redis.key(&["rl", "data", &user]))
            .arg(&user)
            .arg(g.idle_ms)
            .arg(g.limit)
            .arg(60_000u64)
            .invoke_async(&mut g.redis.conn())
            .await;
        match answer {
            Ok((LIVE, _)) => Ok((
                AuthUser {
                    user_id: claims.sub,
                },
                SessionId(sid.to_owned()),
            )),
            Ok((LIMITED, retry_ms)) => {
                tracing::warn!(event = "data_rate_limited", user_id = %claims.sub, "per-user rate limit reached");
                Err(too_many_requests(Duration::from_millis(
                    retry_ms.max(0) as u64
                )))
            }
            Ok(_) => {
                tracing::info!(event = "session_refused", user_id = %claims.sub, "session ended or revoked");
                Err(Problem::unauthorized().into_response())
            }
            Err(e) => {
                tracing::error!(error = %e, "redis unavailable; refusing the request");
                Err(unavailable())
            }
        }
    }
}

async fn guard_request(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return next.run(req).await;
    };
    match guard.check(token).await {
        Ok((user, session)) => {
            req.extensions_mut().insert(user);
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        Err(res) => res,
    }
}

/// `router` behind `guard` when there is one (services), as it is when not (tests driving
/// the routes directly).
pub fn protect(router: Router, guard: Option<Guard>) -> Router {
    match guard {
        Some(guard) => guard.protect(router),
        None => router,
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// 429 with `Retry-After`.
pub fn too_many_requests(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut res = Problem::new(
        429,
        "rate_limited",
        format!("too many requests; retry in {secs} s"),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// 503 with `Retry-After: 1` when Redis cannot answer (fail closed).
pub fn unavailable() -> Response {
    let mut res = Problem::unavailable().into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_and_garbage_is_refused() {
        let v = |s: &str| s.parse::<AppVersion>().unwrap();
        assert!(v("2.10.0") > v("2.9.9"));
        assert_eq!(v("2"), v("2.0.0"));
        assert!(v("2.4") < v("2.4.1"));
        for bad in ["", "2..1", "v2", "1.2.3.4", "2.x", "99999999999"] {
            assert!(bad.parse::<AppVersion>().is_err(), "{bad}");
        }
    }
}
