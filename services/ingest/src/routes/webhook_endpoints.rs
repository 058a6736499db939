//! A tenant's webhook endpoints: where Herald tells it of what happens (a campaign started,
//! completed or paused; a number paused or resumed; a recipient opted out), signed as Standard
//! Webhooks has it. The signing secret is shown when the endpoint is made and when it is
//! rotated, never again; each endpoint has a log of its deliveries, any of which can be sent
//! again.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::db::notifications::{
    self, DeliveryRow, EndpointChange, EndpointRow, NewEndpoint,
};
use herald_shared::standard_webhooks;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::numbers::present;
use super::page::{Page, PageQuery};
use super::{ApiJson, ApiPath, ApiQuery, Tenant};
use crate::{ApiError, AppState};

/// The events an endpoint can receive.
pub const EVENTS: &[&str] = &[
    "campaign.started",
    "campaign.paused",
    "campaign.resumed",
    "campaign.completed",
    "campaign.cancelled",
    "campaign.failed",
    "number.paused",
    "number.resumed",
    "message.failed",
    "inbound.message",
    "recipient.opted_out",
    "recipient.opted_in",
];

const MAX_URL: usize = 2000;
const MAX_DESCRIPTION: usize = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointBody {
    /// Where events are POSTed: an `http` or `https` URL.
    url: String,
    /// The event types to receive (at least one).
    events: Vec<String>,
    description: Option<String>,
}

/// A new endpoint, or one whose secret was rotated: the only answers that hold the secret.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointRow,
    /// `whsec_…`: verify each event's `webhook-signature` with it.
    pub secret: String,
}

fn valid_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    let parsed =
        reqwest::Url::parse(url).map_err(|_| ApiError::invalid_field("url", "is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::invalid_field(
            "url",
            "must be an http or https URL",
        ));
    }
    if url.len() > MAX_URL {
        return Err(ApiError::invalid_field(
            "url",
            format!("must be at most {MAX_URL} characters"),
        ));
    }
    Ok(url.to_owned())
}

fn valid_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid_field(
            "events",
            "must name at least one event",
        ));
    }
    let mut valid = Vec::with_capacity(events.len());
    for event in events {
        if !EVENTS.contains(&event.as_str()) {
            return Err(ApiError::invalid_field(
                "events",
                format!("unknown event {event:?}; known: {}", EVENTS.join(", ")),
            ));
        }
        if !valid.contains(event) {
            valid.push(event.clone());
        }
    }
    Ok(valid)
}

fn valid_description(description: Option<&str>) -> Result<Option<&str>, ApiError> {
    match description.map(str::trim) {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::invalid_field(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        )),
        Some("") | None => Ok(None),
        Some(d) => Ok(Some(d)),
    }
}

/// Makes an endpoint; the answer is the only one (with a rotation's) that shows its secret.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    operation_id = "create_webhook_endpoint",
    request_body = NewEndpointBody,
    responses(
        (status = 201, description = "the endpoint, with its secret shown this once", body = EndpointWithSecret),
        (status = 422, description = "the URL, an event or the description is not acceptable"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<NewEndpointBody>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let url = valid_url(&req.url)?;
    let events = valid_events(&req.events)?;
    let description = valid_description(req.description.as_deref())?;
    let id = uuid::Uuid::now_v7();
    let secret = standard_webhooks::new_secret();
    let sealed = state.cipher.encrypt(&secret, id.as_bytes());
    let endpoint = notifications::insert_endpoint(
        &state.pool,
        &NewEndpoint {
            id,
            tenant,
            url: &url,
            events: &events,
            description,
            secret: &sealed,
        },
    )
    .await?;
    tracing::info!(endpoint = %id, "webhook endpoint created");
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret {
            endpoint,
            secret: secret.expose_secret().to_owned(),
        }),
    ))
}

/// The tenant's endpoints, oldest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    operation_id = "list_webhook_endpoints",
    params(PageQuery),
    responses((status = 200, description = "a page of endpoints", body = Page<EndpointRow>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<EndpointRow>>, ApiError> {
    let limit = page.limit()?;
    let rows =
        notifications::endpoints(&state.pool, tenant, page.after_parsed()?, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |e| e.id.to_string())))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    operation_id = "get_webhook_endpoint",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id")),
    responses(
        (status = 200, description = "the endpoint", body = EndpointRow),
        (status = 404, description = "no such endpoint"),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<EndpointRow>, ApiError> {
    notifications::endpoint(&state.pool, tenant, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchEndpoint {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `null` clears it; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// `true` enables an endpoint disabled after failed deliveries (those waiting go then);
    /// `false` disables it (events for it are kept and wait).
    enabled: Option<bool>,
}

/// Changes an endpoint's URL, events or description, or enables or disables it.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    operation_id = "update_webhook_endpoint",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id")),
    request_body = PatchEndpoint,
    responses(
        (status = 200, description = "the endpoint as changed", body = EndpointRow),
        (status = 404, description = "no such endpoint"),
        (status = 422, description = "a value is not acceptable"),
    ))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(req): ApiJson<PatchEndpoint>,
) -> Result<Json<EndpointRow>, ApiError> {
    let url = req.url.as_deref().map(valid_url).transpose()?;
    let events = req.events.as_deref().map(valid_events).transpose()?;
    let description = match &req.description {
        None => None,
        Some(d) => Some(valid_description(d.as_deref())?),
    };
    let change = EndpointChange {
        url: url.as_deref(),
        events: events.as_deref(),
        description,
        enabled: req.enabled,
    };
    notifications::update_endpoint(&state.pool, tenant, id, &change)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// Deletes an endpoint, with its deliveries.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    operation_id = "delete_webhook_endpoint",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such endpoint"),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    if notifications::delete_endpoint(&state.pool, tenant, id).await? {
        tracing::info!(endpoint = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook endpoint"))
    }
}

/// A new signing secret: deliveries are signed with it from now on (including those waiting).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhook-endpoints",
    operation_id = "rotate_webhook_endpoint_secret",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id")),
    responses(
        (status = 200, description = "the endpoint with its new secret, shown this once", body = EndpointWithSecret),
        (status = 404, description = "no such endpoint"),
    ))]
pub async fn rotate_secret(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let secret = standard_webhooks::new_secret();
    let sealed = state.cipher.encrypt(&secret, id.as_bytes());
    let endpoint = notifications::set_secret(&state.pool, tenant, id, &sealed)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    tracing::info!(endpoint = %id, "webhook endpoint secret rotated");
    Ok(Json(EndpointWithSecret {
        endpoint,
        secret: secret.expose_secret().to_owned(),
    }))
}

/// An endpoint's deliveries, newest first: each event's state, attempts and last answer.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhook-endpoints",
    operation_id = "list_webhook_deliveries",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id"), PageQuery),
    responses(
        (status = 200, description = "a page of deliveries", body = Page<DeliveryRow>),
        (status = 404, description = "no such endpoint"),
    ))]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<DeliveryRow>>, ApiError> {
    let limit = page.limit()?;
    if notifications::endpoint(&state.pool, tenant, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let before = page.after_parsed()?;
    let rows = notifications::deliveries(&state.pool, tenant, id, before, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |d| d.id.to_string())))
}

/// Sends a delivery again, at once (a failed one too).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery}/retry",
    tag = "webhook-endpoints", operation_id = "retry_webhook_delivery",
    params(("id" = uuid::Uuid, Path, description = "the endpoint's id"),
           ("delivery" = i64, Path, description = "the delivery's id")),
    responses(
        (status = 202, description = "it will be sent again shortly"),
        (status = 404, description = "no such endpoint or delivery"),
    ))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath((id, delivery)): ApiPath<(uuid::Uuid, i64)>,
) -> Result<StatusCode, ApiError> {
    if notifications::retry_delivery(&state.pool, tenant, id, delivery).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::NotFound("delivery"))
    }
}
