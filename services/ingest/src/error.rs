//! The one error type of the API, and its one JSON shape for every 4xx and 5xx:
//! `{"error": {"code", "message", "fields": [{row?, field, reason}]?}}`. Every variant has a
//! documented status; 5xx bodies are opaque and their cause is logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no API key, or one that matches nothing (or was revoked).
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    /// 404: missing, or another tenant's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 404: no route has this path.
    #[error("no route {method} {path}")]
    NoRoute { method: String, path: String },
    /// 405: the route exists, not with this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// 400: the request cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// 413: the body is larger than the route takes.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the body's content type is not one the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the request reads but is not acceptable.
    #[error("{message}")]
    Invalid {
        message: String,
        fields: Vec<FieldError>,
    },
    /// 409: the resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// 502: the Cloud API could not be read.
    #[error("{0}")]
    Upstream(String),
    /// 429: past the key's request rate, or the tenant's uploads at once; `retry_after` is
    /// sent as `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 503: Postgres cancelled a statement that ran past `ingest.statement_timeout_ms`.
    #[error("the database did not answer in time; try again")]
    Timeout,
    /// 500: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 about one field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Invalid {
            message: format!("{field}: {reason}"),
            fields: vec![FieldError::new(field, reason)],
        }
    }

    /// The status and the stable `code` of the body.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) | Self::NoRoute { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// One problem with one part of a request (for uploads, one row).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl FieldError {
    /// A problem with a field of the request (not an upload row).
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            row: None,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A 422 about one field.
impl From<FieldError> for ApiError {
    fn from(problem: FieldError) -> Self {
        Self::invalid_field(&problem.field, problem.reason)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if herald_shared::db::is_timeout(&e) {
            tracing::warn!(error = %e, "a statement ran past ingest.statement_timeout_ms");
            return Self::Timeout;
        }
        Self::Internal(e.into())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        Self::Internal(e.into())
    }
}

/// The body of every 4xx and 5xx answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// `unauthorized`, `not_found`, `method_not_allowed`, `bad_request`, `too_large`,
    /// `unsupported_media_type`, `invalid`, `conflict`, `rate_limited`, `upstream`, `timeout`
    /// or `internal`.
    code: &'static str,
    message: String,
    /// What is wrong with which field (or upload row), for `invalid`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "request failed");
        }
        let message = self.to_string();
        let retry_after = match &self {
            // Whole seconds, rounded up: never sooner than the limit allows.
            Self::TooManyRequests { retry_after, .. } => {
                Some(retry_after.as_millis().div_ceil(1000).max(1).to_string())
            }
            _ => None,
        };
        let fields = match self {
            Self::Invalid { fields, .. } => fields,
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                fields,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds)
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}
