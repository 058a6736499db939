//! A campaign's messages: listed a page at a time, or exported whole as CSV, streamed page by
//! page so that memory stays flat whatever the campaign's size.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use herald_shared::db::campaigns;
use herald_shared::db::messages::{self, MessageView};
use herald_shared::domain::{CampaignId, MessageStatus, TenantId};
use serde::Deserialize;

use super::page::{Page, PageQuery};
use super::{ApiPath, ApiQuery, Tenant};
use crate::{ApiError, AppState};

/// Rows per query of an export.
const EXPORT_PAGE: i64 = 2_500;

/// The export's columns, in `MessageView`'s order.
const COLUMNS: &str = "id,recipient,status,attempts,error_code,error_title,wamid,number,\
template,created_at,queued_at,sent_at,delivered_at,read_at,failed_at\n";

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<MessageStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn ensure_campaign(
    state: &AppState,
    tenant: TenantId,
    id: CampaignId,
) -> Result<(), ApiError> {
    match campaigns::tenant_of(&state.pool, id).await? {
        Some(owner) if owner == tenant => Ok(()),
        _ => Err(ApiError::NotFound("campaign")),
    }
}

/// The campaign's messages by id, in one `status` when given, a page at a time.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<MessageView>>, ApiError> {
    ensure_campaign(&state, tenant, id).await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after = page.after_parsed::<i64>()?.unwrap_or(0);
    let rows = messages::page(&state.pool, id, q.status, after, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |m| m.id.0.to_string())))
}

/// Every message of the campaign as CSV (the listing's fields), streamed.
pub async fn export(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    ensure_campaign(&state, tenant, id).await?;
    let pool = state.pool.clone();
    let status = q.status;
    let header = futures::stream::once(async { Ok(Bytes::from_static(COLUMNS.as_bytes())) });
    let pages = futures::stream::try_unfold(Some(0i64), move |after| {
        let pool = pool.clone();
        async move {
            let Some(after) = after else { return Ok(None) };
            let rows = messages::page(&pool, id, status, after, EXPORT_PAGE)
                .await
                .map_err(std::io::Error::other)?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            let next = (rows.len() as i64 == EXPORT_PAGE).then_some(last.id.0);
            Ok::<_, std::io::Error>(Some((csv_rows(&rows)?, next)))
        }
    });
    let body = Body::from_stream(header.chain(pages));
    let name = format!("attachment; filename=\"campaign-{id}-messages.csv\"");
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

fn csv_rows(rows: &[MessageView]) -> std::io::Result<Bytes> {
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(rows.len() * 160));
    for row in rows {
        out.serialize(row).map_err(std::io::Error::other)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Bytes::from(bytes))
}
