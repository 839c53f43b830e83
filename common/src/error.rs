//! The one error body of the whole API: RFC 9457 `application/problem+json`.
//!
//! Every function maps its own `Error` enum into a [`Problem`]. 4xx problems name the offending
//! field; 5xx problems are opaque (the cause is logged once, inside the request span).

use serde::{Deserialize, Serialize};

/// Media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An API error as sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Problem {
    /// URI identifying the problem type (`about:blank` or our own).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// The request field that was wrong, as a JSON path (`out_of_bed`, `naps[0].start`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with the given status, stable code and message.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://dta-wide.de/problems/{code}"),
            title: title_for(status).to_owned(),
            status,
            code: code.to_owned(),
            detail: detail.into(),
            field: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422: a value is syntactically fine but not acceptable.
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(422, "validation_failed", detail).with_field(field)
    }

    /// 400: the body or query could not be read at all.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad_request", detail)
    }

    /// 401: no or no valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "a valid access token is required")
    }

    /// 404: nothing here for this caller (also used for other users' ids, so ids cannot be probed).
    pub fn not_found() -> Self {
        Self::new(404, "not_found", "no such resource")
    }

    /// 409: conflicts with the stored state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "conflict", detail)
    }

    /// 500: opaque; never carries internals.
    pub fn internal() -> Self {
        Self::new(500, "internal", "the request could not be completed")
    }

    /// 503: a dependency is unavailable; retrying later may succeed.
    pub fn unavailable() -> Self {
        Self::new(503, "unavailable", "the service is temporarily unavailable")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "{} {} ({field}): {}",
                self.status, self.code, self.detail
            ),
            None => write!(f, "{} {}: {}", self.status, self.code, self.detail),
        }
    }
}

impl std::error::Error for Problem {}

fn title_for(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(feature = "http")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, PROBLEM_JSON)],
            body,
        )
            .into_response()
    }
}
