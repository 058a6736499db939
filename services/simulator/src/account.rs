//! The Cloud API's account reads: a number's profile and a WABA's templates.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{authorize, graph_error};

/// `GET /{version}/{phone_number_id}`: the number's profile, as in `phone-number.json`.
pub async fn phone_number(
    State(state): State<Arc<AppState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let active = state.sim.active();
    if let Err((code, details)) = authorize(&active, &headers, &phone_number_id) {
        return graph_error(&state, code, &details);
    }
    let number = active.number(&phone_number_id);
    state.sim.profiled(&phone_number_id);
    let cap = number
        .and_then(|n| n.cap)
        .unwrap_or(active.config.cap_per_number);
    let throughput = if cap >= 1000 || cap == 0 {
        "HIGH"
    } else {
        "STANDARD"
    };
    let display = number
        .and_then(|n| n.display_phone_number.clone())
        .unwrap_or_else(|| format!("+{phone_number_id}"));
    let quality = number.map_or("GREEN", |n| n.quality_rating.as_str());
    let limit = number.map_or("TIER_UNLIMITED", |n| n.messaging_limit.as_str());
    Json(json!({
        "verified_name": "Simulated Business",
        "display_phone_number": display,
        "quality_rating": quality,
        "code_verification_status": "VERIFIED",
        "name_status": "APPROVED",
        "status": "CONNECTED",
        "platform_type": "CLOUD_API",
        "account_mode": "LIVE",
        "throughput": {"level": throughput},
        "whatsapp_business_manager_messaging_limit": limit,
        "health_status": {"can_send_message": "AVAILABLE"},
        "id": phone_number_id,
    }))
    .into_response()
}

/// `GET /{version}/{waba_id}/phone_numbers`: the numbers the WABA lists (`Sim::numbers_of`), in
/// one page.
pub async fn waba_phone_numbers(
    State(state): State<Arc<AppState>>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !has_bearer(&headers) {
        return graph_error(&state, 190, "An access token is required");
    }
    let active = state.sim.active();
    let data: Vec<Value> = state
        .sim
        .numbers_of(&waba_id)
        .into_iter()
        .map(|id| {
            let number = active.number(&id);
            json!({
                "id": id,
                "display_phone_number": number
                    .and_then(|n| n.display_phone_number.clone())
                    .unwrap_or_else(|| format!("+{id}")),
                "verified_name": "Simulated Business",
                "quality_rating": number.map_or("GREEN", |n| n.quality_rating.as_str()),
            })
        })
        .collect();
    let end = data.len();
    Json(json!({"data": data, "paging": {"cursors": {"before": cursor(0), "after": cursor(end)}}}))
        .into_response()
}

/// Whether a management read carries a bearer token (any: the WABA reads check no more).
fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer ") && v.len() > 7)
}

#[derive(Deserialize)]
pub struct Paging {
    limit: Option<usize>,
    after: Option<String>,
}

/// `GET /{version}/{waba_id}/message_templates`, cursor-paged like Graph.
pub async fn message_templates(
    State(state): State<Arc<AppState>>,
    Path((version, waba_id)): Path<(String, String)>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
) -> Response {
    if !has_bearer(&headers) {
        return graph_error(&state, 190, "An access token is required");
    }
    let active = state.sim.active();
    let all: Vec<_> = active.templates_of(&waba_id).collect();
    let start = match paging.after.as_deref().map(decode_cursor) {
        None => 0,
        Some(Some(i)) => i,
        Some(None) => return graph_error(&state, 100, "Invalid parameter: after"),
    };
    let limit = paging
        .limit
        .unwrap_or(25)
        .clamp(1, active.config.template_page_size.max(1));
    let page: Vec<Value> = all
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(_, t)| {
            // Stable, like Meta's: the same template keeps its id when others come and go.
            let id = herald_shared::hash::fnv1a(&format!("{}/{}", t.name, t.language))
                % 1_000_000_000_000_000;
            json!({
                "name": t.name, "language": t.language, "status": t.status,
                "category": t.category,
                "parameter_format": t.parameter_format.as_deref().unwrap_or("POSITIONAL"),
                "components": t.graph_components(),
                "id": id.to_string(),
            })
        })
        .collect();
    let end = start + page.len();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // `after` is where the next page starts.
    let mut paging = json!({"cursors": {"before": cursor(start), "after": cursor(end)}});
    if end < all.len() {
        paging["next"] = json!(format!(
            "http://{host}/{version}/{waba_id}/message_templates?limit={limit}&after={}",
            cursor(end)
        ));
    }
    if start > 0 {
        paging["previous"] = json!(format!(
            "http://{host}/{version}/{waba_id}/message_templates?limit={limit}&before={}",
            cursor(start)
        ));
    }
    Json(json!({"data": page, "paging": paging})).into_response()
}

/// An opaque cursor: the index, hex-encoded behind a tag.
fn cursor(index: usize) -> String {
    format!("c{index:x}")
}

fn decode_cursor(c: &str) -> Option<usize> {
    usize::from_str_radix(c.strip_prefix('c')?, 16).ok()
}
