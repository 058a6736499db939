//! Suppressions: recipients the tenant must not send to, added and lifted by the API, listed.
//! Every change reaches every sender within a second (`suppress::propagate`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use herald_shared::db::suppressions::{self, Change, Reason, SuppressionRow};
use herald_shared::domain::PhoneNumber;
use herald_shared::stream::suppressions::Announced;
use herald_shared::suppress;
use serde::{Deserialize, Serialize};

use super::page::{Page, PageQuery};
use super::{ApiPath, ApiQuery, Tenant, body_bytes, json_body, media_type, unsupported};
use crate::limits;
use crate::upload::{self, RowError};
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AddJson {
    /// E.164, or national numbers with `?default_country=`.
    phones: Vec<String>,
    /// Why, in the operator's words (kept as the suppression's note).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddQuery {
    /// ISO 3166 code for phones written without a country code.
    default_country: Option<String>,
    /// For a CSV without a `reason` column.
    reason: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct AddReport {
    /// Recipients suppressed now.
    pub added: usize,
    /// Recipients already suppressed.
    pub already: usize,
    pub rejected: Vec<RowError>,
}

/// Suppresses phones for the tenant: JSON `{"phones": [...], "reason": "..."}`, or a CSV
/// (`text/csv`) with a `phone` column and, optionally, a `reason` one.
#[utoipa::path(post, path = "/v1/suppressions", tag = "suppressions", operation_id = "add_suppressions",
    params(AddQuery),
    request_body(content(
        (AddJson = "application/json"),
        (String = "text/csv", example = "phone,reason\n+14155550100,asked by phone\n"),
    )),
    responses(
        (status = 200, description = "what was added; phones that are not numbers are listed, and nothing else of them stored", body = AddReport),
        (status = 422, description = "the CSV has no phone column"),
    ))]
pub async fn add(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(query): ApiQuery<AddQuery>,
    request: Request,
) -> Result<Json<AddReport>, ApiError> {
    let country = upload::country(query.default_country.as_deref())?;
    let csv = match media_type(&request).as_str() {
        "text/csv" | "application/csv" => true,
        "application/json" => false,
        other => return Err(unsupported(other, "application/json or text/csv")),
    };
    let body = body_bytes(request, state.max_body_bytes).await?;
    // (row, phone, reason)
    let rows: Vec<(usize, String, Option<String>)> = if csv {
        read_csv(&body)?
    } else {
        super::refuse_nul(&body)?;
        let req: AddJson = json_body(&body)?;
        if let Some(reason) = &req.reason {
            limits::text("reason", reason, limits::NOTE)?;
        }
        let reason = req.reason.filter(|r| !r.trim().is_empty());
        req.phones
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p, reason.clone()))
            .collect()
    };
    let default_reason = query.reason.filter(|r| !r.trim().is_empty());
    if let Some(reason) = &default_reason {
        limits::text("reason", reason, limits::NOTE)?;
    }
    let mut report = AddReport {
        added: 0,
        already: 0,
        rejected: Vec::new(),
    };
    let mut changes = Vec::new();
    let now = chrono::Utc::now();
    for (row, phone, reason) in rows {
        if let Some(Err(problem)) = reason
            .as_deref()
            .map(|r| limits::text("reason", r, limits::NOTE))
        {
            report.rejected.push(RowError {
                row,
                field: problem.field,
                reason: problem.reason,
            });
            continue;
        }
        let phone = match PhoneNumber::parse_in(&phone, country) {
            Ok(p) => p,
            Err(e) => {
                report.rejected.push(RowError {
                    row,
                    field: "phone".into(),
                    reason: format!("{phone:?} {e}"),
                });
                continue;
            }
        };
        let key = suppress::key(phone.as_str());
        if suppressions::is_active(&state.pool, tenant, &key).await? {
            report.already += 1;
            continue;
        }
        let note = reason.or_else(|| default_reason.clone());
        let change = Change {
            key: &key,
            active: true,
            reason: Reason::Manual,
            note: note.as_deref(),
            at: now,
            lift_any: false,
        };
        if suppressions::set(&state.pool, tenant, &change).await? {
            report.added += 1;
            changes.push(Announced {
                tenant,
                key,
                active: true,
            });
        } else {
            report.already += 1;
        }
    }
    let mut redis = state.redis.clone();
    suppress::propagate(&state.pool, &mut redis, &state.keys, &changes).await;
    tracing::info!(tenant = %tenant, added = report.added, "suppressions added");
    Ok(Json(report))
}

fn read_csv(body: &[u8]) -> Result<Vec<(usize, String, Option<String>)>, ApiError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header: Vec<String> = csv
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("the CSV cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let Some(phone) = header.iter().position(|h| h == "phone") else {
        return Err(ApiError::Invalid {
            message: "the CSV's header has no phone column".into(),
            fields: vec![crate::error::FieldError {
                row: None,
                field: "phone".into(),
                reason: "the header has no phone column".into(),
            }],
        });
    };
    let reason = header.iter().position(|h| h == "reason");
    let mut rows = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let record =
            record.map_err(|e| ApiError::BadRequest(format!("the CSV cannot be read: {e}")))?;
        let cell = |i: usize| record.get(i).unwrap_or_default().to_owned();
        rows.push((
            i + 2,
            cell(phone),
            reason.map(cell).filter(|r| !r.is_empty()),
        ));
    }
    Ok(rows)
}

/// Lifts the tenant's suppression of `phone` (E.164, or a WhatsApp ID's digits; whatever its
/// reason); 404 when there is none.
#[utoipa::path(delete, path = "/v1/suppressions/{phone}", tag = "suppressions", operation_id = "remove_suppression",
    params(("phone" = String, Path, description = "E.164 (`+14155550100`, URL-encoded) or a WhatsApp ID's digits")),
    responses(
        (status = 204, description = "lifted"),
        (status = 404, description = "the phone is not suppressed"),
        (status = 422, description = "not a phone number"),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(phone): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    // A WhatsApp ID (digits, as Meta writes it) is a number with its country code.
    let written = if !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{phone}")
    } else {
        phone.clone()
    };
    let phone = PhoneNumber::parse(&written).map_err(|e| ApiError::Invalid {
        message: "not a phone number".into(),
        fields: vec![crate::error::FieldError {
            row: None,
            field: "phone".into(),
            reason: format!("{phone:?} {e}"),
        }],
    })?;
    let key = suppress::key(phone.as_str());
    if !suppressions::is_active(&state.pool, tenant, &key).await? {
        return Err(ApiError::NotFound("suppression"));
    }
    let change = Change {
        key: &key,
        active: false,
        reason: Reason::Manual,
        note: None,
        at: chrono::Utc::now(),
        lift_any: true,
    };
    suppressions::set(&state.pool, tenant, &change).await?;
    let mut redis = state.redis.clone();
    let lifted = [Announced {
        tenant,
        key,
        active: false,
    }];
    suppress::propagate(&state.pool, &mut redis, &state.keys, &lifted).await;
    tracing::info!(tenant = %tenant, "suppression lifted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the recipients whose number contains these digits (spaces, `+` and dashes aside).
    search: Option<String>,
    /// Items per page: 1 to 1,000 (100 when not given).
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// The tenant's active suppressions, by recipient, a page at a time.
#[utoipa::path(get, path = "/v1/suppressions", tag = "suppressions", operation_id = "list_suppressions",
    params(ListQuery),
    responses((status = 200, description = "a page of suppressions", body = Page<SuppressionRow>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<SuppressionRow>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after = page.after()?.unwrap_or_default();
    let digits = q
        .search
        .as_deref()
        .map(|s| {
            let digits: String = s
                .chars()
                .filter(|c| !matches!(c, ' ' | '+' | '-' | '(' | ')' | '.'))
                .collect();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::invalid_field(
                    "search",
                    "must be digits of a phone number",
                ));
            }
            Ok(digits)
        })
        .transpose()?;
    let rows =
        suppressions::page(&state.pool, tenant, &after, digits.as_deref(), limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |r| r.recipient.clone())))
}
