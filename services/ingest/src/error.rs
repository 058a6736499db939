//! The one error type of the API. Every variant has a documented status; 5xx bodies are
//! opaque and their cause is logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no API key, or one that matches nothing.
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    /// 404: missing, or another tenant's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 400: the request cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the request reads but is not acceptable.
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<FieldError>,
    },
    /// 409: the resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// 502: the Cloud API could not be read.
    #[error("{0}")]
    Upstream(String),
    /// 500: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// One problem with one part of a request (for uploads, one row).
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        Self::Internal(e.into())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            Self::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let details = match &self {
            Self::Invalid { details, .. } => details.as_slice(),
            _ => &[],
        };
        let body = Body {
            error: Inner {
                code,
                message: self.to_string(),
                details,
            },
        };
        (status, Json(body)).into_response()
    }
}
