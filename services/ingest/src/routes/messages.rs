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
use super::{ApiPath, ApiQuery, CampaignPath, Tenant};
use crate::{ApiError, AppState};

/// Rows an export sends at a time (about 64 KiB of CSV).
const ROWS_PER_CHUNK: usize = 400;

/// The export's columns, in `MessageView`'s order.
const COLUMNS: &str = "id,recipient,status,attempts,error_code,error_title,wamid,number,\
template,created_at,queued_at,sent_at,delivered_at,read_at,failed_at\n";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the messages in this status.
    status: Option<MessageStatus>,
    /// Items per page: 1 to 1,000 (100 when not given; the export ignores it).
    limit: Option<i64>,
    /// The `next_cursor` of the page before (the export ignores it).
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
#[utoipa::path(get, path = "/v1/campaigns/{id}/messages", tag = "messages", operation_id = "list_messages",
    params(CampaignPath, ListQuery),
    responses(
        (status = 200, description = "a page of messages", body = Page<MessageView>),
        (status = 404, description = "no such campaign"),
    ))]
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

/// Every message of the campaign as CSV (the listing's fields), streamed: one query whose rows
/// are written as they arrive, in chunks of about 64 KiB, at most a few chunks ahead of the
/// client, so memory stays flat whatever the campaign's size.
#[utoipa::path(get, path = "/v1/campaigns/{id}/messages.csv", tag = "messages", operation_id = "export_messages",
    params(CampaignPath, ListQuery),
    responses(
        (status = 200, description = "every message: `id,recipient,status,attempts,error_code,error_title,wamid,number,template,created_at,queued_at,sent_at,delivered_at,read_at,failed_at`", body = String, content_type = "text/csv"),
        (status = 404, description = "no such campaign"),
    ))]
pub async fn export(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    ensure_campaign(&state, tenant, id).await?;
    let (chunks, body) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let pool = state.pool.clone();
    let status = q.status;
    tokio::spawn(async move {
        if let Err(e) = write_csv(&pool, id, status, &chunks).await {
            // The client sees the body end early; the log says why.
            tracing::warn!(campaign = %id, error = %e, "the export stopped");
            let _ = chunks.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let body = futures::stream::unfold(body, |mut body| async move {
        let chunk = body.recv().await?;
        Some((chunk, body))
    });
    let name = format!("attachment; filename=\"campaign-{id}-messages.csv\"");
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Writes the export into `chunks`; stops quietly when the client has gone.
async fn write_csv(
    pool: &sqlx::PgPool,
    id: CampaignId,
    status: Option<MessageStatus>,
    chunks: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(ROWS_PER_CHUNK * 200);
    buffer.extend_from_slice(COLUMNS.as_bytes());
    // The one statement lasts as long as the client takes to read: no statement timeout.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    let mut rows = messages::all(&mut *tx, id, status);
    loop {
        let mut written = 0;
        {
            let mut out = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut buffer);
            while written < ROWS_PER_CHUNK {
                let Some(row) = rows.next().await else { break };
                out.serialize(&row?)?;
                written += 1;
            }
            out.flush()?;
        }
        if !buffer.is_empty() {
            if chunks
                .send(Ok(Bytes::copy_from_slice(&buffer)))
                .await
                .is_err()
            {
                return Ok(());
            }
            buffer.clear();
        }
        if written < ROWS_PER_CHUNK {
            break;
        }
    }
    Ok(())
}
