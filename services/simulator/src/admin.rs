//! The simulator's own controls, under `/sim`: configuration at run time, inbound messages,
//! statistics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::config::{NumberDef, SimConfig};
use crate::state::StatsReport;
use crate::webhooks::Inbound;

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<StatsReport> {
    Json(state.sim.report())
}

pub async fn reset_stats(State(state): State<Arc<AppState>>) -> StatusCode {
    state.sim.reset_stats();
    StatusCode::NO_CONTENT
}

/// The accepted send bodies kept (`capture` in the configuration), oldest first.
pub async fn sent(State(state): State<Arc<AppState>>) -> Json<Value> {
    let sent: Vec<Value> = state
        .sim
        .sent()
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    Json(json!({ "sent": sent }))
}

/// The files uploaded for numbers' messages, oldest first.
pub async fn media(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "media": state.sim.media() }))
}

pub async fn get_config(State(state): State<Arc<AppState>>) -> Json<SimConfig> {
    Json(state.sim.active().config.clone())
}

/// Applies a JSON merge patch to the configuration: `{"cap_per_number": 40}` lowers every
/// number's cap from now on; `{"faults": [...]}` starts an error storm.
pub async fn patch_config(
    State(state): State<Arc<AppState>>,
    Json(patch): Json<Value>,
) -> Response {
    match state.sim.active().config.patched(&patch) {
        Ok(config) => {
            state.sim.configure(config.clone());
            Json(config).into_response()
        }
        Err(e) => bad_request(&format!("{e:#}")),
    }
}

/// Adds or replaces one number (its token, cap, portfolio…).
pub async fn put_number(
    State(state): State<Arc<AppState>>,
    Path(phone_number_id): Path<String>,
    Json(mut number): Json<NumberDef>,
) -> Response {
    number.phone_number_id = phone_number_id;
    let mut config = state.sim.active().config.clone();
    config
        .numbers
        .retain(|n| n.phone_number_id != number.phone_number_id);
    config.numbers.push(number.clone());
    state.sim.configure(config);
    Json(number).into_response()
}

// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Deserialize)]
pub struct InboundRequest {
    phone_number_id: String,
    /// The user's number (digits, as Meta's `wa_id`).
    from: String,
    #[serde(flatten)]
    message: Inbound,
    /// The wamid the user replied to, if any.
    #[serde(default)]
    context: Option<String>,
}

/// Makes a user send a message to a business number (a reply, a tap, media, a reaction, a
/// `STOP`); their customer-service window opens.
pub async fn inbound(
    State(state): State<Arc<AppState>>,
    Json(req): Json<InboundRequest>,
) -> Response {
    let wamid = state
        .queue
        .inbound(&req.phone_number_id, &req.from, req.message, req.context);
    (StatusCode::ACCEPTED, Json(json!({"id": wamid}))).into_response()
}

#[derive(Deserialize)]
pub struct ClockRequest {
    /// Seconds to move the simulator's clock ahead (its customer-service windows close).
    advance_s: i64,
}

/// Moves the simulator's clock ahead: users' windows close as if that much time had passed.
pub async fn clock(State(state): State<Arc<AppState>>, Json(req): Json<ClockRequest>) -> Response {
    if req.advance_s < 0 {
        return bad_request("advance_s must not be negative: the clock only moves ahead");
    }
    let now = state.sim.advance_clock(req.advance_s);
    Json(json!({"now": now})).into_response()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}
