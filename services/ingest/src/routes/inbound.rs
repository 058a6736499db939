//! `GET /v1/inbound`: the tenant's inbox — every message users sent to its numbers (texts,
//! media, taps, reactions…), newest first, with the campaign each answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_shared::db::engagement::{self, InboundRecord};
use herald_shared::domain::CampaignId;
use serde::Deserialize;

use super::page::{Page, PageQuery};
use super::{ApiQuery, Tenant};
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboundQuery {
    /// Only the messages answering this campaign.
    campaign_id: Option<CampaignId>,
    /// Only the messages from this user (E.164, `+` and digits).
    from: Option<String>,
    /// Items per page: 1 to 1,000 (100 when not given).
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A user's number as inbound messages store it: `+` and digits, whatever the spacing.
fn sender(from: &str) -> Result<String, ApiError> {
    let digits: String = from
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '+'))
        .collect();
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field(
            "from",
            "must be a phone number in E.164 (+ and digits)",
        ));
    }
    Ok(format!("+{digits}"))
}

/// The tenant's inbound messages, newest first.
#[utoipa::path(get, path = "/v1/inbound", tag = "inbound", operation_id = "list_inbound",
    params(InboundQuery),
    responses((status = 200, description = "a page of inbound messages", body = Page<InboundRecord>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<InboundQuery>,
) -> Result<Json<Page<InboundRecord>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let from = q.from.as_deref().map(sender).transpose()?;
    let rows = engagement::page(
        &state.pool,
        tenant,
        q.campaign_id,
        from.as_deref(),
        page.after_parsed()?,
        limit + 1,
    )
    .await?;
    Ok(Json(Page::new(rows, limit, |m| m.id.to_string())))
}
