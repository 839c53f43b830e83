//! HTTP serving the way Cloud Run expects it: `0.0.0.0:$PORT`, a request timeout, panic →
//! opaque 500, problem+json for every error, a request span carrying the Cloud Trace id, and
//! graceful shutdown on SIGTERM and SIGINT.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::JwtKeys;
use crate::config::HttpConfig;
use crate::error::Problem;
use crate::telemetry::TraceContext;

/// Adds the platform layers to a function's routes: problem+json fallbacks, the request span,
/// the timeout and panic catching. Functions call this from `app()`.
pub fn platform(router: Router, request_timeout: Duration) -> Router {
    router
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(405, "method_not_allowed", "method not allowed on this path")
        })
        .layer(axum::middleware::from_fn(move |req, next| {
            timeout(request_timeout, req, next)
        }))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(request_span))
}

async fn timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            Problem::new(503, "timeout", "the request took too long").into_response()
        }
    }
}

fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    tracing::error!(panic = %msg, "handler panicked");
    Problem::internal().into_response()
}

/// The trace context of a request, from `traceparent` or `X-Cloud-Trace-Context`.
pub fn trace_context(headers: &HeaderMap) -> Option<TraceContext> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::from_traceparent)
        .or_else(|| {
            headers
                .get("x-cloud-trace-context")
                .and_then(|v| v.to_str().ok())
                .and_then(TraceContext::from_cloud_trace_context)
        })
}

async fn request_span(req: Request, next: Next) -> Response {
    let trace = trace_context(req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(t) = &trace {
        span.record("trace_id", t.trace_id.as_str());
        if let Some(s) = &t.span_id {
            span.record("span_id", s.as_str());
        }
    }
    let started = Instant::now();
    async move {
        let res = next.run(req).await;
        let status = res.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
        res
    }
    .instrument(span)
    .await
}

/// Serves `app` on `config.bind:config.port` until SIGTERM or SIGINT, then drains.
pub async fn serve(app: Router, config: &HttpConfig) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    serve_on(
        listener,
        app,
        Duration::from_secs(config.shutdown_grace_secs),
        shutdown_signal(),
    )
    .await
}

/// Serves on a bound listener until `signal` resolves; in-flight requests then get `grace` to
/// finish while new connections are refused.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    grace: Duration,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    use axum::serve::ListenerExt as _;
    // Responses go out without waiting for the peer to acknowledge the previous segment
    // (Nagle's algorithm), as HTTP servers commonly set.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        signal.await;
        tracing::info!("shutdown signal received, draining");
        let _ = tx.send(true);
    });
    let deadline = async move {
        let _ = rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (Cloud Run's stop signal) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A JSON body, read with the field path of any error: 415 without a JSON content type,
/// 413 beyond the body limit, 400 for broken JSON, 422 naming the field for wrong data.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Problem::new(
                415,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the whole body, mapping the body-limit rejection to 413 problem+json.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                413,
                "payload_too_large",
                "the request body is larger than this endpoint accepts",
            )
        } else {
            Problem::bad_request("the request body could not be read")
        }
    })
}

/// Deserialises JSON, naming the offending field in the problem.
///
/// Strings with a NUL character are refused here: PostgreSQL cannot store them in `text` or
/// `jsonb`, so letting one through would fail later as a server error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(path) = nul_path(&value, String::new())
    {
        return Err(Problem::validation(
            path,
            "text must not contain NUL characters",
        ));
    }
    // Every request body of the API is a JSON object. serde would also read a struct from an
    // array of its fields in order (`["intended_use", 1]`), which no client means.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(Problem::validation(
            "body",
            "the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                let field = named_field(&msg)
                    .map(|name| {
                        if path == "." || path == name || path.ends_with(&format!(".{name}")) {
                            if path == "." { name } else { path.clone() }
                        } else {
                            format!("{path}.{name}")
                        }
                    })
                    .unwrap_or(path);
                Problem::validation(field, msg)
            }
            _ => Problem::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })
}

/// The JSON path of the first string (or key) holding a NUL character.
fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            nul_path(
                v,
                format!("{}[{i}]", if path.is_empty() { "body" } else { &path }),
            )
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join("key"))
            } else {
                nul_path(v, join(k))
            }
        }),
        _ => None,
    }
}

/// `missing field `x`` / `unknown field `x`, expected ...` → `x`.
fn named_field(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("missing field `")
        .or_else(|| msg.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

/// Query parameters; 422 naming the problem otherwise.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| Problem::bad_request("the query string could not be read"))?
            .0;
        // Values stay strings; the target types parse them (dates, uuids). Last one wins.
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect();
        serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(map))
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                let field = named_field(&msg)
                    .or_else(|| (path != ".").then_some(path))
                    .unwrap_or_else(|| "query".into());
                Problem::validation(field, msg)
            })
    }
}

/// The authenticated caller of a data route.
///
/// Behind `common::guard::Guard` (token, live session and rate limit already checked) it is
/// taken from the request; without the guard only the token is verified, so a revoked
/// session's token would still pass until it expires: every data service wires the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// Pseudonymous user id (`sub`).
    pub user_id: Uuid,
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<JwtKeys>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(*user);
        }
        let keys = Arc::<JwtKeys>::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(Problem::unauthorized)?;
        match keys.verify(token.trim()) {
            Ok(claims) => Ok(AuthUser {
                user_id: claims.sub,
            }),
            Err(e) => {
                tracing::info!(reason = %e, "access token refused");
                Err(Problem::unauthorized())
            }
        }
    }
}

/// Serves an OpenAPI document as JSON.
pub fn openapi_json(
    doc: serde_json::Value,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let body = Arc::new(serde_json::to_vec(&doc).unwrap_or_default());
    move || {
        let body = Body::from(body.as_ref().clone());
        std::future::ready(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

#[cfg(test)]
mod body_tests {
    use super::parse_json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Grant {
        purpose: String,
        version: i32,
    }

    #[test]
    fn a_struct_is_read_only_from_a_json_object() {
        let ok: Grant = parse_json(br#" {"purpose": "intended_use", "version": 1}"#).unwrap();
        assert_eq!(ok.version, 1);
        for body in [
            &br#"["intended_use", 1]"#[..],
            b"1",
            br#""intended_use""#,
            b"null",
        ] {
            let p = parse_json::<Grant>(body).unwrap_err();
            assert_eq!(p.status, 422, "{}", String::from_utf8_lossy(body));
            assert_eq!(p.field.as_deref(), Some("body"));
        }
        // Not JSON at all stays a 400.
        assert_eq!(
            parse_json::<Grant>(b"[intended_use").unwrap_err().status,
            400
        );
    }
}
