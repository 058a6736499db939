//! The Cloud API's send: validation as Meta does it, the number's limits and faults, the
//! answer, and the receipts it schedules. The number's profile and templates are in `account`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_shared::whatsapp::{GraphError, GraphErrorBody};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;

use herald_shared::whatsapp::message;

use crate::AppState;
use crate::state::{Acceptance, Active, Verdict, http_status_of};
use crate::webhooks::Receipt;

/// The largest send body read (a template send is well under 4 KiB; a text body at most 4,096
/// characters).
const MAX_SEND_BODY: usize = 64 * 1024;

/// A send request as Meta reads it: every field optional, so that a missing one can be named.
#[derive(Deserialize)]
struct SendBody<'a> {
    #[serde(borrow)]
    messaging_product: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    template: Option<TemplateBody<'a>>,
    #[serde(borrow)]
    biz_opaque_callback_data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TemplateBody<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    language: Option<LanguageBody<'a>>,
    #[serde(default, borrow)]
    components: Vec<ComponentBody<'a>>,
}

#[derive(Deserialize)]
struct LanguageBody<'a> {
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ComponentBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// Only counted.
    #[serde(default)]
    parameters: Vec<IgnoredAny>,
}

/// The 200 answer to an accepted send.
#[derive(Serialize)]
struct Accepted<'a> {
    messaging_product: &'static str,
    contacts: [Contact<'a>; 1],
    messages: [AcceptedMessage<'a>; 1],
}

#[derive(Serialize)]
struct Contact<'a> {
    input: &'a str,
    wa_id: &'a str,
}

#[derive(Serialize)]
struct AcceptedMessage<'a> {
    id: &'a str,
    message_status: &'static str,
}

/// A Graph error answer.
pub fn graph_error(state: &AppState, code: i64, details: &str) -> Response {
    state.sim.rejected(code);
    let status = StatusCode::from_u16(http_status_of(code)).unwrap_or(StatusCode::BAD_REQUEST);
    let body = GraphErrorBody {
        error: GraphError {
            code,
            message: format!("(#{code}) {details}"),
            kind: Some("OAuthException".into()),
            error_subcode: None,
            error_data: Some(json!({"messaging_product": "whatsapp", "details": details})),
            fbtrace_id: Some(format!("Sim{:016X}", rand_id(state))),
        },
    };
    (status, Json(body)).into_response()
}

fn rand_id(state: &AppState) -> u64 {
    state.sim.next_rand().1.next_u64()
}

/// Checks the bearer token against the number's (any non-empty one for an unconfigured
/// number in an open sandbox). `Err` holds the error code and details to answer with.
pub(crate) fn authorize(
    active: &Active,
    headers: &HeaderMap,
    phone_number_id: &str,
) -> Result<(), (i64, String)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err((190, "An access token is required".into()));
    };
    match active.number(phone_number_id) {
        Some(number) => match &number.token {
            Some(expected) if expected != token => Err((190, "Invalid OAuth access token".into())),
            _ => Ok(()),
        },
        None if active.config.strict => Err((
            100,
            format!("Unsupported request: object with ID '{phone_number_id}' does not exist"),
        )),
        None => Ok(()),
    }
}

pub async fn send_message(
    State(state): State<Arc<AppState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let _in_flight = state.sim.in_flight();
    // The parts by hand: axum's `HeaderMap` extractor copies the headers of every send.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let Ok(body) = axum::body::to_bytes(body, MAX_SEND_BODY).await else {
        return graph_error(
            &state,
            100,
            "Invalid parameter: the body is unreadable or too long",
        );
    };
    let active = state.sim.active();
    if active.config.lean {
        let wamid = state.sim.lean_accept(&phone_number_id);
        let body = format!(r#"{{"messaging_product":"whatsapp","messages":[{{"id":"{wamid}"}}]}}"#);
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    if let Err((code, details)) = authorize(&active, headers, &phone_number_id) {
        return graph_error(&state, code, &details);
    }
    if let Some(fence) = headers
        .get(herald_shared::whatsapp::FENCE_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        state.sim.observe_fence(&phone_number_id, fence);
    }
    let message: SendBody = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return graph_error(&state, 100, &format!("Invalid parameter: {e}")),
    };
    let (to, callback) = match validate(&active, &phone_number_id, &message, &body) {
        Ok(valid) => valid,
        Err((code, details)) => return graph_error(&state, code, &details),
    };
    if active.config.window
        && message.kind.as_deref() != Some("template")
        && !state.sim.window_open(&phone_number_id, to)
    {
        return graph_error(
            &state,
            131047,
            "Re-engagement message: more than 24 hours have passed since the recipient last replied to the sender number",
        );
    }
    let (seq, mut rand) = state.sim.next_rand();
    let verdict = state
        .sim
        .decide(&active, &mut rand, seq, &phone_number_id, to, callback);
    let latency = rand.delay(&active.config.latency);
    let receipt = |a: &Acceptance| Receipt {
        seq,
        phone_number_id: phone_number_id.clone(),
        wamid: a.wamid.clone(),
        recipient: to.trim_start_matches('+').to_owned(),
        callback: callback.map(str::to_owned),
        fails_with: a.fails_with,
    };
    match verdict {
        Verdict::Accept(acceptance) => {
            state.queue.accepted(|| receipt(&acceptance));
            state.sim.capture(active.config.capture, &body);
            wait(&state, latency).await;
            Json(Accepted {
                messaging_product: "whatsapp",
                contacts: [Contact {
                    input: to,
                    wa_id: to.trim_start_matches('+'),
                }],
                messages: [AcceptedMessage {
                    id: &acceptance.wamid,
                    message_status: "accepted",
                }],
            })
            .into_response()
        }
        Verdict::Reject { code, .. } => {
            wait(&state, latency).await;
            graph_error(&state, code, "Simulated error")
        }
        Verdict::Http { status } => {
            state.sim.http_errors.fetch_add(1, Relaxed);
            wait(&state, latency).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, "simulated upstream failure").into_response()
        }
        Verdict::Timeout(accepted) => {
            state.sim.timeouts.fetch_add(1, Relaxed);
            if let Some(acceptance) = &accepted {
                state.queue.accepted(|| receipt(acceptance));
            }
            // Hold the request until the client gives up (or the simulator stops).
            wait(&state, Duration::from_secs(3600)).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Verdict::Reset(accepted) => {
            state.sim.resets.fetch_add(1, Relaxed);
            if let Some(acceptance) = &accepted {
                state.queue.accepted(|| receipt(acceptance));
            }
            wait(&state, latency).await;
            reset()
        }
    }
}

/// Meta's size limit for a media type, or `None` for a type it does not take.
fn media_limit(mime_type: &str) -> Option<usize> {
    const MB: usize = 1024 * 1024;
    Some(match mime_type {
        "image/jpeg" | "image/png" => 5 * MB,
        "image/webp" => 500 * 1024,
        "video/mp4" | "video/3gpp" | "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4"
        | "audio/ogg" => 16 * MB,
        "text/plain" | "application/pdf" => 100 * MB,
        t if t.starts_with("application/vnd.") || t == "application/msword" => 100 * MB,
        _ => return None,
    })
}

/// `POST /{version}/{phone_number_id}/media`: a file for the number's messages, as Meta takes
/// it (`multipart/form-data`: `messaging_product`, `type`, `file`); answers its media id.
pub async fn upload_media(
    State(state): State<Arc<AppState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let active = state.sim.active();
    if let Err((code, details)) = authorize(&active, &headers, &phone_number_id) {
        return graph_error(&state, code, &details);
    }
    let (mut product, mut declared, mut file) = (None, None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return graph_error(&state, 100, &format!("Invalid parameter: {e}")),
        };
        match field.name() {
            Some("messaging_product") => product = field.text().await.ok(),
            Some("type") => declared = field.text().await.ok(),
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let part_type = field.content_type().unwrap_or_default().to_owned();
                match field.bytes().await {
                    Ok(bytes) => file = Some((name, part_type, bytes)),
                    Err(e) => return graph_error(&state, 100, &format!("Invalid parameter: {e}")),
                }
            }
            _ => {}
        }
    }
    if product.as_deref() != Some("whatsapp") {
        return graph_error(
            &state,
            100,
            "Invalid parameter: messaging_product must be \"whatsapp\"",
        );
    }
    let Some((file_name, part_type, bytes)) = file.filter(|(_, _, b)| !b.is_empty()) else {
        return graph_error(&state, 100, "Required parameter is missing: file");
    };
    let mime_type = declared.unwrap_or(part_type);
    let Some(most) = media_limit(&mime_type) else {
        return graph_error(
            &state,
            100,
            &format!("Invalid parameter: type {mime_type} is not supported"),
        );
    };
    if bytes.len() > most {
        return graph_error(
            &state,
            131053,
            "Media upload error: the file is larger than its type allows",
        );
    }
    let id = (100_000_000_000_000 + rand_id(&state) % 900_000_000_000_000).to_string();
    state.sim.uploaded(json!({
        "id": id, "phone_number_id": phone_number_id, "mime_type": mime_type,
        "file_name": file_name, "bytes": bytes.len(),
    }));
    Json(json!({"id": id})).into_response()
}

/// Sleeps for `delay`, or less if the simulator is stopping.
async fn wait(state: &AppState, delay: Duration) {
    if delay.is_zero() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = state.shutdown.cancelled() => {}
    }
}

/// A response whose body fails before its first byte: hyper closes the connection without
/// an answer, as a reset does.
fn reset() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated reset",
        ))
    });
    Response::new(Body::from_stream(failing))
}

/// Checks a send like Meta does; returns the recipient and callback data, or the error code
/// and what is wrong.
fn validate<'a>(
    active: &Active,
    phone_number_id: &str,
    m: &'a SendBody<'_>,
    raw: &[u8],
) -> Result<(&'a str, Option<&'a str>), (i64, String)> {
    let invalid = |what: &str| Err((100, format!("Invalid parameter: {what}")));
    if m.messaging_product.as_deref() != Some("whatsapp") {
        return invalid("messaging_product must be \"whatsapp\"");
    }
    let Some(to) = m.to.as_deref() else {
        return Err((100, "Required parameter is missing: to".into()));
    };
    let digits = to.chars().filter(char::is_ascii_digit).count();
    let allowed = to
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
    if !allowed || !(7..=15).contains(&digits) {
        return invalid("to is not a phone number");
    }
    if let Some(callback) = &m.biz_opaque_callback_data
        && callback.len() > 512
    {
        return invalid("biz_opaque_callback_data is longer than 512 characters");
    }
    match m.kind.as_deref() {
        Some("template") => {
            let Some(template) = &m.template else {
                return Err((100, "Required parameter is missing: template".into()));
            };
            let (Some(name), Some(language)) = (
                template.name.as_deref(),
                template.language.as_ref().and_then(|l| l.code.as_deref()),
            ) else {
                return Err((
                    100,
                    "Required parameter is missing: template name or language".into(),
                ));
            };
            let waba = active
                .number(phone_number_id)
                .map_or("simulated-waba", |n| n.waba_id.as_str());
            match active.template(waba, name, language) {
                Some(t) if t.status != "APPROVED" => {
                    let code = match t.status.as_str() {
                        "PAUSED" => 132015,
                        "DISABLED" => 132016,
                        _ => 132001,
                    };
                    return Err((
                        code,
                        format!("template {name} ({language}) is {}", t.status),
                    ));
                }
                Some(t) if t.components.is_some() => check_components(t, raw)?,
                Some(t) => {
                    let given: usize = template
                        .components
                        .iter()
                        .filter(|c| c.kind == "body")
                        .map(|c| c.parameters.len())
                        .sum();
                    if given != t.body_params {
                        return Err((
                            132000,
                            format!(
                                "number of parameters ({given}) does not match the expected number of params ({})",
                                t.body_params
                            ),
                        ));
                    }
                }
                None if active.config.strict => {
                    return Err((
                        132001,
                        format!("template name ({name}) does not exist in {language}"),
                    ));
                }
                None => {}
            }
        }
        Some(kind) if message::FREE_FORM.contains(&kind) => {
            let body: serde_json::Value = serde_json::from_slice(raw)
                .map_err(|e| (100, format!("Invalid parameter: {e}")))?;
            message::check(kind, &body[kind]).map_err(|p| {
                let what = if p.missing {
                    "Required parameter is missing"
                } else {
                    "Invalid parameter"
                };
                (100, format!("{what}: {} {}", p.field, p.reason))
            })?;
        }
        Some(other) => return invalid(&format!("type {other} is not supported here")),
        None => return Err((100, "Required parameter is missing: type".into())),
    }
    Ok((to, m.biz_opaque_callback_data.as_deref()))
}

/// Checks a send's `components` against a template defined with Graph components, as Meta
/// does: the header's kind, the body's count (and names, for a named template), the buttons
/// that need a value. Only for templates with `components`, so the common body-only send stays
/// on the fast path.
fn check_components(t: &crate::config::TemplateDef, raw: &[u8]) -> Result<(), (i64, String)> {
    use herald_shared::template::{ButtonKind, Header, MediaKind, Spec};
    use serde_json::Value;
    let spec = Spec::from_graph(
        t.parameter_format.as_deref(),
        t.components.as_deref().unwrap_or_default(),
    );
    let body: Value =
        serde_json::from_slice(raw).map_err(|e| (100, format!("Invalid parameter: {e}")))?;
    let sent = body["template"]["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |kind: &'static str| sent.iter().filter(move |c| c["type"] == kind);
    let parameters = |c: &Value| c["parameters"].as_array().cloned().unwrap_or_default();
    let mismatch = |what: String| {
        Err((
            132012,
            format!("Parameter format does not match format in the created template: {what}"),
        ))
    };
    let texts_ok = sent.iter().flat_map(parameters).all(|p| {
        p["type"] != "text"
            || p["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty() && !t.contains(['\n', '\t']) && !t.contains("     "))
    });
    if !texts_ok {
        return Err((100, "Invalid parameter: a text parameter is empty or has a newline, a tab or more than 4 spaces in a row".into()));
    }
    let header: Vec<Value> = of("header").flat_map(parameters).collect();
    match &spec.header {
        None if !header.is_empty() => {
            return mismatch("the template has no header variable".into());
        }
        None => {}
        Some(Header::Text { .. }) if header.len() != 1 || header[0]["type"] != "text" => {
            return mismatch("header: expected one text parameter".into());
        }
        Some(Header::Text { .. }) => {}
        Some(Header::Media { media }) => {
            let kind = match media {
                MediaKind::Image => "image",
                MediaKind::Video => "video",
                MediaKind::Document => "document",
            };
            let media = header.first().map(|p| &p[kind]);
            let given = media.is_some_and(|m| m["id"].is_string() || m["link"].is_string());
            if header.len() != 1 || header[0]["type"] != kind || !given {
                return mismatch(format!("header: expected one {kind} with an id or a link"));
            }
        }
    }
    let body_params: Vec<Value> = of("body").flat_map(parameters).collect();
    if body_params.len() != spec.body.len() {
        return Err((
            132000,
            format!(
                "number of parameters ({}) does not match the expected number of params ({})",
                body_params.len(),
                spec.body.len()
            ),
        ));
    }
    for p in &body_params {
        let name = p["parameter_name"].as_str();
        match (spec.named, name) {
            (true, Some(n)) if spec.body.iter().any(|b| b == n) => {}
            (false, None) => {}
            _ => return mismatch(format!("body parameter_name {name:?}")),
        }
    }
    let buttons: Vec<&Value> = of("button").collect();
    for b in &buttons {
        let index: Option<u8> = b["index"].as_str().and_then(|i| i.parse().ok());
        let declared = spec.buttons.iter().find(|d| Some(d.index) == index);
        let Some(declared) = declared else {
            return mismatch(format!("button {index:?} takes no parameter"));
        };
        let (sub_type, parameter) = match declared.kind {
            ButtonKind::Url => ("url", "text"),
            ButtonKind::QuickReply => ("quick_reply", "payload"),
            ButtonKind::CopyCode => ("copy_code", "coupon_code"),
        };
        let p = parameters(b);
        if b["sub_type"] != sub_type
            || p.len() != 1
            || p[0]["type"] != parameter
            || !p[0][parameter].is_string()
        {
            return mismatch(format!(
                "button {}: expected a {sub_type} with a {parameter}",
                declared.index
            ));
        }
    }
    for declared in spec
        .buttons
        .iter()
        .filter(|d| d.kind != ButtonKind::QuickReply)
    {
        let index = declared.index.to_string();
        if !buttons.iter().any(|b| b["index"] == index.as_str()) {
            return Err((
                131008,
                format!("Required parameter is missing: button {index}"),
            ));
        }
    }
    Ok(())
}
