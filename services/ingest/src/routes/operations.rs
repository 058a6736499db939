//! What operators and orchestrators read: the probes and the metrics.

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

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "the metrics", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics() -> String {
    herald_shared::telemetry::render_metrics()
}
