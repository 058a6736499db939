//! Campaigns: create, upload recipients, start, progress.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::db::campaigns::{self, CampaignRow, Counters, NewCampaign};
use herald_shared::db::messages::{self, NewMessage};
use herald_shared::db::numbers;
use herald_shared::db::transitions::{self, Transition};
use herald_shared::domain::{
    CampaignId, CampaignState, MessageStatus, NumberId, PhoneNumber, TenantId,
};
use herald_shared::hash::fnv1a;
use serde::{Deserialize, Serialize};

use super::{ApiJson, ApiPath, Tenant};
use crate::error::FieldError;
use crate::{ApiError, AppState};

/// Most variables a template body can take here; Meta's own limit is higher, but a campaign
/// with more is almost certainly a mistake in the upload.
const MAX_VARIABLES: usize = 20;

#[derive(Deserialize)]
pub struct CreateCampaign {
    name: String,
    template: TemplateRef,
    sender_numbers: Vec<NumberId>,
}

#[derive(Deserialize)]
struct TemplateRef {
    name: String,
    language: String,
}

/// A campaign as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub state: CampaignState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub template: TemplateView,
    pub counters: Counters,
    /// Share of messages that left the queue (sent, delivered, read, failed…), in percent.
    pub progress: f64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
}

impl From<CampaignRow> for CampaignView {
    fn from(c: CampaignRow) -> Self {
        let n = &c.counters;
        let left_queue = n.total - n.pending - n.queued;
        let progress = if n.total == 0 {
            0.0
        } else {
            (left_queue as f64 * 1000.0 / n.total as f64).round() / 10.0
        };
        Self {
            id: c.id,
            name: c.name,
            state: c.state,
            state_reason: c.state_reason,
            template: TemplateView {
                name: c.template_name,
                language: c.template_language,
            },
            counters: c.counters,
            progress,
            created_at: c.created_at,
            started_at: c.started_at,
        }
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, reason: &str| {
        problems.push(FieldError {
            row: None,
            field: field.into(),
            reason: reason.into(),
        })
    };
    if req.name.trim().is_empty() {
        problem("name", "is required");
    }
    if req.template.name.trim().is_empty() {
        problem("template.name", "is required");
    }
    if req.template.language.trim().is_empty() {
        problem("template.language", "is required");
    }
    let mut wanted = req.sender_numbers.clone();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        problem("sender_numbers", "needs at least one number");
    }
    let owned = numbers::owned_numbers(&state.pool, tenant, &wanted).await?;
    for n in wanted.iter().filter(|n| !owned.contains(n)) {
        problem("sender_numbers", &format!("{n} is not one of your numbers"));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the campaign cannot be created".into(),
            details: problems,
        });
    }
    let id = CampaignId::new();
    let mut tx = state.pool.begin().await?;
    campaigns::insert_campaign(
        &mut tx,
        &NewCampaign {
            id,
            tenant,
            name: req.name.trim(),
            template_name: req.template.name.trim(),
            template_language: req.template.language.trim(),
            numbers: &wanted,
        },
    )
    .await?;
    tx.commit().await?;
    let row = load(&state, tenant, id).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(load(&state, tenant, id).await?.into()))
}

#[derive(Deserialize)]
pub struct Recipients {
    recipients: Vec<Recipient>,
}

#[derive(Deserialize)]
struct Recipient {
    phone: String,
    #[serde(default)]
    variables: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct UploadReport {
    /// Rows added to the campaign, to send.
    pub accepted: i64,
    /// Rows added but never to be sent: the recipient opted out (the tenant's suppressions).
    #[serde(default)]
    pub suppressed: i64,
    /// Valid rows whose recipient the campaign already had.
    pub duplicates: i64,
    /// Rows refused, with why; nothing else of theirs was stored.
    pub rejected: Vec<RowError>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RowError {
    /// 1-based position in `recipients`.
    pub row: usize,
    pub field: String,
    pub reason: String,
}

/// Adds recipients to a draft campaign. Valid rows are stored as `pending` (`suppressed` for
/// recipients who opted out); invalid ones are reported by row and stored nowhere.
pub async fn add_recipients(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiJson(req): ApiJson<Recipients>,
) -> Result<Json<UploadReport>, ApiError> {
    let campaign = load(&state, tenant, id).await?;
    // Only before the start: fan-out pages by message id, and a row committed after it moved
    // past that id would never be sent.
    if campaign.state != CampaignState::Draft {
        return Err(ApiError::Conflict(format!(
            "recipients can only be added before the campaign starts; it is {:?}",
            campaign.state
        )));
    }
    let pool_numbers = campaigns::campaign_numbers(&state.pool, id).await?;
    let rows = req.recipients;
    let (valid, rejected, repeats) =
        tokio::task::spawn_blocking(move || validate(rows, &pool_numbers))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    let inserted = messages::insert_recipients(&state.pool, id, &valid).await?;
    Ok(Json(UploadReport {
        accepted: inserted.pending,
        suppressed: inserted.suppressed,
        duplicates: valid.len() as i64 - inserted.pending - inserted.suppressed + repeats,
        rejected,
    }))
}

/// Parses every row (phone parsing is CPU-bound, hence the blocking thread) and assigns each
/// recipient a sender number by a stable hash of its number, so a recipient always hears
/// from the same number of the campaign; grouped by number. Also returns how many rows
/// repeated an earlier row.
fn validate(rows: Vec<Recipient>, numbers: &[NumberId]) -> (Vec<NewMessage>, Vec<RowError>, i64) {
    let mut valid = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut repeats = 0;
    for (i, row) in rows.into_iter().enumerate() {
        let reject = |field: &str, reason: String| RowError {
            row: i + 1,
            field: field.into(),
            reason,
        };
        let phone = match PhoneNumber::parse(&row.phone) {
            Ok(p) => p,
            Err(e) => {
                rejected.push(reject("phone", format!("{:?} {e}", row.phone)));
                continue;
            }
        };
        if row.variables.len() > MAX_VARIABLES {
            rejected.push(reject(
                "variables",
                format!(
                    "has {} values; at most {MAX_VARIABLES}",
                    row.variables.len()
                ),
            ));
            continue;
        }
        if let Some(bad) = row.variables.iter().position(|v| !valid_parameter(v)) {
            rejected.push(reject(
                "variables",
                format!(
                    "value {} is empty or has a newline, a tab or more than 4 spaces in a row",
                    bad + 1
                ),
            ));
            continue;
        }
        if !seen.insert(phone.clone()) {
            // A repeat within the upload: a duplicate, like one already stored.
            repeats += 1;
            continue;
        }
        let number = numbers[fnv1a(phone.as_str()) as usize % numbers.len()];
        valid.push(NewMessage {
            number,
            recipient: phone.as_str().to_owned(),
            variables: serde_json::json!(row.variables),
        });
    }
    // Each number's recipients stored together (in upload order): fan-out reads and marks a
    // number's messages from neighbouring rows rather than from one row in every few.
    valid.sort_by_key(|m| m.number);
    (valid, rejected, repeats)
}

/// Meta refuses parameter text that is empty or holds a newline, a tab or more than four
/// consecutive spaces (reference §1.3).
fn valid_parameter(v: &str) -> bool {
    !v.is_empty() && !v.contains(['\n', '\t', '\r']) && !v.contains("     ")
}

pub async fn start(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let campaign = load(&state, tenant, id).await?;
    if campaign.counters.total == 0 {
        return Err(ApiError::Conflict("the campaign has no recipients".into()));
    }
    let started = campaigns::transition_campaign(
        &state.pool,
        tenant,
        id,
        &[CampaignState::Draft, CampaignState::Scheduled],
        CampaignState::Running,
    )
    .await?;
    if !started {
        return Err(ApiError::Conflict(format!(
            "only a draft or scheduled campaign can start; this one is {:?}",
            campaign.state
        )));
    }
    state.fanout_wake.notify_one();
    tracing::info!(campaign = %id, total = campaign.counters.total, "campaign started");
    Ok((
        StatusCode::ACCEPTED,
        Json(load(&state, tenant, id).await?.into()),
    ))
}

/// Stops sending within a second on every sender; unsent messages are kept.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    let (from, to) = ([CampaignState::Running], CampaignState::Paused);
    change_state(&state, tenant, id, &from, to).await?;
    Ok(Json(load(&state, tenant, id).await?.into()))
}

/// Sends the kept messages again.
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    let (from, to) = ([CampaignState::Paused], CampaignState::Running);
    change_state(&state, tenant, id, &from, to).await?;
    state.fanout_wake.notify_one();
    Ok(Json(load(&state, tenant, id).await?.into()))
}

/// Stops the campaign for good: every message not yet sent becomes `cancelled`.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    let from = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Running,
        CampaignState::Paused,
    ];
    change_state(&state, tenant, id, &from, CampaignState::Cancelled).await?;
    let unsent = messages::unsent(&state.pool, id).await?;
    let now = chrono::Utc::now();
    for chunk in unsent.chunks(5_000) {
        let batch: Vec<Transition> = chunk
            .iter()
            .map(|m| Transition::to(*m, MessageStatus::Cancelled, now))
            .collect();
        transitions::apply(&state.pool, &batch).await?;
    }
    tracing::info!(campaign = %id, cancelled = unsent.len(), "campaign cancelled");
    Ok(Json(load(&state, tenant, id).await?.into()))
}

async fn change_state(
    state: &AppState,
    tenant: TenantId,
    id: CampaignId,
    from: &[CampaignState],
    to: CampaignState,
) -> Result<(), ApiError> {
    let campaign = load(state, tenant, id).await?;
    if !campaigns::transition_campaign(&state.pool, tenant, id, from, to).await? {
        return Err(ApiError::Conflict(format!(
            "a campaign that is {:?} cannot become {to:?}",
            campaign.state
        )));
    }
    tracing::info!(campaign = %id, state = ?to, "campaign state changed");
    Ok(())
}

async fn load(
    state: &AppState,
    tenant: herald_shared::domain::TenantId,
    id: CampaignId,
) -> Result<CampaignRow, ApiError> {
    campaigns::get_campaign(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))
}
