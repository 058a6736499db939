//! The web console (design §10): pages for the campaign team, served by the ingest role under
//! `ingest.console.path`, embedded in the binary. It is a client of the public API like any
//! other: each page is made of `/v1` answers fetched in-process with the signed-in key, and
//! each form does what one `/v1` call does.

mod api;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use herald_shared::crypto::TokenCipher;
use herald_shared::db::engagement::InboundRecord;
use herald_shared::domain::CampaignState;
use maud::Markup;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::views::{
    CampaignView, NumberView, Page, SuppressionRow, TemplateDetail, TestReport, UploadReport,
    WebhookEventView,
};
use api::{Api, Refusal};
use pages::{Ctx, Notice};
use session::Signed;

/// What the console's handlers share.
pub struct Console {
    /// The `/v1` router, called in-process.
    api: Router,
    cipher: TokenCipher,
    /// Where the console is mounted: `""` at the root, else `/prefix`.
    base: String,
}

impl Console {
    fn href(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { base: &self.base }
    }
}

/// The console's routes under `path` (`/` for the root), calling `api` for everything.
pub fn router(api: Router, cipher: TokenCipher, path: &str) -> Router {
    let base = path.trim_end_matches('/').to_owned();
    let console = Arc::new(Console { api, cipher, base });
    let at = |p: &str| format!("{}{p}", console.base);
    let root = if console.base.is_empty() {
        "/".to_owned()
    } else {
        console.base.clone()
    };
    let mut router = Router::new()
        .route(&root, get(campaigns))
        .route(&at("/sign-in"), get(sign_in_page).post(sign_in))
        .route(&at("/sign-out"), post(sign_out))
        .route(&at("/assets/console.css"), get(css))
        .route(&at("/assets/console.js"), get(js))
        .route(&at("/campaigns"), post(create_campaign))
        .route(&at("/campaigns/new"), get(new_campaign))
        .route(&at("/campaigns/{id}"), get(campaign))
        .route(&at("/campaigns/{id}/recipients"), post(upload))
        .route(&at("/campaigns/{id}/schedule"), post(schedule))
        .route(&at("/campaigns/{id}/events"), get(events))
        .route(&at("/campaigns/{id}/messages.csv"), get(export))
        .route(
            &at("/campaigns/{id}/uploads/{upload}/errors.csv"),
            get(upload_errors),
        )
        .route(&at("/campaigns/{id}/{action}"), post(act))
        .route(&at("/numbers"), get(numbers).post(register_number))
        .route(&at("/numbers/{id}/test"), post(test_number))
        .route(&at("/numbers/{id}/resume"), post(resume_number))
        .route(&at("/numbers/{id}/token"), post(replace_token))
        .route(&at("/templates"), get(templates))
        .route(&at("/templates/sync"), post(sync_templates))
        .route(&at("/suppressions"), get(suppressions).post(suppress))
        .route(&at("/suppressions/remove"), post(unsuppress))
        .route(&at("/suppressions/import"), post(import_suppressions))
        .route(&at("/inbox"), get(inbox))
        .route(&at("/webhook-log"), get(webhook_log));
    if !console.base.is_empty() {
        router = router.route(&at("/"), get(campaigns));
    }
    router.with_state(console)
}

/// A page, or where the browser goes instead (sign-in, when the API no longer takes the key).
type PageResult = Result<Response, Response>;

fn html(markup: Markup) -> Response {
    (
        [(CACHE_CONTROL, "no-store")],
        axum::response::Html(markup.into_string()),
    )
        .into_response()
}

/// A signed-in page; its status is that of the refusal it shows, if any.
fn render(
    console: &Console,
    title: &str,
    active: &str,
    notice: Option<Notice>,
    body: Markup,
) -> Response {
    let status = match &notice {
        Some(Notice::Refused(r)) => r.status,
        _ => StatusCode::OK,
    };
    let mut page = html(pages::layout(
        console.ctx(),
        title,
        active,
        notice.as_ref(),
        body,
    ));
    *page.status_mut() = status;
    page
}

/// What a refusal does to a page: a key the API no longer takes signs out; anything else is
/// shown.
fn refused(console: &Console, title: &str, r: Refusal) -> Response {
    if r.status == StatusCode::UNAUTHORIZED {
        return Redirect::to(&console.href("/sign-in")).into_response();
    }
    let status = r.status;
    let mut page = html(pages::failed(console.ctx(), title, &r));
    *page.status_mut() = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_GATEWAY
    };
    page
}

/// Reads an API answer for a page; a refusal becomes the page's answer.
async fn need<T>(
    console: &Console,
    title: &str,
    answer: impl std::future::Future<Output = Result<T, Refusal>>,
) -> Result<T, Response> {
    answer.await.map_err(|r| refused(console, title, r))
}

fn see_other(to: String) -> Response {
    Redirect::to(&to).into_response()
}

async fn css() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/console.js"),
    )
}

async fn sign_in_page(State(console): State<Arc<Console>>) -> Response {
    html(pages::sign_in(console.ctx(), None))
}

#[derive(Deserialize)]
struct SignIn {
    key: SecretString,
}

async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if !session::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "another site cannot sign in here").into_response();
    }
    let api = Api::new(console.api.clone(), form.key.clone());
    match api.signs_in().await {
        Ok(true) => {
            let cookie = session::seal(&console.cipher, &form.key);
            (
                [(
                    SET_COOKIE,
                    session::set_cookie(&console, Some(&cookie), &headers),
                )],
                Redirect::to(&console.href("/")),
            )
                .into_response()
        }
        Ok(false) => {
            let mut page = html(pages::sign_in(
                console.ctx(),
                Some("That key was not accepted: it is unknown or revoked."),
            ));
            *page.status_mut() = StatusCode::UNAUTHORIZED;
            page
        }
        Err(r) => html(pages::sign_in(console.ctx(), Some(&r.message))),
    }
}

async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if !session::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "another site cannot sign out here").into_response();
    }
    (
        [(SET_COOKIE, session::set_cookie(&console, None, &headers))],
        Redirect::to(&console.href("/sign-in")),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
}

fn cursor_param(cursor: Option<&str>) -> String {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| format!("&cursor={}", urlencode(c)))
        .unwrap_or_default()
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn campaigns(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let state = q.state.as_deref().filter(|s| !s.is_empty());
    let filter = state
        .map(|s| format!("&state={}", urlencode(s)))
        .unwrap_or_default();
    let path = format!(
        "/v1/campaigns?limit=50{filter}{}",
        cursor_param(q.cursor.as_deref())
    );
    let page: Page<CampaignView> = need(&console, "Campaigns", api.get(&path)).await?;
    let ctx = console.ctx();
    Ok(render(
        &console,
        "Campaigns",
        "/",
        None,
        pages::campaigns(ctx, &page, state),
    ))
}

/// The template keys a campaign's CSV must give (the required parameters of its templates),
/// and its first template's text.
async fn needs(api: &Api, c: &CampaignView) -> pages::Needs {
    let mut keys: Vec<String> = Vec::new();
    let mut body = None;
    for t in &c.templates {
        let path = format!(
            "/v1/templates?name={}&language={}",
            urlencode(&t.name),
            urlencode(&t.language)
        );
        let Ok(page) = api.get::<Page<TemplateDetail>>(&path).await else {
            continue;
        };
        let fixed = t.values.as_object();
        if body.is_none() {
            body = page.items.first().map(|d| pages::body_text(&d.components));
        }
        for p in page.items.iter().flat_map(|d| &d.parameters) {
            if p.required
                && !keys.contains(&p.key)
                && !fixed.is_some_and(|f| f.contains_key(&p.key))
            {
                keys.push(p.key.clone());
            }
        }
    }
    pages::Needs {
        keys,
        body: body.unwrap_or_default(),
    }
}

async fn campaign_page(
    console: &Console,
    api: &Api,
    id: &str,
    notice: Option<Notice>,
    report: Option<&UploadReport>,
) -> PageResult {
    let c: CampaignView =
        need(console, "Campaign", api.get(&format!("/v1/campaigns/{id}"))).await?;
    // Only a campaign that still takes recipients shows what its CSV needs.
    let needs = if matches!(c.state, CampaignState::Draft | CampaignState::Scheduled) {
        needs(api, &c).await
    } else {
        pages::Needs::default()
    };
    let ctx = console.ctx();
    Ok(render(
        console,
        &c.name,
        "/",
        notice,
        pages::campaign(ctx, &c, report, &needs),
    ))
}

async fn campaign(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
) -> PageResult {
    campaign_page(&console, &api, &id, None, None).await
}

/// Numbers and approved templates, for the new campaign form.
async fn new_campaign_page(
    console: &Console,
    api: &Api,
    draft: &pages::Draft,
    notice: Option<Notice>,
) -> PageResult {
    let numbers: Page<NumberView> =
        need(console, "New campaign", api.get("/v1/numbers?limit=1000")).await?;
    let templates: Page<TemplateDetail> = need(
        console,
        "New campaign",
        api.get("/v1/templates?status=APPROVED&limit=1000"),
    )
    .await?;
    let offered: Vec<pages::Offered> = templates
        .items
        .iter()
        .filter(|t| t.unsupported.is_none())
        .map(|t| pages::Offered {
            template: t,
            body: pages::body_text(&t.components),
        })
        .collect();
    let ctx = console.ctx();
    Ok(render(
        console,
        "New campaign",
        "/",
        notice,
        pages::new_campaign(ctx, &numbers.items, &offered, draft),
    ))
}

async fn new_campaign(State(console): State<Arc<Console>>, Signed(api): Signed) -> PageResult {
    new_campaign_page(&console, &api, &pages::Draft::default(), None).await
}

/// The new campaign form: `name`, `number` (repeated), `template` and `weight` (repeated, in
/// step; an empty template is no template).
async fn create_campaign(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let mut draft = pages::Draft::default();
    let mut weights = Vec::new();
    let mut chosen = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            "name" => draft.name = value,
            "number" => draft.numbers.push(value),
            "template" => chosen.push(value),
            "weight" => weights.push(value),
            _ => {}
        }
    }
    let mut templates = Vec::new();
    for (i, template) in chosen.into_iter().enumerate() {
        let weight = weights.get(i).cloned().unwrap_or_else(|| "1".into());
        if let Some((name, language)) = template.split_once('|') {
            // Not a number: sent as it is, for the API to say what is wrong with it.
            let w: Value = weight
                .trim()
                .parse::<u32>()
                .map_or_else(|_| Value::from(weight.trim()), Value::from);
            templates.push(json!({"name": name, "language": language, "weight": w}));
            draft.templates.push((template.clone(), weight));
        } else {
            draft.templates.push((String::new(), weight));
        }
    }
    let body = json!({
        "name": draft.name,
        "sender_numbers": draft.numbers,
        "templates": templates,
    });
    match api.post::<CampaignView>("/v1/campaigns", &body).await {
        Ok(c) => Ok(see_other(console.href(&format!("/campaigns/{}", c.id)))),
        Err(r) if r.status == StatusCode::UNAUTHORIZED => Err(refused(&console, "", r)),
        Err(r) => new_campaign_page(&console, &api, &draft, Some(Notice::Refused(r))).await,
    }
}

/// The upload form (`default_country`, then `file`): the file is streamed to the API as it
/// arrives, never held whole.
async fn upload(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
    mut form: Multipart,
) -> PageResult {
    let mut country = String::new();
    let mut answer = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("default_country") => country = field.text().await.unwrap_or_default(),
            Some("file") => {
                let query = if country.trim().is_empty() {
                    String::new()
                } else {
                    format!("?default_country={}", urlencode(country.trim()))
                };
                let path = format!("/v1/campaigns/{id}/recipients{query}");
                let response = api.post_file(&path, field).await;
                answer = Some(Api::read::<UploadReport>(response).await);
                break;
            }
            _ => {}
        }
    }
    match answer {
        Some(Ok(report)) => campaign_page(&console, &api, &id, None, Some(&report)).await,
        Some(Err(r)) if r.status == StatusCode::UNAUTHORIZED => Err(refused(&console, "", r)),
        Some(Err(r)) => campaign_page(&console, &api, &id, Some(Notice::Refused(r)), None).await,
        None => {
            let r = Refusal {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "choose a CSV file to upload".into(),
                fields: vec![("file".into(), "is missing".into())],
            };
            campaign_page(&console, &api, &id, Some(Notice::Refused(r)), None).await
        }
    }
}

/// Start, pause, resume, cancel or unschedule: the API's action of that name.
async fn act(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    if !["start", "pause", "resume", "cancel", "unschedule"].contains(&action.as_str()) {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let path = format!("/v1/campaigns/{id}/{action}");
    match api.post::<Value>(&path, &json!({})).await {
        Ok(_) => Ok(see_other(console.href(&format!("/campaigns/{id}")))),
        Err(r) if r.status == StatusCode::UNAUTHORIZED => Err(refused(&console, "", r)),
        Err(r) => campaign_page(&console, &api, &id, Some(Notice::Refused(r)), None).await,
    }
}

#[derive(Deserialize)]
struct ScheduleForm {
    /// `datetime-local`: `2026-12-24T09:00`, taken as UTC.
    at: String,
}

async fn schedule(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
    Form(form): Form<ScheduleForm>,
) -> PageResult {
    let at = form.at.trim();
    let at = if at.len() == 16 {
        format!("{at}:00Z")
    } else {
        format!("{at}Z")
    };
    let path = format!("/v1/campaigns/{id}/schedule");
    match api.post::<Value>(&path, &json!({"scheduled_at": at})).await {
        Ok(_) => Ok(see_other(console.href(&format!("/campaigns/{id}")))),
        Err(r) if r.status == StatusCode::UNAUTHORIZED => Err(refused(&console, "", r)),
        Err(r) => campaign_page(&console, &api, &id, Some(Notice::Refused(r)), None).await,
    }
}

/// The API's live view of the campaign (Server-Sent Events), passed through as it streams.
async fn events(Signed(api): Signed, Path(id): Path<String>) -> Response {
    api.call(
        Method::GET,
        &format!("/v1/campaigns/{id}/events"),
        None,
        Body::empty(),
    )
    .await
}

/// The API's CSV export, passed through as it streams.
async fn export(Signed(api): Signed, Path(id): Path<String>) -> Response {
    api.call(
        Method::GET,
        &format!("/v1/campaigns/{id}/messages.csv"),
        None,
        Body::empty(),
    )
    .await
}

async fn upload_errors(
    Signed(api): Signed,
    Path((id, upload)): Path<(String, String)>,
) -> Response {
    api.call(
        Method::GET,
        &format!("/v1/campaigns/{id}/uploads/{upload}/errors.csv"),
        None,
        Body::empty(),
    )
    .await
}

async fn numbers_page(
    console: &Console,
    api: &Api,
    notice: Option<Notice>,
    tested: Option<(&str, &TestReport)>,
) -> PageResult {
    let numbers: Page<NumberView> =
        need(console, "Numbers", api.get("/v1/numbers?limit=1000")).await?;
    let ctx = console.ctx();
    Ok(render(
        console,
        "Numbers",
        "/numbers",
        notice,
        pages::numbers(ctx, &numbers.items, tested),
    ))
}

async fn numbers(State(console): State<Arc<Console>>, Signed(api): Signed) -> PageResult {
    numbers_page(&console, &api, None, None).await
}

/// The outcome of a form's API call, shown on the page it came from.
fn outcome<T>(done: Result<T, Refusal>, what: impl FnOnce(T) -> String) -> Result<Notice, Refusal> {
    match done {
        Ok(value) => Ok(Notice::Done(what(value))),
        Err(r) if r.status == StatusCode::UNAUTHORIZED => Err(r),
        Err(r) => Ok(Notice::Refused(r)),
    }
}

#[derive(Deserialize)]
struct RegisterForm {
    phone_number_id: String,
    waba_id: String,
    access_token: SecretString,
    #[serde(default)]
    rate: String,
}

async fn register_number(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Form(form): Form<RegisterForm>,
) -> PageResult {
    use secrecy::ExposeSecret;
    let mut body = json!({
        "phone_number_id": form.phone_number_id.trim(),
        "waba_id": form.waba_id.trim(),
        "access_token": form.access_token.expose_secret(),
    });
    if let Ok(rate) = form.rate.trim().parse::<u32>() {
        body["rate"] = rate.into();
    }
    let done = api.post::<NumberView>("/v1/numbers", &body).await;
    let notice = outcome(done, |n| {
        format!("{} registered: its connection works.", n.display_number)
    })
    .map_err(|r| refused(&console, "", r))?;
    numbers_page(&console, &api, Some(notice), None).await
}

async fn test_number(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
) -> PageResult {
    match api
        .post::<TestReport>(&format!("/v1/numbers/{id}/test"), &json!({}))
        .await
    {
        Ok(report) => numbers_page(&console, &api, None, Some((&id, &report))).await,
        Err(r) if r.status == StatusCode::UNAUTHORIZED => Err(refused(&console, "", r)),
        Err(r) => numbers_page(&console, &api, Some(Notice::Refused(r)), None).await,
    }
}

async fn resume_number(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
) -> PageResult {
    let done = api
        .post::<Value>(&format!("/v1/numbers/{id}/resume"), &json!({}))
        .await;
    let notice = outcome(done, |_| "The number sends again.".to_owned())
        .map_err(|r| refused(&console, "", r))?;
    numbers_page(&console, &api, Some(notice), None).await
}

#[derive(Deserialize)]
struct TokenForm {
    access_token: SecretString,
}

async fn replace_token(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> PageResult {
    use secrecy::ExposeSecret;
    let body = json!({"access_token": form.access_token.expose_secret()});
    let done = api
        .send::<Value>(Method::PUT, &format!("/v1/numbers/{id}/token"), &body)
        .await;
    let notice = outcome(done, |_| "Token replaced: the number is active.".to_owned())
        .map_err(|r| refused(&console, "", r))?;
    numbers_page(&console, &api, Some(notice), None).await
}

async fn templates_page(console: &Console, api: &Api, notice: Option<Notice>) -> PageResult {
    let templates: Page<TemplateDetail> =
        need(console, "Templates", api.get("/v1/templates?limit=1000")).await?;
    let ctx = console.ctx();
    Ok(render(
        console,
        "Templates",
        "/templates",
        notice,
        pages::templates(ctx, &templates.items),
    ))
}

async fn templates(State(console): State<Arc<Console>>, Signed(api): Signed) -> PageResult {
    templates_page(&console, &api, None).await
}

async fn sync_templates(State(console): State<Arc<Console>>, Signed(api): Signed) -> PageResult {
    let done = api
        .post::<crate::views::SyncReport>("/v1/templates/sync", &json!({}))
        .await;
    let notice = outcome(done, |r| {
        let failed: Vec<String> = r
            .wabas
            .iter()
            .filter_map(|w| w.error.as_ref().map(|e| format!("{}: {e}", w.waba_id)))
            .collect();
        let mut text = format!(
            "Synced: {} added, {} updated, {} removed.",
            r.counts.added, r.counts.updated, r.counts.removed
        );
        if !failed.is_empty() {
            text.push_str(&format!(" Not read: {}.", failed.join("; ")));
        }
        text
    })
    .map_err(|r| refused(&console, "", r))?;
    templates_page(&console, &api, Some(notice)).await
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

#[derive(Deserialize, Default)]
struct SuppressionsQuery {
    search: Option<String>,
    cursor: Option<String>,
}

async fn suppressions_page(
    console: &Console,
    api: &Api,
    q: &SuppressionsQuery,
    notice: Option<Notice>,
) -> PageResult {
    let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let filter = search
        .map(|s| format!("&search={}", urlencode(s)))
        .unwrap_or_default();
    let path = format!(
        "/v1/suppressions?limit=100{filter}{}",
        cursor_param(q.cursor.as_deref())
    );
    let (page, notice) = match api.get(&path).await {
        Ok(page) => (page, notice),
        // A search that is no number: say so above an empty list.
        Err(r) if r.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let empty = Page::<SuppressionRow> {
                items: Vec::new(),
                next_cursor: None,
            };
            (empty, Some(Notice::Refused(r)))
        }
        Err(r) => return Err(refused(console, "Suppressions", r)),
    };
    let ctx = console.ctx();
    Ok(render(
        console,
        "Suppressions",
        "/suppressions",
        notice,
        pages::suppressions(ctx, &page, search),
    ))
}

async fn suppressions(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Query(q): Query<SuppressionsQuery>,
) -> PageResult {
    suppressions_page(&console, &api, &q, None).await
}

#[derive(Deserialize)]
struct SuppressForm {
    phones: String,
    #[serde(default)]
    reason: String,
}

async fn suppress(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Form(form): Form<SuppressForm>,
) -> PageResult {
    let phones: Vec<&str> = form
        .phones
        .split(['\n', ',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut body = json!({"phones": phones});
    if !form.reason.trim().is_empty() {
        body["reason"] = form.reason.trim().into();
    }
    let done = api
        .post::<crate::views::AddReport>("/v1/suppressions", &body)
        .await;
    let notice = added(done).map_err(|r| refused(&console, "", r))?;
    suppressions_page(&console, &api, &SuppressionsQuery::default(), Some(notice)).await
}

/// The import form (`reason`, then `file`: a CSV with a `phone` column), streamed to the API.
async fn import_suppressions(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    mut form: Multipart,
) -> PageResult {
    let mut reason = String::new();
    let mut answer = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("reason") => reason = field.text().await.unwrap_or_default(),
            Some("file") => {
                let query = if reason.trim().is_empty() {
                    String::new()
                } else {
                    format!("?reason={}", urlencode(reason.trim()))
                };
                let response = api
                    .post_file(&format!("/v1/suppressions{query}"), field)
                    .await;
                answer = Some(Api::read::<crate::views::AddReport>(response).await);
                break;
            }
            _ => {}
        }
    }
    let answer = answer.unwrap_or_else(|| {
        Err(Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "choose a CSV file to import".into(),
            fields: vec![("file".into(), "is missing".into())],
        })
    });
    let notice = added(answer).map_err(|r| refused(&console, "", r))?;
    suppressions_page(&console, &api, &SuppressionsQuery::default(), Some(notice)).await
}

/// What adding suppressions did, as the page shows it: the rows not read, if any.
fn added(answer: Result<crate::views::AddReport, Refusal>) -> Result<Notice, Refusal> {
    match answer {
        Ok(r) if !r.rejected.is_empty() => Ok(Notice::Refused(Refusal {
            status: StatusCode::OK,
            message: format!(
                "{} suppressed, {} already were; these rows were not read:",
                r.added, r.already
            ),
            fields: r
                .rejected
                .iter()
                .map(|e| (format!("row {}", e.row), e.reason.clone()))
                .collect(),
        })),
        other => outcome(other, |r| {
            format!("{} suppressed, {} already were.", r.added, r.already)
        }),
    }
}

#[derive(Deserialize)]
struct PhoneForm {
    phone: String,
}

async fn unsuppress(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Form(form): Form<PhoneForm>,
) -> PageResult {
    let phone = form.phone.trim().to_owned();
    let done = api
        .delete(&format!("/v1/suppressions/{}", urlencode(&phone)))
        .await;
    let notice = outcome(done, |()| format!("{phone} may be sent to again."))
        .map_err(|r| refused(&console, "", r))?;
    suppressions_page(&console, &api, &SuppressionsQuery::default(), Some(notice)).await
}

async fn inbox(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Query(q): Query<CursorQuery>,
) -> PageResult {
    let path = format!("/v1/inbound?limit=100{}", cursor_param(q.cursor.as_deref()));
    let page: Page<InboundRecord> = need(&console, "Inbox", api.get(&path)).await?;
    let ctx = console.ctx();
    Ok(render(
        &console,
        "Inbox",
        "/inbox",
        None,
        pages::inbox(ctx, &page),
    ))
}

async fn webhook_log(
    State(console): State<Arc<Console>>,
    Signed(api): Signed,
    Query(q): Query<CursorQuery>,
) -> PageResult {
    let path = format!(
        "/v1/webhook-events?limit=50{}",
        cursor_param(q.cursor.as_deref())
    );
    let page: Page<WebhookEventView> = need(&console, "Webhook log", api.get(&path)).await?;
    let ctx = console.ctx();
    Ok(render(
        &console,
        "Webhook log",
        "/webhook-log",
        None,
        pages::webhook_log(ctx, &page),
    ))
}
