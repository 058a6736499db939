//! Campaigns: create (with the templates' pre-flight), upload recipients, start, progress.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::db::campaigns::{self, CampaignRow, Counters, NewCampaign};
use herald_shared::db::messages;
use herald_shared::db::numbers;
use herald_shared::db::templates;
use herald_shared::db::transitions::{self, Transition};
use herald_shared::domain::{
    CampaignId, CampaignState, MessageStatus, NumberId, PhoneNumber, TenantId,
};
use herald_shared::template::Values;
use serde::{Deserialize, Serialize};

use super::{ApiJson, ApiPath, Tenant};
use crate::audience::Mix;
use crate::catalog::{self, Choice};
use crate::error::FieldError;
use crate::{ApiError, AppState};

/// Most templates one campaign shares its recipients between.
const MAX_TEMPLATES: usize = 10;

#[derive(Deserialize)]
pub struct CreateCampaign {
    name: String,
    /// The one template…
    template: Option<Choice>,
    /// …or several, each with a `weight`.
    templates: Option<Vec<Choice>>,
    sender_numbers: Vec<NumberId>,
}

/// A campaign as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub state: CampaignState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The (first) template.
    pub template: TemplateView,
    /// Every template with its weight and its messages' counters.
    #[serde(default)]
    pub templates: Vec<TemplateShare>,
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

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TemplateShare {
    pub name: String,
    pub language: String,
    pub weight: i32,
    /// The values fixed for every recipient.
    #[serde(default)]
    pub values: serde_json::Value,
    /// Counters of this template's messages (status counts; engagement is per campaign).
    pub counters: Counters,
}

impl CampaignView {
    fn new(c: CampaignRow, templates: Vec<TemplateShare>) -> Self {
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
            templates,
            counters: c.counters,
            progress,
            created_at: c.created_at,
            started_at: c.started_at,
        }
    }
}

fn problem(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        row: None,
        field: field.into(),
        reason: reason.into(),
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let mut problems = Vec::new();
    if req.name.trim().is_empty() {
        problems.push(problem("name", "is required"));
    }
    let choices: Vec<(String, Choice)> = match (req.template, req.templates) {
        (Some(one), None) => vec![("template".to_owned(), one)],
        (None, Some(many)) => many
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("templates[{i}]"), c))
            .collect(),
        _ => {
            problems.push(problem(
                "template",
                "give either template (one) or templates (several, with weights)",
            ));
            Vec::new()
        }
    };
    if choices.len() > MAX_TEMPLATES {
        problems.push(problem("templates", format!("at most {MAX_TEMPLATES}")));
    }
    for (field, choice) in &choices {
        if choice.name.trim().is_empty() {
            problems.push(problem(format!("{field}.name"), "is required"));
        }
        if choice.language.trim().is_empty() {
            problems.push(problem(format!("{field}.language"), "is required"));
        }
        if choice.weight == Some(0) {
            problems.push(problem(format!("{field}.weight"), "must be at least 1"));
        }
    }
    let mut wanted = req.sender_numbers.clone();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        problems.push(problem("sender_numbers", "needs at least one number"));
    }
    let owned = numbers::owned_numbers(&state.pool, tenant, &wanted).await?;
    for n in wanted.iter().filter(|n| !owned.contains(n)) {
        problems.push(problem(
            "sender_numbers",
            format!("{n} is not one of your numbers"),
        ));
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let wabas = numbers::wabas(&state.pool, &wanted).await?;
    let mix = catalog::resolve(&state, tenant, &wabas, &choices)
        .await?
        .map_err(invalid)?;
    let id = CampaignId::new();
    let mut tx = state.pool.begin().await?;
    campaigns::insert_campaign(
        &mut tx,
        &NewCampaign {
            id,
            tenant,
            name: req.name.trim(),
            templates: &mix,
            numbers: &wanted,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&state, tenant, id).await?)))
}

fn invalid(details: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        message: "the campaign cannot be created".into(),
        details,
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(view(&state, tenant, id).await?))
}

/// The campaign with its templates; per-template counters come from its messages when it
/// has several templates (one `GROUP BY`), else they are the campaign's.
async fn view(
    state: &AppState,
    tenant: TenantId,
    id: CampaignId,
) -> Result<CampaignView, ApiError> {
    let row = load(state, tenant, id).await?;
    let mix = templates::campaign_templates(&state.pool, id).await?;
    let mut shares: Vec<TemplateShare> = mix
        .iter()
        .map(|t| TemplateShare {
            name: t.name.clone(),
            language: t.language.clone(),
            weight: t.weight,
            values: serde_json::to_value(&t.fixed.0).unwrap_or_default(),
            counters: Counters::default(),
        })
        .collect();
    if shares.len() == 1 {
        shares[0].counters = row.counters;
    } else if shares.len() > 1 {
        for (position, status, n) in templates::counts_by_template(&state.pool, id).await? {
            if let Some(share) = mix
                .iter()
                .position(|t| t.position == position)
                .map(|i| &mut shares[i])
            {
                *share.counters.of_mut(status) += n;
                share.counters.total += n;
            }
        }
    }
    Ok(CampaignView::new(row, shares))
}

#[derive(Deserialize)]
pub struct Recipients {
    recipients: Vec<Recipient>,
}

#[derive(Deserialize)]
struct Recipient {
    phone: String,
    /// By slot key (`{"body.1": "Ada"}`), or the body's values in order (`["Ada"]`).
    #[serde(default)]
    variables: Values,
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

/// Adds recipients to a campaign not yet started. Valid rows are stored as `pending`
/// (`suppressed` for recipients who opted out); invalid ones are reported by row and stored
/// nowhere. A key no row gives that a template needs refuses the whole upload (422).
pub async fn add_recipients(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiJson(req): ApiJson<Recipients>,
) -> Result<Json<UploadReport>, ApiError> {
    let campaign = load(&state, tenant, id).await?;
    // Only before the start: fan-out pages by message id, and a row committed after it moved
    // past that id would never be sent.
    if !matches!(
        campaign.state,
        CampaignState::Draft | CampaignState::Scheduled
    ) {
        return Err(ApiError::Conflict(format!(
            "recipients can only be added before the campaign starts; it is {:?}",
            campaign.state
        )));
    }
    let mix = Mix::new(
        templates::campaign_templates(&state.pool, id).await?,
        campaigns::campaign_numbers(&state.pool, id).await?,
    );
    let rows = req.recipients;
    let checked = tokio::task::spawn_blocking(move || validate(rows, &mix))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    let inserted = messages::insert_recipients(&state.pool, id, &checked.valid).await?;
    Ok(Json(UploadReport {
        accepted: inserted.pending,
        suppressed: inserted.suppressed,
        duplicates: checked.valid.len() as i64 - inserted.pending - inserted.suppressed
            + checked.repeats,
        rejected: checked.rejected,
    }))
}

struct Checked {
    valid: Vec<messages::NewMessage>,
    rejected: Vec<RowError>,
    /// Rows that repeated an earlier row's phone.
    repeats: i64,
}

/// Parses every row (phone parsing is CPU-bound, hence the blocking thread), gives each its
/// template and sender number, and checks its values; grouped by number.
fn validate(rows: Vec<Recipient>, mix: &Mix) -> Result<Checked, ApiError> {
    let mut valid = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    let mut seen = HashSet::with_capacity(rows.len());
    let mut given: HashSet<String> = HashSet::new();
    let mut used: HashSet<i16> = HashSet::new();
    let mut repeats = 0;
    for (i, row) in rows.into_iter().enumerate() {
        let phone = match PhoneNumber::parse(&row.phone) {
            Ok(p) => p,
            Err(e) => {
                rejected.push(RowError {
                    row: i + 1,
                    field: "phone".into(),
                    reason: format!("{:?} {e}", row.phone),
                });
                continue;
            }
        };
        given.extend(row.variables.keys().map(str::to_owned));
        used.insert(mix.template_for(&phone).position);
        let message = match mix.message(phone.clone(), row.variables) {
            Ok(m) => m,
            Err(refusal) => {
                rejected.push(RowError {
                    row: i + 1,
                    field: refusal.field,
                    reason: refusal.reason,
                });
                continue;
            }
        };
        if !seen.insert(phone) {
            // A repeat within the upload: a duplicate, like one already stored.
            repeats += 1;
            continue;
        }
        valid.push(message);
    }
    let missing = mix.missing(&|k| given.contains(k), &|p| used.contains(&p));
    if !missing.is_empty() {
        return Err(ApiError::Invalid {
            message: "the upload does not give values the templates need; nothing was stored"
                .into(),
            details: missing,
        });
    }
    // Each number's recipients stored together (in upload order): fan-out reads and marks a
    // number's messages from neighbouring rows rather than from one row in every few.
    valid.sort_by_key(|m| m.number);
    Ok(Checked {
        valid,
        rejected,
        repeats,
    })
}

pub async fn start(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let campaign = load(&state, tenant, id).await?;
    if !matches!(
        campaign.state,
        CampaignState::Draft | CampaignState::Scheduled
    ) {
        return Err(ApiError::Conflict(format!(
            "only a draft or scheduled campaign can start; this one is {:?}",
            campaign.state
        )));
    }
    if campaign.counters.total == 0 {
        return Err(ApiError::Conflict("the campaign has no recipients".into()));
    }
    let numbers = campaigns::campaign_numbers(&state.pool, id).await?;
    let wabas = numbers::wabas(&state.pool, &numbers).await?;
    let problems = catalog::recheck(&state, tenant, id, &wabas).await?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the campaign cannot start".into(),
            details: problems,
        });
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
    Ok((StatusCode::ACCEPTED, Json(view(&state, tenant, id).await?)))
}

/// Stops sending within a second on every sender; unsent messages are kept.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    let (from, to) = ([CampaignState::Running], CampaignState::Paused);
    change_state(&state, tenant, id, &from, to).await?;
    Ok(Json(view(&state, tenant, id).await?))
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
    Ok(Json(view(&state, tenant, id).await?))
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
    Ok(Json(view(&state, tenant, id).await?))
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
