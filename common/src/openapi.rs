//! A router that records every route it serves, so a test can compare the served routes
//! with the OpenAPI document (TR-03161-3 O.Arch_7: no undocumented access).

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::routing::MethodRouter;

/// Records `(METHOD, path)` for every route added.
pub struct ApiRouter<S> {
    paths: BTreeMap<String, MethodRouter<S>>,
    routes: Vec<(String, String)>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! method {
    ($name:ident, $verb:literal) => {
        /// Adds a route for this method.
        pub fn $name<H, T>(mut self, path: &str, handler: H) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            let mr = self.paths.remove(path).unwrap_or_default();
            self.paths.insert(path.to_owned(), mr.$name(handler));
            self.routes.push(($verb.to_owned(), path.to_owned()));
            self
        }
    };
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    /// An empty router.
    pub fn new() -> Self {
        Self {
            paths: BTreeMap::new(),
            routes: Vec::new(),
        }
    }

    method!(get, "GET");
    method!(post, "POST");
    method!(put, "PUT");
    method!(delete, "DELETE");

    /// Every `(METHOD, path)` served, in the order added.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.routes.clone()
    }

    /// The axum router.
    pub fn into_router(self) -> Router<S> {
        self.paths
            .into_iter()
            .fold(Router::new(), |r, (path, mr)| r.route(&path, mr))
    }
}

/// Every `(METHOD, path)` an OpenAPI document declares.
pub fn documented_routes(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                        out.push((method.to_ascii_uppercase(), path.clone()));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// `(METHOD, path)` pairs.
pub type Routes = Vec<(String, String)>;

/// The routes served but missing from the document, and documented but not served.
pub fn route_diff(served: &[(String, String)], doc: &serde_json::Value) -> (Routes, Routes) {
    let documented = documented_routes(doc);
    let missing = served
        .iter()
        .filter(|r| !documented.contains(r))
        .cloned()
        .collect();
    let extra = documented
        .iter()
        .filter(|r| !served.contains(r))
        .cloned()
        .collect();
    (missing, extra)
}

/// Adds the bearer (JWT) security scheme every data route refers to as `bearer`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
