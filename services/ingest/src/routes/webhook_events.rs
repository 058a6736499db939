//! `GET /v1/webhook-events`: the tenant's webhook log — every body Meta sent that names one of
//! its numbers or WABAs, newest first, with what processing made of it (kept
//! `webhook.retention_days`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_shared::db::webhook_events::{self, Logged, Outcome};
use serde::{Deserialize, Serialize};

use super::page::{Page, PageQuery};
use super::{ApiQuery, Tenant};
use crate::{ApiError, AppState};

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct WebhookEventView {
    pub id: i64,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `applied`, or `malformed` (kept and skipped: `error` says why).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The body as Meta sent it: JSON, or the text when it is not JSON.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<Logged> for WebhookEventView {
    fn from(e: Logged) -> Self {
        let body = serde_json::from_slice(&e.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&e.body).into()));
        Self {
            id: e.id,
            received_at: e.received_at,
            processed_at: e.processed_at,
            outcome: match e.outcome {
                Outcome::Applied => "applied",
                Outcome::Malformed => "malformed",
            }
            .to_owned(),
            error: e.error,
            body,
        }
    }
}

/// The tenant's webhook log, newest first.
#[utoipa::path(get, path = "/v1/webhook-events", tag = "webhook-events", operation_id = "list_webhook_events",
    params(PageQuery),
    responses((status = 200, description = "a page of webhook bodies", body = Page<WebhookEventView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<WebhookEventView>>, ApiError> {
    let limit = page.limit()?;
    let rows = webhook_events::page(&state.pool, tenant, page.after_parsed()?, limit + 1).await?;
    let page = Page::new(rows, limit, |e| e.arrival().to_string());
    Ok(Json(page.map(WebhookEventView::from)))
}
