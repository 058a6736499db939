//! What orchestrators read: the probes. (Metrics have a listener of their own:
//! `ingest.metrics`.)

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "`ok`", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The process is alive (Kubernetes' liveness probe).
#[utoipa::path(get, path = "/livez", tag = "operations", operation_id = "livez",
    responses((status = 200, description = "`ok`", body = String)))]
pub async fn livez() -> &'static str {
    "ok"
}

/// Postgres and Redis answer and the process is not stopping (Kubernetes' readiness probe).
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "`ready`", body = String),
        (status = 503, description = "what is not ready, in plain text", body = String),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    state.probes.readiness().await
}
