//! Sender numbers: register (after a connection test), list, read, change, delete, test.
//! The access token is cleaned of what pasting adds (spaces, quotes, a `Bearer ` prefix),
//! encrypted before it is stored and never returned.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::db::numbers::{
    self, Deletion, NewNumber, NumberChanges, NumberRow, TestFindings,
};
use herald_shared::domain::{NumberId, NumberState, TenantId};
use herald_shared::stream::registry;
use herald_shared::whatsapp::GraphFailure;
use herald_shared::whatsapp::account::{self, PhoneNumberProfile};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use super::page::{Page, PageQuery};
use super::{ApiJson, ApiPath, ApiQuery, NumberPath, Tenant};
use crate::error::FieldError;
use crate::limits;
use crate::{ApiError, AppState};

/// The most a number can be granted by Meta (reference §3.1).
const MAX_THROUGHPUT: u32 = 1000;

/// Meta's throughput for a number nobody said otherwise about (reference §3.1).
const STANDARD_THROUGHPUT: u32 = 80;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateNumber {
    phone_number_id: String,
    waba_id: String,
    /// Defaults to the number Meta shows when the number is tested.
    #[serde(default)]
    display_number: String,
    #[schema(value_type = String, format = Password)]
    access_token: SecretString,
    /// Meta's cap for this number (up to 1,000); defaults to what the test found (80 or
    /// 1,000), else 80.
    throughput_ceiling: Option<u32>,
    /// The rate to start sending at; defaults to the configured rate, capped by the ceiling.
    rate: Option<u32>,
    portfolio_id: Option<String>,
    /// Test the number's connection first (`GET /{phone_number_id}` with its token) and refuse
    /// it when the Cloud API does; on unless `false`.
    #[serde(default = "yes")]
    verify: bool,
}

fn yes() -> bool {
    true
}

/// A sender number as the API shows it (never with its token).
#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct NumberView {
    pub id: NumberId,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_number: String,
    pub state: NumberState,
    /// Why the number is not active: the Cloud API error that paused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub throughput_ceiling: u32,
    pub rate: u32,
    /// The business portfolio whose daily recipient limit the number shares.
    #[serde(default)]
    pub portfolio_id: Option<String>,
    /// That portfolio's limit of unique recipients per rolling 24 h; `null` is unlimited.
    #[serde(default)]
    pub daily_recipient_limit: Option<u32>,
    /// From the last connection test (`null` before one).
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// The portfolio's messaging tier (`TIER_250` … `TIER_UNLIMITED`).
    #[serde(default)]
    pub messaging_limit: Option<String>,
    /// `STANDARD` (80 messages a second) or `HIGH` (1,000).
    #[serde(default)]
    pub throughput_level: Option<String>,
    #[serde(default)]
    pub tested_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<NumberRow> for NumberView {
    fn from(n: NumberRow) -> Self {
        Self {
            id: n.id,
            phone_number_id: n.phone_number_id,
            waba_id: n.waba_id,
            display_number: n.display_number,
            state: n.state,
            state_reason: n.state_reason,
            throughput_ceiling: n.throughput_ceiling as u32,
            rate: n.current_rate as u32,
            portfolio_id: n.portfolio_id,
            daily_recipient_limit: n.daily_recipient_limit.map(|l| l as u32),
            verified_name: n.tested.verified_name,
            quality_rating: n.tested.quality_rating,
            messaging_limit: n.tested.messaging_limit,
            throughput_level: n.tested.throughput_level,
            tested_at: n.tested.tested_at,
        }
    }
}

fn invalid(message: &str, field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::Invalid {
        message: message.into(),
        fields: vec![FieldError {
            row: None,
            field: field.into(),
            reason: reason.into(),
        }],
    }
}

/// Registers a sender number, after a connection test unless `"verify": false`.
#[utoipa::path(post, path = "/v1/numbers", tag = "numbers", operation_id = "create_number",
    request_body = CreateNumber,
    responses(
        (status = 201, description = "registered", body = NumberView),
        (status = 409, description = "the phone_number_id is already registered, or the tenant has as many numbers as it may"),
        (status = 422, description = "a field is missing or out of range, or the connection test failed"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<CreateNumber>,
) -> Result<(StatusCode, Json<NumberView>), ApiError> {
    let mut problems = Vec::new();
    let mut require = |field: &str, value: &str| {
        if value.trim().is_empty() {
            problems.push(FieldError {
                row: None,
                field: field.into(),
                reason: "is required".into(),
            });
        }
    };
    require("phone_number_id", &req.phone_number_id);
    require("waba_id", &req.waba_id);
    if !req.verify {
        require("display_number", &req.display_number);
    }
    let token = clean_token(req.access_token.expose_secret());
    if token.is_none() {
        require("access_token", "");
    }
    let bounds = [
        limits::digits("phone_number_id", &req.phone_number_id, limits::ID_DIGITS),
        limits::digits("waba_id", &req.waba_id, limits::ID_DIGITS),
        limits::text("display_number", &req.display_number, limits::NAME),
        limits::text(
            "access_token",
            req.access_token.expose_secret(),
            limits::TOKEN,
        ),
        limits::text(
            "portfolio_id",
            req.portfolio_id.as_deref().unwrap_or_default(),
            limits::PORTFOLIO,
        ),
    ];
    for problem in bounds.into_iter().filter_map(Result::err) {
        // An empty id is already "is required".
        if !problems.iter().any(|p| p.field == problem.field) {
            problems.push(problem);
        }
    }
    if let Some(ceiling) = req.throughput_ceiling
        && !(1..=MAX_THROUGHPUT).contains(&ceiling)
    {
        problems.push(FieldError {
            row: None,
            field: "throughput_ceiling".into(),
            reason: format!("must be between 1 and {MAX_THROUGHPUT}"),
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the number is incomplete".into(),
            fields: problems,
        });
    }
    let token = token.expect("checked above");
    let registered = numbers::count_of_tenant(&state.pool, tenant).await?;
    if registered >= state.max_numbers_per_tenant {
        return Err(ApiError::Conflict(format!(
            "this tenant has {registered} sender numbers, the most it may register \
             (ingest.max_numbers_per_tenant); delete one first"
        )));
    }
    let phone_number_id = req.phone_number_id.trim();
    let profile = if req.verify {
        match account::phone_number(&state.graph, phone_number_id, &token).await {
            Ok(profile) => {
                let waba_id = req.waba_id.trim();
                if let Some(problem) = waba_problem(&state, waba_id, phone_number_id, &token).await
                {
                    return Err(invalid(
                        "the number failed its connection test; send \"verify\": false to register it untested",
                        "waba_id",
                        problem,
                    ));
                }
                Some(profile)
            }
            Err(failure) => {
                let field = match failure.code() {
                    Some(100 | 33) => "phone_number_id",
                    _ => "access_token",
                };
                return Err(invalid(
                    "the number failed its connection test; send \"verify\": false to register it untested",
                    field,
                    failure.plain_words(),
                ));
            }
        }
    } else {
        None
    };
    let ceiling = req
        .throughput_ceiling
        .or(profile
            .as_ref()
            .and_then(PhoneNumberProfile::throughput_cap))
        .unwrap_or(STANDARD_THROUGHPUT);
    let rate = req.rate.unwrap_or(state.default_rate).min(ceiling).max(1);
    let display_number = match req.display_number.trim() {
        "" => profile
            .as_ref()
            .and_then(|p| p.display_phone_number.clone())
            .unwrap_or_else(|| phone_number_id.to_owned()),
        given => given.to_owned(),
    };
    let portfolio = req
        .portfolio_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let tested = profile.as_ref().map(findings);
    let id = NumberId::new();
    let token = state.cipher.encrypt(&token, id.0.as_bytes());
    let inserted = numbers::insert_number(
        &state.pool,
        &NewNumber {
            tested: tested.as_ref(),
            id,
            tenant,
            phone_number_id,
            waba_id: req.waba_id.trim(),
            display_number: &display_number,
            access_token: &token,
            throughput_ceiling: ceiling as i32,
            current_rate: rate as i32,
            portfolio_id: portfolio.as_deref(),
        },
    )
    .await?;
    if !inserted {
        return Err(ApiError::Conflict(format!(
            "phone_number_id {phone_number_id} is already registered"
        )));
    }
    let mut redis = state.redis.clone();
    registry::add_number(&mut redis, &state.keys, id).await?;
    tracing::info!(number = %id, phone_number_id, verified = req.verify, "sender number registered");
    Ok((StatusCode::CREATED, Json(load(&state, tenant, id).await?)))
}

fn findings(p: &PhoneNumberProfile) -> TestFindings {
    TestFindings {
        verified_name: p.verified_name.clone(),
        quality_rating: p.quality_rating.clone(),
        messaging_limit: p.messaging_limit().map(str::to_owned),
        throughput_level: p.throughput_level().map(str::to_owned),
        tested_at: Some(chrono::Utc::now()),
    }
}

async fn load(state: &AppState, tenant: TenantId, id: NumberId) -> Result<NumberView, ApiError> {
    numbers::tenant_number(&state.pool, tenant, id)
        .await?
        .map(NumberView::from)
        .ok_or(ApiError::NotFound("number"))
}

/// The tenant's numbers, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/numbers", tag = "numbers", operation_id = "list_numbers",
    params(PageQuery),
    responses((status = 200, description = "a page of numbers", body = Page<NumberView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<NumberView>>, ApiError> {
    let limit = page.limit()?;
    let rows = numbers::list_numbers(&state.pool, tenant, page.after_parsed()?, limit + 1).await?;
    let page = Page::new(rows, limit, |n| n.id.to_string());
    Ok(Json(page.map(NumberView::from)))
}

#[utoipa::path(get, path = "/v1/numbers/{id}", tag = "numbers", operation_id = "get_number",
    params(NumberPath),
    responses(
        (status = 200, description = "the number", body = NumberView),
        (status = 404, description = "no such number"),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<Json<NumberView>, ApiError> {
    Ok(Json(load(&state, tenant, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchNumber {
    display_number: Option<String>,
    throughput_ceiling: Option<u32>,
    /// `null` takes the number out of its portfolio; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    portfolio_id: Option<Option<String>>,
}

/// A field that is present, even as `null`, is `Some`.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Changes a number's display name, throughput ceiling or portfolio.
#[utoipa::path(patch, path = "/v1/numbers/{id}", tag = "numbers", operation_id = "update_number",
    params(NumberPath),
    request_body = PatchNumber,
    responses(
        (status = 200, description = "the number as changed", body = NumberView),
        (status = 404, description = "no such number"),
        (status = 422, description = "a value is out of range"),
    ))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
    ApiJson(req): ApiJson<PatchNumber>,
) -> Result<Json<NumberView>, ApiError> {
    let display = req.display_number.as_deref().map(str::trim);
    let bounds = [
        limits::text("display_number", display.unwrap_or_default(), limits::NAME),
        limits::text(
            "portfolio_id",
            req.portfolio_id
                .clone()
                .flatten()
                .as_deref()
                .unwrap_or_default(),
            limits::PORTFOLIO,
        ),
    ];
    for bound in bounds {
        bound?;
    }
    if display == Some("") {
        return Err(invalid(
            "the change is invalid",
            "display_number",
            "cannot be empty",
        ));
    }
    if let Some(ceiling) = req.throughput_ceiling
        && !(1..=MAX_THROUGHPUT).contains(&ceiling)
    {
        return Err(invalid(
            "the change is invalid",
            "throughput_ceiling",
            format!("must be between 1 and {MAX_THROUGHPUT}"),
        ));
    }
    let portfolio = req
        .portfolio_id
        .as_ref()
        .map(|p| p.as_deref().map(str::trim).filter(|p| !p.is_empty()));
    let changes = NumberChanges {
        display_number: display,
        throughput_ceiling: req.throughput_ceiling.map(|c| c as i32),
        portfolio_id: portfolio,
    };
    if !numbers::update_number(&state.pool, tenant, id, &changes).await? {
        return Err(ApiError::NotFound("number"));
    }
    tracing::info!(number = %id, "number changed");
    Ok(Json(load(&state, tenant, id).await?))
}

/// Deletes a number no unfinished campaign uses (409 names the campaigns that do).
#[utoipa::path(delete, path = "/v1/numbers/{id}", tag = "numbers", operation_id = "delete_number",
    params(NumberPath),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such number"),
        (status = 409, description = "campaigns not yet finished send from it"),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<StatusCode, ApiError> {
    match numbers::delete_number(&state.pool, tenant, id).await? {
        Deletion::Deleted => {
            tracing::info!(number = %id, "number deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Deletion::NotFound => Err(ApiError::NotFound("number")),
        Deletion::InUse(campaigns) => {
            let users: Vec<String> = campaigns
                .iter()
                .map(|(c, s)| format!("{c} ({s})"))
                .collect();
            Err(ApiError::Conflict(format!(
                "the number sends for campaigns not yet finished: {}; cancel them or let them complete first",
                users.join(", ")
            )))
        }
    }
}

/// What a connection test found.
#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct TestReport {
    /// The Cloud API answered and the number can send.
    pub ok: bool,
    #[serde(flatten)]
    pub profile: PhoneNumberProfile,
    /// Why the number cannot send, in plain words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The Cloud API's refusal, when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TestError>,
}

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct TestError {
    /// Meta's error code (`null` when the Cloud API could not be reached).
    pub code: Option<i64>,
    pub reason: String,
}

/// Tests a number's connection: Graph `GET /{phone_number_id}` with the number's token.
#[utoipa::path(post, path = "/v1/numbers/{id}/test", tag = "numbers", operation_id = "test_number",
    params(NumberPath),
    responses(
        (status = 200, description = "what the test found (`ok` false when the number cannot send)", body = TestReport),
        (status = 404, description = "no such number"),
    ))]
pub async fn test(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<Json<TestReport>, ApiError> {
    let (row, token) = with_token(&state, tenant, id).await?;
    let report = match account::phone_number(&state.graph, &row.phone_number_id, &token).await {
        Ok(profile) => {
            numbers::record_test(&state.pool, id, &findings(&profile)).await?;
            let mut problems = problems(&profile);
            problems.extend(waba_problem(&state, &row.waba_id, &row.phone_number_id, &token).await);
            TestReport {
                ok: problems.is_empty(),
                profile,
                problems,
                error: None,
            }
        }
        Err(failure) => refused(&failure),
    };
    tracing::info!(number = %id, ok = report.ok, "number tested");
    Ok(Json(report))
}

/// The tenant's number `id` and its access token, decrypted; 404 for another's.
pub(super) async fn with_token(
    state: &AppState,
    tenant: TenantId,
    id: NumberId,
) -> Result<(NumberRow, SecretString), ApiError> {
    let row = numbers::tenant_number(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("number"))?;
    let token = state
        .cipher
        .decrypt(&row.access_token, id.0.as_bytes())
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((row, token))
}

/// What is wrong with the number's `waba_id`: Graph's list of the WABA's numbers lacks it, or
/// Graph knows no such WABA (code 100, subcode 33). A list that cannot be read otherwise leaves
/// the WABA unchecked (logged): the number's own test passed, and a Graph stand-in without the
/// endpoint must not stop registration. The WABA matters: rate limit 80007 holds every number
/// of a tenant's WABA, and templates are synced from it.
async fn waba_problem(
    state: &AppState,
    waba_id: &str,
    phone_number_id: &str,
    token: &SecretString,
) -> Option<String> {
    match account::waba_phone_numbers(&state.graph, waba_id, token).await {
        Ok(listed) if listed.iter().any(|id| id == phone_number_id) => None,
        Ok(_) => Some(format!(
            "WhatsApp Business Account {waba_id} does not list this phone number: it is another \
             account's number, or the waba_id is wrong"
        )),
        Err(GraphFailure::Refused(e))
            if e.code == 33 || (e.code == 100 && e.error_subcode == Some(33)) =>
        {
            Some(format!(
                "Meta knows no WhatsApp Business Account {waba_id}, or the access token cannot \
                 see it"
            ))
        }
        Err(failure) => {
            tracing::warn!(
                waba_id,
                reason = %failure.plain_words(),
                "the WABA's numbers could not be read: the number's waba_id is unchecked"
            );
            None
        }
    }
}

fn refused(failure: &GraphFailure) -> TestReport {
    TestReport {
        ok: false,
        profile: PhoneNumberProfile::default(),
        problems: vec![failure.plain_words()],
        error: Some(TestError {
            code: failure.code(),
            reason: failure.plain_words(),
        }),
    }
}

/// What in a profile keeps the number from sending (reference §6).
fn problems(p: &PhoneNumberProfile) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(status) = p.status.as_deref()
        && status != "CONNECTED"
    {
        problems.push(format!(
            "the number is {status}, not CONNECTED: it cannot send"
        ));
    }
    if let Some(health) = &p.health_status
        && health.can_send_message == "BLOCKED"
    {
        problems.push("Meta blocks this number from sending (health_status BLOCKED)".into());
    }
    if p.quality_rating.as_deref() == Some("RED") {
        problems.push("the quality rating is RED: Meta may restrict the number".into());
    }
    problems
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    #[schema(value_type = String, format = Password)]
    access_token: SecretString,
}

/// Replaces a number's access token (after a 190, say) and lets it send again.
#[utoipa::path(put, path = "/v1/numbers/{id}/token", tag = "numbers", operation_id = "replace_number_token",
    params(NumberPath),
    request_body = NewToken,
    responses(
        (status = 204, description = "replaced; the number is active"),
        (status = 404, description = "no such number"),
        (status = 422, description = "the token is empty"),
    ))]
pub async fn update_token(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<StatusCode, ApiError> {
    limits::text(
        "access_token",
        req.access_token.expose_secret(),
        limits::TOKEN,
    )?;
    let Some(token) = clean_token(req.access_token.expose_secret()) else {
        return Err(ApiError::Invalid {
            message: "the token is empty".into(),
            fields: vec![FieldError {
                row: None,
                field: "access_token".into(),
                reason: "is required".into(),
            }],
        });
    };
    let token = state.cipher.encrypt(&token, id.0.as_bytes());
    if !numbers::resume_number(&state.pool, tenant, id, Some(&token)).await? {
        return Err(ApiError::NotFound("number"));
    }
    tracing::info!(number = %id, "access token replaced; number active");
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a paused number send again (after an operator fixed what paused it).
#[utoipa::path(post, path = "/v1/numbers/{id}/resume", tag = "numbers", operation_id = "resume_number",
    params(NumberPath),
    responses(
        (status = 204, description = "active again"),
        (status = 404, description = "no such number"),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<StatusCode, ApiError> {
    if !numbers::resume_number(&state.pool, tenant, id, None).await? {
        return Err(ApiError::NotFound("number"));
    }
    tracing::info!(number = %id, "number resumed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PortfolioLimit {
    /// Unique recipients per rolling 24 h (Meta's messaging limit: 250, 2,000, 10,000,
    /// 100,000); `null` for unlimited.
    daily_recipient_limit: Option<u32>,
}

/// Sets the messaging limit of a business portfolio, shared by the tenant's numbers that name
/// it as their `portfolio_id`. Messages to new recipients beyond it wait for capacity.
#[utoipa::path(put, path = "/v1/portfolios/{id}", tag = "numbers", operation_id = "set_portfolio_limit",
    params(("id" = String, Path, description = "the business portfolio's id, as numbers name it")),
    request_body = PortfolioLimit,
    responses(
        (status = 204, description = "set"),
        (status = 422, description = "the limit is out of range"),
    ))]
pub async fn set_portfolio_limit(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    axum::extract::Path(portfolio): axum::extract::Path<String>,
    ApiJson(req): ApiJson<PortfolioLimit>,
) -> Result<StatusCode, ApiError> {
    let portfolio = portfolio.trim();
    limits::text("id", portfolio, limits::PORTFOLIO)?;
    let limit = match req.daily_recipient_limit {
        None => None,
        Some(n) if (1..=i32::MAX as u32).contains(&n) => Some(n as i32),
        Some(_) => {
            return Err(ApiError::Invalid {
                message: "the limit is out of range".into(),
                fields: vec![FieldError {
                    row: None,
                    field: "daily_recipient_limit".into(),
                    reason: "must be at least 1, or null for unlimited".into(),
                }],
            });
        }
    };
    numbers::set_portfolio_limit(&state.pool, tenant, portfolio, limit).await?;
    tracing::info!(portfolio = %portfolio, ?limit, "portfolio limit set");
    Ok(StatusCode::NO_CONTENT)
}

/// An access token as pasted: surrounding white space and quotes, and a `Bearer ` prefix
/// (copied from a header), taken off; `None` when nothing is left. A Graph token never
/// contains white space or quotes itself.
fn clean_token(raw: &str) -> Option<SecretString> {
    let mut token = raw.trim();
    loop {
        let before = token;
        token = token.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
        if let Some(prefix) = token.get(..7)
            && prefix.eq_ignore_ascii_case("bearer ")
        {
            token = &token[7..];
        }
        if token == before {
            break;
        }
    }
    // A pasted "Bearer " alone is no token.
    let empty = token.is_empty() || token.eq_ignore_ascii_case("bearer");
    (!empty).then(|| SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cleaned(raw: &str) -> Option<String> {
        clean_token(raw).map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn pasted_tokens_lose_their_spaces_quotes_and_bearer_prefix() {
        for raw in [
            "EAAGtoken",
            "  EAAGtoken\n",
            "\"EAAGtoken\"",
            "'EAAGtoken'",
            "Bearer EAAGtoken",
            "bearer   EAAGtoken",
            " \"Bearer EAAGtoken\" ",
            "'BEARER EAAGtoken'\r\n",
        ] {
            assert_eq!(cleaned(raw).as_deref(), Some("EAAGtoken"), "{raw:?}");
        }
        for empty in ["", "   ", "\"\"", "Bearer ", "' Bearer  '"] {
            assert_eq!(cleaned(empty), None, "{empty:?}");
        }
    }

    proptest! {
        #[test]
        fn any_wrapping_of_a_token_cleans_back_to_it(
            token in "[A-Za-z0-9_-]{1,60}",
            before in "[ \t\"']{0,3}",
            bearer in proptest::bool::ANY,
            after in "[ \t\r\n\"']{0,3}",
        ) {
            let raw = format!("{before}{}{token}{after}", if bearer { "Bearer " } else { "" });
            prop_assert_eq!(cleaned(&raw), Some(token));
        }
    }
}
