//! `GET /webhook` (Meta's handshake) and `POST /webhook` (verify, buffer, answer).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use herald_shared::signature;
use herald_shared::stream::{Connection, Keys, webhooks};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub struct AppState {
    pub probes: herald_shared::health::Probes,
    pub redis: Connection,
    pub keys: Keys,
    pub verify_token: SecretString,
    pub app_secrets: Vec<SecretString>,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/webhook", get(handshake).post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<Arc<AppState>>| async move { state.probes.readiness().await }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            "webhook",
            herald_shared::telemetry::timed,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Answers the challenge when the mode is `subscribe` and the token matches.
async fn handshake(State(state): State<Arc<AppState>>, Query(q): Query<Handshake>) -> Response {
    let expected = state.verify_token.expose_secret();
    let matches = q.mode.as_deref() == Some("subscribe")
        && !expected.is_empty()
        && q.verify_token.as_deref().is_some_and(|t| {
            // Constant time, though the token is less sensitive than the app secret.
            t.len() == expected.len()
                && t.bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
    match (matches, q.challenge) {
        (true, Some(challenge)) => (StatusCode::OK, challenge).into_response(),
        _ => {
            tracing::warn!("webhook handshake refused");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

/// Verifies the signature over the raw body, then buffers the body durably before answering:
/// 200 once it is in Redis, 503 if Redis cannot take it, so that Meta retries.
async fn receive(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = headers.get(signature::HEADER).map(|v| v.as_bytes());
    if let Err(reason) = signature::verify(&state.app_secrets, &body, header) {
        tracing::warn!(%reason, bytes = body.len(), "webhook refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut redis = state.redis.clone();
    match webhooks::buffer(&mut redis, &state.keys, &body).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "webhook not buffered; answering 503 so Meta retries");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
