//! The HTTP surface: the send endpoint and the stats.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use herald_shared::settings::SimulatorSettings;
use herald_shared::whatsapp::{
    GraphError, GraphErrorBody, SendContact, SendResponse, SentMessage, TemplateMessage,
};
use serde_json::json;

use crate::stats::{Stats, StatsReport};
use crate::webhooks::{Queue, Receipt};

pub struct AppState {
    cap_per_number: u32,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    stats: Arc<Stats>,
    queue: Queue,
}

impl AppState {
    pub fn new(settings: &SimulatorSettings, queue: Queue, stats: Arc<Stats>) -> Self {
        Self {
            cap_per_number: settings.cap_per_number,
            windows: Mutex::new(HashMap::new()),
            stats,
            queue,
        }
    }

    /// Admits one send for `number` if fewer than the cap were admitted in the last second.
    fn admit(&self, number: &str) -> bool {
        if self.cap_per_number == 0 {
            return true;
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("window lock");
        let window = windows.entry(number.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= self.cap_per_number as usize {
            return false;
        }
        window.push_back(now);
        true
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send_message))
        .route("/sim/stats", get(stats))
        .with_state(state)
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<StatsReport> {
    Json(state.stats.report())
}

async fn send_message(
    State(state): State<Arc<AppState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let has_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty());
    if !has_token {
        return graph_error(
            &state,
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token.",
        );
    }
    let message: TemplateMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return graph_error(
                &state,
                StatusCode::BAD_REQUEST,
                100,
                &format!("(#100) Invalid parameter: {e}"),
            );
        }
    };
    if message.messaging_product != "whatsapp" || message.to.is_empty() {
        return graph_error(
            &state,
            StatusCode::BAD_REQUEST,
            100,
            "(#100) Invalid parameter",
        );
    }
    if !state.admit(&phone_number_id) {
        return graph_error(
            &state,
            StatusCode::BAD_REQUEST,
            130429,
            "(#130429) Rate limit hit",
        );
    }
    let wamid = format!("wamid.{}", uuid::Uuid::new_v4().simple());
    state.stats.accepted(&phone_number_id, &message.to);
    state.queue.accepted(Receipt {
        phone_number_id,
        wamid: wamid.clone(),
        recipient: message.to.trim_start_matches('+').to_owned(),
        callback: message.biz_opaque_callback_data,
    });
    Json(SendResponse {
        messaging_product: "whatsapp".into(),
        contacts: vec![SendContact {
            wa_id: message.to.trim_start_matches('+').to_owned(),
            input: message.to,
        }],
        messages: vec![SentMessage {
            id: wamid,
            message_status: Some("accepted".into()),
        }],
    })
    .into_response()
}

fn graph_error(state: &AppState, status: StatusCode, code: i64, message: &str) -> Response {
    state.stats.rejected(code);
    let body = GraphErrorBody {
        error: GraphError {
            code,
            message: message.to_owned(),
            kind: Some("OAuthException".into()),
            error_subcode: None,
            error_data: Some(json!({"messaging_product": "whatsapp", "details": message})),
            fbtrace_id: Some(format!("Sim{}", uuid::Uuid::new_v4().simple())),
        },
    };
    (status, Json(body)).into_response()
}
