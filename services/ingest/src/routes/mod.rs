//! The `/v1` router, API-key authentication and the JSON body extractor.

pub mod api_keys;
pub mod campaigns;
pub mod events;
pub mod idempotency;
pub mod messages;
pub mod numbers;
pub mod page;
pub mod suppressions;
pub mod templates;
pub mod webhook_events;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use herald_shared::crypto::hash_api_key;
use herald_shared::db::tenants;
use herald_shared::domain::TenantId;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

pub fn router(state: Arc<AppState>, max_body_bytes: usize, max_upload_bytes: usize) -> Router {
    Router::new()
        .route("/v1/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
        .route("/v1/numbers", post(numbers::create).get(numbers::list))
        .route(
            "/v1/numbers/{id}",
            get(numbers::get)
                .patch(numbers::update)
                .delete(numbers::delete),
        )
        .route("/v1/numbers/{id}/test", post(numbers::test))
        .route("/v1/numbers/{id}/token", put(numbers::update_token))
        .route("/v1/numbers/{id}/resume", post(numbers::resume))
        .route("/v1/portfolios/{id}", put(numbers::set_portfolio_limit))
        .route(
            "/v1/suppressions",
            post(suppressions::add).get(suppressions::list),
        )
        .route("/v1/suppressions/{phone}", delete(suppressions::remove))
        .route("/v1/templates", get(templates::list))
        .route("/v1/webhook-events", get(webhook_events::list))
        .route("/v1/templates/sync", post(templates::sync))
        .route(
            "/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route(
            "/v1/campaigns/{id}/recipients",
            post(campaigns::add_recipients).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route(
            "/v1/campaigns/{id}/uploads/{upload_id}/errors.csv",
            get(campaigns::upload_errors),
        )
        .route("/v1/campaigns/{id}/events", get(events::stream))
        .route("/v1/campaigns/{id}/messages", get(messages::list))
        .route("/v1/campaigns/{id}/messages.csv", get(messages::export))
        .route("/v1/campaigns/{id}/start", post(campaigns::start))
        .route("/v1/campaigns/{id}/schedule", post(campaigns::schedule))
        .route("/v1/campaigns/{id}/unschedule", post(campaigns::unschedule))
        .route("/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/v1/campaigns/{id}/resume", post(campaigns::resume))
        .route("/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<Arc<AppState>>| async move { state.probes.readiness().await }),
        )
        .route(
            "/metrics",
            get(|| async { herald_shared::telemetry::render_metrics() }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            "ingest",
            herald_shared::telemetry::timed,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// An extractor's rejection in the API's shape, keeping the status axum gave it (413 for a
/// body past the limit, 415 for a missing JSON content type, 422 for JSON of the wrong shape).
pub fn rejected(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid {
            message: text,
            fields: Vec::new(),
        },
        _ => ApiError::BadRequest(text),
    }
}

/// The whole body, at most `limit` bytes (a 413 past it).
pub async fn body_bytes(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return ApiError::TooLarge(format!("the body is larger than {limit} bytes"));
                }
                cause = c.source();
            }
            ApiError::BadRequest(format!("the body cannot be read: {e}"))
        })
}

/// A JSON body read whole: 400 when it is not JSON, 422 when it is JSON of the wrong shape.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = format!("the JSON body does not fit: {e}");
        match e.classify() {
            serde_json::error::Category::Data => rejected(StatusCode::UNPROCESSABLE_ENTITY, text),
            _ => ApiError::BadRequest(text),
        }
    })
}

/// A 415 for a body of media type `got` where `expected` are read.
pub fn unsupported(got: &str, expected: &str) -> ApiError {
    let got = if got.is_empty() { "none" } else { got };
    ApiError::UnsupportedMediaType(format!(
        "Content-Type {got} is not read here: send {expected}"
    ))
}

/// The request's media type (`text/csv`), lower case, without parameters; empty when none.
pub fn media_type(request: &Request) -> String {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The tenant whose API key came with the request.
pub struct Tenant(pub TenantId);

impl FromRequestParts<Arc<AppState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let tenant = tenants::tenant_for_key(&state.pool, &hash_api_key(key.trim()))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Self(tenant))
    }
}

/// `Path<T>` whose rejections use the API's error shape.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// `Json<T>` whose rejections use the API's error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// `Query<T>` whose rejections use the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
