//! Templates: sync them from Graph, list them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_shared::db::numbers;
use herald_shared::db::templates::{self, Filter, SyncCounts, TemplateRow};
use herald_shared::template::Spec;
use serde::{Deserialize, Serialize};

use super::page::{Page, PageQuery};
use super::{ApiQuery, Tenant};
use crate::catalog::{self, WabaSync};
use crate::limits;
use crate::{ApiError, AppState};

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct SyncReport {
    /// Over every WABA.
    #[serde(flatten)]
    pub counts: SyncCounts,
    pub wabas: Vec<WabaSync>,
}

/// Reads every template of every WABA of the tenant's numbers (every page) and stores them:
/// added, updated (status, category, quality or components changed), removed (no longer
/// listed). 502 when no WABA could be read.
#[utoipa::path(post, path = "/v1/templates/sync", tag = "templates", operation_id = "sync_templates",
    responses(
        (status = 200, description = "what changed, over every WABA and by WABA", body = SyncReport),
        (status = 502, description = "no WABA could be read from the Cloud API"),
    ))]
pub async fn sync(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
) -> Result<Json<SyncReport>, ApiError> {
    let wabas = numbers::tenant_wabas(&state.pool, tenant).await?;
    let report = catalog::sync(&state, tenant, &wabas).await?;
    if !report.is_empty() && report.iter().all(|w| w.error.is_some()) {
        let reasons: Vec<String> = report
            .iter()
            .map(|w| format!("{}: {}", w.waba_id, w.error.as_deref().unwrap_or_default()))
            .collect();
        return Err(ApiError::Upstream(format!(
            "no WABA could be read: {}",
            reasons.join("; ")
        )));
    }
    let mut counts = SyncCounts::default();
    for w in &report {
        counts += w.counts;
    }
    Ok(Json(SyncReport {
        counts,
        wabas: report,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`…
    status: Option<String>,
    name: Option<String>,
    language: Option<String>,
    waba_id: Option<String>,
    /// Items per page: 1 to 1,000 (100 when not given).
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A template as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct TemplateDetail {
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: String,
    #[serde(default)]
    pub quality: Option<String>,
    pub parameter_format: String,
    /// The keys a send fills (`header.media`, `body.1`, `button.0`, …) and whether each is
    /// required.
    pub parameters: Vec<ParameterView>,
    /// Why Herald cannot send it, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// The components as Meta lists them.
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<serde_json::Value>,
    pub synced_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ParameterView {
    pub key: String,
    pub required: bool,
}

impl From<TemplateRow> for TemplateDetail {
    fn from(t: TemplateRow) -> Self {
        let spec: Spec = t.spec.0;
        Self {
            parameters: spec
                .slots()
                .into_iter()
                .map(|s| ParameterView {
                    key: s.key,
                    required: s.required,
                })
                .collect(),
            unsupported: spec.unsupported,
            waba_id: t.waba_id,
            name: t.name,
            language: t.language,
            status: t.status,
            category: t.category,
            quality: t.quality,
            parameter_format: t.parameter_format,
            components: t.components.0,
            synced_at: t.synced_at,
        }
    }
}

/// The synced templates, filtered by `status`, `name`, `language`, `waba_id`.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", operation_id = "list_templates",
    params(ListQuery),
    responses((status = 200, description = "a page of templates", body = Page<TemplateDetail>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<TemplateDetail>>, ApiError> {
    let bounds = [
        ("status", &q.status, limits::STATUS),
        ("name", &q.name, limits::TEMPLATE_NAME),
        ("language", &q.language, limits::LANGUAGE),
        ("waba_id", &q.waba_id, limits::ID_DIGITS),
    ];
    for (field, value, max) in bounds {
        if let Some(value) = value {
            limits::text(field, value, max)?;
        }
    }
    let filter = Filter {
        status: q.status.as_deref(),
        name: q.name.as_deref(),
        language: q.language.as_deref(),
        waba: q.waba_id.as_deref(),
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    // The key: name, language and WABA, separated by a byte no name holds.
    let after = page.after()?;
    let after = match after
        .as_deref()
        .map(|a| a.split('\u{1f}').collect::<Vec<_>>())
    {
        None => None,
        Some(parts) if parts.len() == 3 => Some((parts[0], parts[1], parts[2])),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "cursor",
                "is not a cursor of this list",
            ));
        }
    };
    let rows = templates::list(&state.pool, tenant, &filter, after, limit + 1).await?;
    let page = Page::new(rows, limit, |t| {
        format!("{}\u{1f}{}\u{1f}{}", t.name, t.language, t.waba_id)
    });
    Ok(Json(page.map(TemplateDetail::from)))
}
