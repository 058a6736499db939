//! Campaigns: create (with the templates' pre-flight), upload recipients, start, progress.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use herald_shared::db::campaigns::{
    self, CampaignRow, Counters, FailureGroup, NewCampaign, NumberShare,
};
use herald_shared::db::engagement;
use herald_shared::db::messages;
use herald_shared::db::numbers;
use herald_shared::db::templates::{self, CampaignTemplate};
use herald_shared::db::transitions::{self, Transition};
use herald_shared::db::uploads;
use herald_shared::domain::{CampaignId, CampaignState, MessageStatus, NumberId, TenantId};
use herald_shared::template::Spec;
use herald_shared::whatsapp::message;
use serde::{Deserialize, Serialize};

use super::page::{Page, PageQuery};
use super::{
    ApiJson, ApiPath, ApiQuery, CampaignPath, Tenant, body_bytes, json_body, media_type, rejected,
    unsupported,
};
use crate::audience::Mix;
use crate::catalog::{self, Choice};
use crate::error::FieldError;
use crate::limits;
use crate::upload::{self, JsonRecipient, Store, UploadReport};
use crate::{ApiError, AppState};

/// Most templates one campaign shares its recipients between.
const MAX_TEMPLATES: usize = 10;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateCampaign {
    name: String,
    /// The message, written the way Meta writes one, `{{1}}`, `{{2}}`… standing for each
    /// recipient's values (`body.1`, `body.2`…): `{"type": "text", "text": {"body": "Hi {{1}}"}}`,
    /// or an `image`, `video`, `audio`, `document`, `sticker`, `interactive`, `location` or
    /// `contacts` message. These free-form messages reach only users inside their 24-hour
    /// window. `{"type": "template", "template": {"name", "language": {"code"}}}` is a template,
    /// like `template`.
    #[schema(value_type = Object)]
    message: Option<serde_json::Value>,
    /// The one template…
    template: Option<Choice>,
    /// …or several, each with a `weight`.
    templates: Option<Vec<Choice>>,
    sender_numbers: Vec<NumberId>,
    /// Starts the campaign then (RFC 3339); a draft until started when absent.
    scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What a scheduled start missed while Herald was down does: `start` (late) or `expire`.
    overdue: Option<Overdue>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overdue {
    Start,
    Expire,
}

impl Overdue {
    fn as_str(self) -> &'static str {
        match self {
            Overdue::Start => "start",
            Overdue::Expire => "expire",
        }
    }
}

/// A campaign as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub state: CampaignState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The (first) template; for a free-form message, its type (and no language).
    pub template: TemplateView,
    /// The free-form message it sends, as it was written (not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub message: Option<serde_json::Value>,
    /// Every template with its weight and its messages' counters (not in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateShare>,
    pub counters: Counters,
    /// Share of messages that left the queue (sent, delivered, read, failed…), in percent.
    pub progress: f64,
    /// Messages leaving the queue per second over the last minute (running campaigns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_rate: Option<f64>,
    /// Messages that left the queue per second since the start (to the end, once ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_send_rate: Option<f64>,
    /// When the last message should leave the queue at `send_rate` (running campaigns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Each sender number: its state and rate now, and the campaign's messages it sent, failed
    /// and still has to send (not in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<NumberShare>,
    /// Its failed messages by the Cloud API's error code, most first (not in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailureGroup>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended: completed, cancelled or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When a scheduled campaign starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `start` or `expire`: what a scheduled start missed while Herald was down does.
    #[serde(default)]
    pub overdue: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct TemplateShare {
    pub name: String,
    pub language: String,
    pub weight: i32,
    /// The values fixed for every recipient.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub values: serde_json::Value,
    /// Counters of this template's messages (status counts; engagement is per campaign).
    pub counters: Counters,
}

impl CampaignView {
    /// The campaign as lists show it; `rate` is its `send_rate`.
    pub(crate) fn new(c: CampaignRow, templates: Vec<TemplateShare>, rate: Option<f64>) -> Self {
        let n = &c.counters;
        let left_queue = crate::progress::left_queue(n);
        let progress = if n.total == 0 {
            0.0
        } else {
            (left_queue as f64 * 1000.0 / n.total as f64).round() / 10.0
        };
        let running = c.state == CampaignState::Running;
        let rate = rate.filter(|_| running).map(round2);
        let eta_seconds = if running {
            crate::progress::eta(n, rate)
        } else {
            None
        };
        let now = chrono::Utc::now();
        let average_send_rate = c.started_at.map(|start| {
            let end = c.completed_at.unwrap_or(now);
            let seconds = (end - start).num_milliseconds().max(1) as f64 / 1000.0;
            round2(left_queue as f64 / seconds)
        });
        Self {
            id: c.id,
            name: c.name,
            state: c.state,
            state_reason: c.state_reason,
            template: TemplateView {
                name: c.template_name,
                language: c.template_language,
            },
            message: None,
            templates,
            counters: c.counters,
            progress,
            send_rate: rate,
            average_send_rate,
            eta: eta_seconds.map(|s| now + chrono::Duration::milliseconds((s * 1000.0) as i64)),
            eta_seconds,
            numbers: Vec::new(),
            failures: Vec::new(),
            created_at: c.created_at,
            started_at: c.started_at,
            completed_at: c.completed_at,
            scheduled_at: c.scheduled_at,
            overdue: c.overdue,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Creates a campaign (a draft, or scheduled with `scheduled_at`) after checking its templates
/// against the WABAs of its numbers.
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", operation_id = "create_campaign",
    request_body = CreateCampaign,
    responses(
        (status = 201, description = "created", body = CampaignView),
        (status = 422, description = "a field is missing or wrong, or a template cannot be sent from these numbers (`fields` says which)"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let mut problems = Vec::new();
    if req.name.trim().is_empty() {
        problems.push(FieldError::new("name", "is required"));
    }
    problems.extend(limits::text("name", &req.name, limits::NAME).err());
    let mut template = req.template;
    let mut free_form = None;
    match &req.message {
        None => {}
        Some(_) if template.is_some() || req.templates.is_some() => {
            problems.push(FieldError::new(
                "message",
                "give the message, or template(s), not both",
            ));
        }
        Some(m) => match m["type"].as_str() {
            Some("template") => {
                let t = &m["template"];
                let language = t["language"]["code"].as_str().or(t["language"].as_str());
                template = Some(Choice {
                    name: t["name"].as_str().unwrap_or_default().to_owned(),
                    language: language.unwrap_or_default().to_owned(),
                    weight: None,
                    values: Default::default(),
                });
            }
            Some(kind) => match free_form_message(kind, &m[kind]) {
                Ok(n) => free_form = Some((kind.to_owned(), m[kind].clone(), n)),
                Err(problem) => problems.push(problem),
            },
            None => problems.push(FieldError::new("message.type", "is required")),
        },
    }
    // A free-form message (given, or refused above) leaves no templates to choose.
    let free_form_asked = req
        .message
        .as_ref()
        .is_some_and(|m| m["type"] != "template");
    let choices: Vec<(String, Choice)> = match (template, req.templates) {
        _ if free_form_asked => Vec::new(),
        (Some(one), None) => vec![("template".to_owned(), one)],
        (None, Some(many)) => many
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("templates[{i}]"), c))
            .collect(),
        _ => {
            problems.push(FieldError::new(
                "template",
                "give either template (one) or templates (several, with weights)",
            ));
            Vec::new()
        }
    };
    if choices.len() > MAX_TEMPLATES {
        problems.push(FieldError::new(
            "templates",
            format!("at most {MAX_TEMPLATES}"),
        ));
    }
    for (field, choice) in &choices {
        if choice.name.trim().is_empty() {
            problems.push(FieldError::new(format!("{field}.name"), "is required"));
        }
        if choice.language.trim().is_empty() {
            problems.push(FieldError::new(format!("{field}.language"), "is required"));
        }
        if choice.weight == Some(0) {
            problems.push(FieldError::new(
                format!("{field}.weight"),
                "must be at least 1",
            ));
        }
        let name = limits::text(
            &format!("{field}.name"),
            &choice.name,
            limits::TEMPLATE_NAME,
        );
        let language = limits::text(
            &format!("{field}.language"),
            &choice.language,
            limits::LANGUAGE,
        );
        problems.extend(name.err().into_iter().chain(language.err()));
        if let Some((key, reason)) = choice.values.problem(limits::VALUE) {
            problems.push(FieldError::new(format!("{field}.values.{key}"), reason));
        }
    }
    if let Some(at) = req.scheduled_at {
        problems.extend(in_the_past(at));
    }
    let mut wanted = req.sender_numbers.clone();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        problems.push(FieldError::new(
            "sender_numbers",
            "needs at least one number",
        ));
    }
    let owned = numbers::owned_numbers(&state.pool, tenant, &wanted).await?;
    for n in wanted.iter().filter(|n| !owned.contains(n)) {
        problems.push(FieldError::new(
            "sender_numbers",
            format!("{n} is not one of your numbers"),
        ));
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let mix = match free_form {
        Some((kind, content, variables)) => vec![CampaignTemplate {
            position: 0,
            name: kind,
            language: String::new(),
            weight: 1,
            spec: sqlx::types::Json(Spec::positional_body(variables)),
            fixed: Default::default(),
            message: Some(sqlx::types::Json(content)),
        }],
        None => {
            let wabas = numbers::wabas(&state.pool, &wanted).await?;
            catalog::resolve(&state, tenant, &wabas, &choices)
                .await?
                .map_err(invalid)?
        }
    };
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
            scheduled_at: req.scheduled_at,
            overdue: req.overdue.unwrap_or(Overdue::Start).as_str(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&state, tenant, id).await?)))
}

/// Most bytes a free-form message's content may take, as JSON (Meta's send bodies stay far
/// below).
const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A free-form message's variable count, or what is wrong with it (the field in Meta's words,
/// under `message`).
fn free_form_message(kind: &str, content: &serde_json::Value) -> Result<usize, FieldError> {
    let problem = |p: message::Problem| FieldError::new(format!("message.{}", p.field), p.reason);
    message::check(kind, content).map_err(problem)?;
    if content.to_string().len() > MAX_MESSAGE_BYTES {
        return Err(FieldError::new(
            format!("message.{kind}"),
            format!("is larger than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    message::variables(content).map_err(problem)
}

/// A schedule must be in the future (a second of clock skew aside).
fn in_the_past(at: chrono::DateTime<chrono::Utc>) -> Option<FieldError> {
    (at < chrono::Utc::now() - chrono::Duration::seconds(1)).then(|| {
        FieldError::new(
            "scheduled_at",
            format!("{} is in the past", at.to_rfc3339()),
        )
    })
}

fn invalid(fields: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        message: "the campaign cannot be created".into(),
        fields,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the campaigns in this state.
    state: Option<CampaignState>,
    /// Items per page: 1 to 1,000 (100 when not given).
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// The tenant's campaigns, newest first, in one `state` when given, a page at a time.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", operation_id = "list_campaigns",
    params(ListQuery),
    responses((status = 200, description = "a page of campaigns (without the per-template and per-number breakdowns)", body = Page<CampaignView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<CampaignView>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let rows = campaigns::list(
        &state.pool,
        tenant,
        q.state,
        page.after_parsed()?,
        limit + 1,
    )
    .await?;
    let page = Page::new(rows, limit, |c| c.id.to_string());
    Ok(Json(page.map(|c| {
        let rate = state.progress.rate(c.id);
        CampaignView::new(c, Vec::new(), rate)
    })))
}

/// The campaign with its counters, rates, ETA and per-template and per-number breakdowns.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns", operation_id = "get_campaign",
    params(CampaignPath),
    responses(
        (status = 200, description = "the campaign", body = CampaignView),
        (status = 404, description = "no such campaign"),
    ))]
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
    let rate = state.progress.rate(id);
    let mut view = CampaignView::new(row, shares, rate);
    view.message = mix.iter().find_map(|t| {
        let content = t.message.as_ref()?;
        Some(serde_json::json!({"type": t.name, t.name.clone(): content.0}))
    });
    view.numbers = campaigns::by_number(&state.pool, id).await?;
    if view.counters.failed > 0 {
        view.failures = campaigns::failures_by_code(&state.pool, id).await?;
    }
    Ok(view)
}

/// A CSV file in a form (field `file`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form for the OpenAPI document; the handler streams it
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Recipients {
    recipients: Vec<JsonRecipient>,
}

/// Recipients from what users sent the tenant's numbers (`GET /v1/inbound`), each once.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum InboundAudience {
    /// Everyone who replied to, or tapped a button of, campaign `campaign_id`.
    RepliedTo { campaign_id: CampaignId },
    /// Everyone who wrote to one of the tenant's numbers since `since` (RFC 3339).
    InboundSince {
        since: chrono::DateTime<chrono::Utc>,
    },
}

/// A JSON upload: recipients listed, or drawn from the inbound side.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the body for the OpenAPI document; the handler reads each shape
pub enum JsonUpload {
    Listed(Recipients),
    Inbound(InboundAudience),
}

/// The phones of an inbound audience; a campaign named that is not the tenant's is refused.
async fn inbound_audience(
    state: &AppState,
    tenant: TenantId,
    audience: InboundAudience,
) -> Result<Vec<JsonRecipient>, ApiError> {
    let (campaign, since) = match audience {
        InboundAudience::RepliedTo { campaign_id } => {
            if campaigns::tenant_of(&state.pool, campaign_id).await? != Some(tenant) {
                return Err(ApiError::invalid_field(
                    "campaign_id",
                    "is no campaign of yours",
                ));
            }
            (Some(campaign_id), None)
        }
        InboundAudience::InboundSince { since } => (None, Some(since)),
    };
    let phones = engagement::senders(&state.pool, tenant, campaign, since).await?;
    Ok(phones.into_iter().map(JsonRecipient::phone_only).collect())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// ISO 3166 code for numbers written without a country code (CSV uploads).
    default_country: Option<String>,
}

/// Adds recipients to a campaign not yet started, as JSON (`{"recipients": [...]}`, or
/// `{"from": "replied_to", "campaign_id": …}` / `{"from": "inbound_since", "since": …}` for
/// the users who answered a campaign or wrote in since a time), CSV (`text/csv`) or a CSV file
/// in `multipart/form-data`. Valid rows are stored as `pending`
/// (`suppressed` for recipients who opted out); refused ones are reported by row and stored
/// nowhere. A key some template needs that the upload never gives refuses it whole (422).
#[utoipa::path(post, path = "/v1/campaigns/{id}/recipients", tag = "campaigns", operation_id = "add_recipients",
    params(CampaignPath, UploadQuery),
    request_body(content(
        (JsonUpload = "application/json"),
        (String = "text/csv", example = "phone,name\n+14155550100,Ada\n"),
        (UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "rows read, accepted, suppressed, duplicated and refused (with why)", body = UploadReport),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "the campaign has started"),
        (status = 413, description = "the upload is larger than `ingest.max_upload_bytes` (JSON: `max_body_bytes`)"),
        (status = 415, description = "not JSON, CSV or a form"),
        (status = 422, description = "a key a template needs is given by no row"),
    ))]
pub async fn add_recipients(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    request: Request,
) -> Result<Json<UploadReport>, ApiError> {
    let _slot = state.admission.upload(tenant)?;
    let campaign = load(&state, tenant, id).await?;
    // Only before the start: fan-out pages by message id, and a row committed after it moved
    // past that id would never be sent.
    if !matches!(
        campaign.state,
        CampaignState::Draft | CampaignState::Scheduled
    ) {
        return Err(ApiError::Conflict(format!(
            "recipients can only be added before the campaign starts; it is {}",
            campaign.state
        )));
    }
    let country = upload::country(query.default_country.as_deref())?;
    let mix = Mix::new(
        templates::campaign_templates(&state.pool, id).await?,
        campaigns::campaign_numbers(&state.pool, id).await?,
    );
    let report = match media_type(&request).as_str() {
        "text/csv" | "application/csv" => {
            let body = request
                .into_body()
                .into_data_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other));
            let body = upload::limited(body, state.max_upload_bytes);
            upload::csv(&state, id, mix, Box::pin(body), country).await?
        }
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, &state)
                .await
                .map_err(|e| rejected(e.status(), e.body_text()))?;
            loop {
                let field = form
                    .next_field()
                    .await
                    .map_err(|e| rejected(e.status(), e.body_text()))?
                    .ok_or_else(|| {
                        ApiError::BadRequest("the form has no file field (name it \"file\")".into())
                    })?;
                if field.name() == Some("file") || field.file_name().is_some() {
                    let body = field.map(|chunk| chunk.map_err(std::io::Error::other));
                    break upload::csv(&state, id, mix, Box::pin(body), country).await?;
                }
            }
        }
        "application/json" => {
            // Read whole: a JSON body is bounded by the smaller limit.
            let bytes = body_bytes(request, state.max_body_bytes).await?;
            let shape: serde_json::Value = json_body(&bytes)?;
            let rows = if shape.get("from").is_some() {
                inbound_audience(&state, tenant, json_body(&bytes)?).await?
            } else {
                json_body::<Recipients>(&bytes)?.recipients
            };
            let batches = tokio::task::spawn_blocking(move || upload::check_json(rows, &mix))
                .await
                .map_err(|e| ApiError::Internal(e.into()))??;
            let mut store = Store::begin(&state, id).await?;
            for batch in batches {
                store.add(batch).await?;
            }
            store.finish().await?
        }
        other => {
            return Err(unsupported(
                other,
                "application/json, text/csv or multipart/form-data",
            ));
        }
    };
    Ok(Json(report))
}

/// Every row an upload refused, as CSV (`row,field,reason`), streamed.
#[utoipa::path(get, path = "/v1/campaigns/{id}/uploads/{upload_id}/errors.csv", tag = "campaigns", operation_id = "upload_errors",
    params(
        CampaignPath,
        ("upload_id" = uuid::Uuid, Path, description = "the upload's `upload_id`"),
    ),
    responses(
        (status = 200, description = "`row,field,reason` for every refused row", body = String, content_type = "text/csv"),
        (status = 404, description = "no such upload of this campaign"),
    ))]
pub async fn upload_errors(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath((id, upload)): ApiPath<(CampaignId, uuid::Uuid)>,
) -> Result<Response, ApiError> {
    if !uploads::belongs(&state.pool, tenant, id, upload).await? {
        return Err(ApiError::NotFound("upload"));
    }
    const PAGE: i64 = 10_000;
    let pool = state.pool.clone();
    let header = futures::stream::once(async { Ok(Bytes::from_static(b"row,field,reason\n")) });
    let pages = futures::stream::try_unfold(Some(0i64), move |after| {
        let pool = pool.clone();
        async move {
            let Some(after) = after else { return Ok(None) };
            let rows = uploads::errors_after(&pool, upload, after, PAGE)
                .await
                .map_err(std::io::Error::other)?;
            let next = (rows.len() as i64 == PAGE).then(|| rows.last().map_or(after, |r| r.0));
            let mut out = csv::Writer::from_writer(Vec::new());
            for (row, field, reason) in &rows {
                out.write_record([row.to_string().as_str(), field, reason])
                    .map_err(std::io::Error::other)?;
            }
            let bytes = out
                .into_inner()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, std::io::Error>(if rows.is_empty() {
                None
            } else {
                Some((Bytes::from(bytes), next))
            })
        }
    });
    let body = Body::from_stream(header.chain(pages));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (CONTENT_DISPOSITION, "attachment; filename=\"errors.csv\""),
        ],
        body,
    )
        .into_response())
}

/// Starts a draft or scheduled campaign, after its templates' pre-flight again.
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns", operation_id = "start_campaign",
    params(CampaignPath),
    responses(
        (status = 202, description = "running", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "not a draft or scheduled campaign, or no recipients"),
        (status = 422, description = "a template can no longer be sent (`fields` says which)"),
    ))]
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
            "only a draft or scheduled campaign can start; this one is {}",
            campaign.state
        )));
    }
    if campaign.counters.total == 0 {
        return Err(ApiError::Conflict("the campaign has no recipients".into()));
    }
    let problems = preflight(&state, tenant, id).await?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the campaign cannot start".into(),
            fields: problems,
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
            "only a draft or scheduled campaign can start; this one is {}",
            campaign.state
        )));
    }
    state.fanout_wake.notify_one();
    tracing::info!(campaign = %id, total = campaign.counters.total, "campaign started");
    Ok((StatusCode::ACCEPTED, Json(view(&state, tenant, id).await?)))
}

/// The templates' pre-flight again, before a start (by hand or by the scheduler).
pub async fn preflight(
    state: &AppState,
    tenant: TenantId,
    id: CampaignId,
) -> Result<Vec<FieldError>, ApiError> {
    let numbers = campaigns::campaign_numbers(&state.pool, id).await?;
    let wabas = numbers::wabas(&state.pool, &numbers).await?;
    catalog::recheck(state, tenant, id, &wabas).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    /// RFC 3339, in the future.
    scheduled_at: chrono::DateTime<chrono::Utc>,
    overdue: Option<Overdue>,
}

/// Schedules a draft campaign, or moves a scheduled one's time.
#[utoipa::path(post, path = "/v1/campaigns/{id}/schedule", tag = "campaigns", operation_id = "schedule_campaign",
    params(CampaignPath),
    request_body = Schedule,
    responses(
        (status = 200, description = "scheduled", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "not a draft or scheduled campaign"),
        (status = 422, description = "the time is in the past"),
    ))]
pub async fn schedule(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    ApiJson(req): ApiJson<Schedule>,
) -> Result<Json<CampaignView>, ApiError> {
    let campaign = load(&state, tenant, id).await?;
    if let Some(past) = in_the_past(req.scheduled_at) {
        return Err(ApiError::Invalid {
            message: "the campaign cannot be scheduled".into(),
            fields: vec![past],
        });
    }
    let overdue = req.overdue.map(Overdue::as_str);
    if !campaigns::schedule(&state.pool, tenant, id, req.scheduled_at, overdue).await? {
        return Err(ApiError::Conflict(format!(
            "only a draft or scheduled campaign can be scheduled; this one is {}",
            campaign.state
        )));
    }
    tracing::info!(campaign = %id, at = %req.scheduled_at, "campaign scheduled");
    Ok(Json(view(&state, tenant, id).await?))
}

/// Makes a scheduled campaign a draft again.
#[utoipa::path(post, path = "/v1/campaigns/{id}/unschedule", tag = "campaigns", operation_id = "unschedule_campaign",
    params(CampaignPath),
    responses(
        (status = 200, description = "a draft again", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "not a scheduled campaign"),
    ))]
pub async fn unschedule(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
) -> Result<Json<CampaignView>, ApiError> {
    let campaign = load(&state, tenant, id).await?;
    if !campaigns::unschedule(&state.pool, tenant, id).await? {
        return Err(ApiError::Conflict(format!(
            "only a scheduled campaign can be unscheduled; this one is {}",
            campaign.state
        )));
    }
    Ok(Json(view(&state, tenant, id).await?))
}

/// Stops sending within a second on every sender; unsent messages are kept.
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", tag = "campaigns", operation_id = "pause_campaign",
    params(CampaignPath),
    responses(
        (status = 200, description = "paused", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "not running"),
    ))]
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
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", tag = "campaigns", operation_id = "resume_campaign",
    params(CampaignPath),
    responses(
        (status = 200, description = "running again", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "not paused"),
    ))]
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
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns", operation_id = "cancel_campaign",
    params(CampaignPath),
    responses(
        (status = 200, description = "cancelled; its unsent messages are `cancelled`", body = CampaignView),
        (status = 404, description = "no such campaign"),
        (status = 409, description = "already ended"),
    ))]
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
    let cancelled = cancel_unsent(&state, id).await?;
    tracing::info!(campaign = %id, cancelled, "campaign cancelled");
    Ok(Json(view(&state, tenant, id).await?))
}

/// Makes every message of a cancelled campaign not yet sent `cancelled`; how many.
pub async fn cancel_unsent(state: &AppState, id: CampaignId) -> Result<usize, ApiError> {
    let unsent = messages::unsent(&state.pool, id).await?;
    let now = chrono::Utc::now();
    for chunk in unsent.chunks(5_000) {
        let batch: Vec<Transition> = chunk
            .iter()
            .map(|m| Transition::to(*m, MessageStatus::Cancelled, now))
            .collect();
        transitions::apply(&state.pool, &batch).await?;
    }
    Ok(unsent.len())
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
            "a campaign that is {} cannot become {to}",
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
