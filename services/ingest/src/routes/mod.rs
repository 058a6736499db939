//! The `/v1` router, API-key authentication and the JSON body extractor.

pub mod campaigns;
pub mod numbers;
pub mod suppressions;
pub mod templates;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use herald_shared::crypto::hash_api_key;
use herald_shared::db::tenants;
use herald_shared::domain::TenantId;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

pub fn router(state: Arc<AppState>, max_body_bytes: usize, max_upload_bytes: usize) -> Router {
    Router::new()
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
        .route("/v1/templates/sync", post(templates::sync))
        .route("/v1/campaigns", post(campaigns::create))
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route(
            "/v1/campaigns/{id}/recipients",
            post(campaigns::add_recipients).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route(
            "/v1/campaigns/{id}/uploads/{upload_id}/errors.csv",
            get(campaigns::upload_errors),
        )
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
            "ingest",
            herald_shared::telemetry::timed,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
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
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
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
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
