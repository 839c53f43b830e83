//! `local-platform`: the local stand-in for production's HTTPS load balancer. One entry point
//! (`127.0.0.1:8080`) routes the production paths (`/v1/auth/...`, `/v1/sleep-logs...`,
//! `/v1/imports/...`) to the functions running on their own ports, and merges their OpenAPI
//! documents at `/v1/openapi.json`. Local only: it is not deployed (the URL map is Terraform's).

pub mod demo;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::config::{HttpConfig, PlatformConfig};
use common::error::Problem;

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "local-platform", about = "Local load balancer and demo")]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    /// URL map as `prefix=upstream` pairs separated by commas, longest prefix wins, e.g.
    /// `/v1/auth=http://127.0.0.1:8081,/v1/sleep-logs=http://127.0.0.1:8082`.
    #[arg(long, env = "ROUTES")]
    pub routes: String,
}

/// One URL-map entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Path prefix, matched at a segment boundary.
    pub prefix: String,
    /// Base URL of the function.
    pub upstream: String,
}

/// Parses `prefix=upstream,...`.
pub fn parse_routes(spec: &str) -> Result<Vec<Route>, String> {
    let mut routes: Vec<Route> = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (prefix, upstream) = pair
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not prefix=upstream"))?;
            Ok(Route {
                prefix: prefix.trim_end_matches('/').to_owned(),
                upstream: upstream.trim_end_matches('/').to_owned(),
            })
        })
        .collect::<Result<_, String>>()?;
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

/// Shared state.
#[derive(Clone)]
pub struct Gateway {
    routes: std::sync::Arc<Vec<Route>>,
    client: reqwest::Client,
}

impl Gateway {
    /// A gateway over the given URL map.
    pub fn new(routes: Vec<Route>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            routes: std::sync::Arc::new(routes),
            client,
        }
    }

    fn upstream_for(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            path == r.prefix
                || path.starts_with(&format!("{}/", r.prefix))
                || path.starts_with(&format!("{}?", r.prefix))
        })
    }
}

/// The entry point's router.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(merged_openapi))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(proxy)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(gateway)
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

async fn proxy(State(gw): State<Gateway>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(route) = gw.upstream_for(&path).cloned() else {
        return Problem::not_found().into_response();
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or(path);
    let url = format!("{}{}", route.upstream, pq);
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::HOST);
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(413, "payload_too_large", "request body too large")
                .into_response();
        }
    };
    let upstream = gw
        .client
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match upstream {
        Ok(res) => {
            let status = res.status();
            let mut out_headers = res.headers().clone();
            for h in HOP_BY_HOP {
                out_headers.remove(h);
            }
            let bytes: Bytes = res.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            out_headers.remove(HeaderName::from_static("content-length"));
            response.headers_mut().extend(out_headers);
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = %route.upstream, "upstream unavailable");
            (
                StatusCode::BAD_GATEWAY,
                Problem::new(
                    502,
                    "bad_gateway",
                    "the function behind this path is not reachable",
                ),
            )
                .into_response()
        }
    }
}

/// Merges every function's `/openapi.json` into one document (paths and component schemas).
async fn merged_openapi(State(gw): State<Gateway>) -> Response {
    let mut upstreams: Vec<&str> = gw.routes.iter().map(|r| r.upstream.as_str()).collect();
    upstreams.sort();
    upstreams.dedup();
    let mut docs = Vec::new();
    for u in upstreams {
        match gw.client.get(format!("{u}/openapi.json")).send().await {
            Ok(res) if res.status().is_success() => match res.json::<serde_json::Value>().await {
                Ok(doc) => docs.push(doc),
                Err(_) => {
                    return Problem::new(
                        502,
                        "bad_gateway",
                        format!("{u} served an unreadable OpenAPI document"),
                    )
                    .into_response();
                }
            },
            _ => {
                return Problem::new(
                    502,
                    "bad_gateway",
                    format!("{u} did not serve its OpenAPI document"),
                )
                .into_response();
            }
        }
    }
    Json(merge_docs(&docs)).into_response()
}

/// Merges OpenAPI documents: the union of `paths`, `components.schemas` and `components.securitySchemes`.
pub fn merge_docs(docs: &[serde_json::Value]) -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut security = serde_json::Map::new();
    for doc in docs {
        if let Some(p) = doc["paths"].as_object() {
            for (k, v) in p {
                // The public API only: health checks and Pub/Sub push endpoints are not behind
                // the load balancer (each function's own document still lists them).
                if !k.starts_with("/v1/") {
                    continue;
                }
                paths.insert(k.clone(), v.clone());
            }
        }
        if let Some(s) = doc["components"]["schemas"].as_object() {
            schemas.extend(s.clone());
        }
        if let Some(s) = doc["components"]["securitySchemes"].as_object() {
            security.extend(s.clone());
        }
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "dta-wide API", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": security},
    })
}

/// Serves the entry point until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let routes = parse_routes(&config.routes)?;
    common::http::serve(app(Gateway::new(routes)), &config.http).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_at_segment_boundaries() {
        let gw = Gateway::new(parse_routes("/v1=http://a,/v1/auth=http://b").unwrap());
        assert_eq!(
            gw.upstream_for("/v1/auth/login").unwrap().upstream,
            "http://b"
        );
        assert_eq!(gw.upstream_for("/v1/authx").unwrap().upstream, "http://a");
        assert!(gw.upstream_for("/v2/x").is_none());
    }

    #[test]
    fn merged_documents_keep_every_path() {
        let a = serde_json::json!({"paths": {"/v1/a": {"get": {}}, "/healthz": {"get": {}}}, "components": {"schemas": {"A": {}}}});
        let b = serde_json::json!({"paths": {"/v1/b": {"post": {}}}, "components": {"schemas": {"B": {}}}});
        let m = merge_docs(&[a, b]);
        assert_eq!(m["paths"].as_object().unwrap().len(), 2);
        assert!(m["components"]["schemas"]["B"].is_object());
    }
}
