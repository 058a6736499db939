//! The console's pages: server-rendered HTML, readable without JavaScript, at 360 px wide and
//! up. Forms are labelled and reachable by keyboard; `console.js` only adds live counters and
//! a preview of a chosen CSV.

use maud::{DOCTYPE, Markup, html};

use crate::views::{
    CampaignView, NumberView, Page, SuppressionRow, TemplateDetail, TestReport, UploadReport,
    WebhookEventView,
};
use herald_shared::db::engagement::InboundRecord;
use herald_shared::domain::{CampaignState, NumberState};

use super::api::Refusal;

/// What every page knows: where the console is mounted.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub base: &'a str,
}

impl Ctx<'_> {
    pub fn href(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A message above a page's content: what an action did, or what the API refused.
pub enum Notice {
    Done(String),
    Refused(Refusal),
}

fn notice(notice: Option<&Notice>) -> Markup {
    match notice {
        None => html! {},
        Some(Notice::Done(text)) => html! { p.notice.done role="status" { (text) } },
        Some(Notice::Refused(r)) => html! {
            div.notice.refused role="alert" {
                p { strong { "Refused: " } (r.message) }
                @if !r.fields.is_empty() {
                    ul { @for (field, reason) in &r.fields { li { code { (field) } " " (reason) } } }
                }
            }
        },
    }
}

const NAV: &[(&str, &str)] = &[
    ("/", "Campaigns"),
    ("/numbers", "Numbers"),
    ("/templates", "Templates"),
    ("/suppressions", "Suppressions"),
    ("/inbox", "Inbox"),
    ("/webhook-log", "Webhook log"),
];

/// The frame of every signed-in page.
pub fn layout(
    ctx: Ctx,
    title: &str,
    active: &str,
    notice_: Option<&Notice>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(ctx, title, true))
            body {
                header.top {
                    a.brand href=(ctx.href("/")) { "Herald" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    a href=(ctx.href(path))
                                      aria-current=[(*path == active).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    form.signout method="post" action=(ctx.href("/sign-out")) {
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (notice(notice_))
                    (body)
                }
            }
        }
    }
}

/// A page's `<head>`: its title, the stylesheet and, on signed-in pages, the script.
fn head(ctx: Ctx, title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Herald" }
            link rel="stylesheet" href=(ctx.href("/assets/console.css"));
            @if script { script src=(ctx.href("/assets/console.js")) defer {} }
        }
    }
}

pub fn sign_in(ctx: Ctx, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(ctx, "Sign in", false))
            body.signin {
                main {
                    h1 { "Herald" }
                    p { "Sign in with one of your tenant's API keys (" code { "herald tenant create" } " or "
                        code { "POST /v1/api-keys" } " makes one)." }
                    @if let Some(error) = error { p.notice.refused role="alert" { (error) } }
                    form method="post" action=(ctx.href("/sign-in")) {
                        label for="key" { "API key" }
                        input #key name="key" type="password" autocomplete="current-password" required autofocus;
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

fn state_badge(state: CampaignState) -> Markup {
    html! { span.badge data-state=(state) { (state) } }
}

fn number_badge(state: NumberState) -> Markup {
    let name = serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    html! { span.badge data-state=(name) { (name.replace('_', " ")) } }
}

fn when(at: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) } }
}

fn rate(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "—".into())
}

fn eta(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 60.0 => format!("{s:.0} s"),
        Some(s) if s < 3600.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn next_link(ctx: Ctx, path: &str, extra: &str, cursor: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = cursor {
            p.more { a href=(format!("{}?{extra}cursor={cursor}", ctx.href(path))) { "Next page →" } }
        }
    }
}

pub const CAMPAIGN_STATES: &[&str] = &[
    "draft",
    "scheduled",
    "running",
    "paused",
    "completed",
    "cancelled",
    "failed",
];

pub fn campaigns(ctx: Ctx, page: &Page<CampaignView>, filter: Option<&str>) -> Markup {
    let extra = filter.map(|s| format!("state={s}&")).unwrap_or_default();
    html! {
        div.toolbar {
            a.button href=(ctx.href("/campaigns/new")) { "New campaign" }
            form method="get" action=(ctx.href("/")) {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" { "any" }
                    @for s in CAMPAIGN_STATES {
                        option value=(s) selected[filter == Some(*s)] { (s) }
                    }
                }
                button type="submit" { "Filter" }
            }
        }
        @if page.items.is_empty() {
            p { "No campaigns yet." }
        } @else {
            div.scroll {
                table.campaigns {
                    thead { tr { th { "Name" } th { "State" } th { "Progress" } th { "Rate" } th { "ETA" } th { "Created" } } }
                    tbody {
                        @for c in &page.items {
                            tr {
                                td { a href=(ctx.href(&format!("/campaigns/{}", c.id))) { (c.name) } }
                                td { (state_badge(c.state)) }
                                td {
                                    progress max="100" value=(c.progress) aria-label=(format!("{} progress", c.name)) { (c.progress) "%" }
                                    " " (format!("{:.1}%", c.progress))
                                    " of " (c.counters.total)
                                }
                                td { (rate(c.send_rate)) }
                                td { (eta(c.eta_seconds)) }
                                td { (when(&c.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        (next_link(ctx, "/", &extra, page.next_cursor.as_deref()))
    }
}

const COUNTERS: &[&str] = &[
    "total",
    "pending",
    "queued",
    "sent",
    "delivered",
    "read",
    "failed",
    "cancelled",
    "suppressed",
    "skipped",
    "replied",
    "clicked",
];

fn counter(c: &herald_shared::db::campaigns::Counters, name: &str) -> i64 {
    match name {
        "total" => c.total,
        "pending" => c.pending,
        "queued" => c.queued,
        "sent" => c.sent,
        "delivered" => c.delivered,
        "read" => c.read,
        "failed" => c.failed,
        "cancelled" => c.cancelled,
        "suppressed" => c.suppressed,
        "skipped" => c.skipped,
        "replied" => c.replied,
        _ => c.clicked,
    }
}

fn action(ctx: Ctx, c: &CampaignView, name: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(ctx.href(&format!("/campaigns/{}/{name}", c.id))) {
            button type="submit" data-action=(name) { (label) }
        }
    }
}

/// A campaign: live counters, its numbers, templates and failures, and what can be done.
/// A campaign page's view of its templates: the keys its CSV must give, and the first
/// template's text (for the upload preview's rendered first message).
#[derive(Default)]
pub struct Needs {
    pub keys: Vec<String>,
    pub body: String,
}

pub fn campaign(
    ctx: Ctx,
    c: &CampaignView,
    report: Option<&UploadReport>,
    needs: &Needs,
) -> Markup {
    let required = &needs.keys;
    let live = matches!(
        c.state,
        CampaignState::Running | CampaignState::Paused | CampaignState::Scheduled
    );
    html! {
        p.state {
            (state_badge(c.state))
            @if let Some(reason) = &c.state_reason { " " span.reason { (reason) } }
        }
        section #progress data-live=[live.then(|| ctx.href(&format!("/campaigns/{}/events", c.id)))]
                data-state=(c.state) aria-live="polite" {
            progress #bar max="100" value=(c.progress) aria-label="progress" { (c.progress) "%" }
            p {
                span data-field="progress" { (format!("{:.1}", c.progress)) } "% left the queue · rate "
                span data-field="rate" { (rate(c.send_rate)) } " · ETA "
                span data-field="eta" { (eta(c.eta_seconds)) }
            }
            dl.counters {
                @for name in COUNTERS {
                    div { dt { (name) } dd data-counter=(name) { (counter(&c.counters, name)) } }
                }
            }
        }
        div.actions {
            @match c.state {
                CampaignState::Draft => { (action(ctx, c, "start", "Start now")) }
                CampaignState::Scheduled => { (action(ctx, c, "start", "Start now")) (action(ctx, c, "unschedule", "Unschedule")) }
                CampaignState::Running => { (action(ctx, c, "pause", "Pause")) }
                CampaignState::Paused => { (action(ctx, c, "resume", "Resume")) }
                _ => {}
            }
            @if matches!(c.state, CampaignState::Draft | CampaignState::Scheduled | CampaignState::Running | CampaignState::Paused) {
                (action(ctx, c, "cancel", "Cancel"))
            }
            a.button href=(ctx.href(&format!("/campaigns/{}/messages.csv", c.id))) download { "Export CSV" }
        }
        @if matches!(c.state, CampaignState::Draft | CampaignState::Scheduled) {
            section {
                h2 { "Recipients" }
                @if let Some(report) = report { (upload_report(ctx, c, report)) }
                form #upload method="post" enctype="multipart/form-data"
                     action=(ctx.href(&format!("/campaigns/{}/recipients", c.id)))
                     data-required=(required.join(",")) data-body=(needs.body) {
                    p.hint { "A CSV with a " code { "phone" } " column and a column for each of the templates' values: "
                        @if required.is_empty() { "none needed." } @else { @for (i, k) in required.iter().enumerate() { @if i > 0 { ", " } code { (k) } } "." } }
                    label for="default_country" { "Country of numbers written without one (ISO code, optional)" }
                    input #default_country name="default_country" maxlength="2" placeholder="GB";
                    label for="file" { "CSV file" }
                    input #file name="file" type="file" accept=".csv,text/csv" required;
                    div #preview hidden {}
                    button type="submit" { "Upload" }
                }
            }
            section {
                h2 { "Schedule" }
                form method="post" action=(ctx.href(&format!("/campaigns/{}/schedule", c.id))) {
                    label for="at" { "Start at (UTC)" }
                    input #at name="at" type="datetime-local" required;
                    button type="submit" { "Schedule" }
                }
                @if let Some(at) = &c.scheduled_at { p { "Starts " (when(at)) } }
            }
        }
        section {
            h2 { "Numbers" }
            div.scroll { table {
                thead { tr { th { "Number" } th { "State" } th { "Rate" } th { "Sent" } th { "Failed" } th { "Waiting" } } }
                tbody { @for n in &c.numbers { tr {
                    td { (n.display_number) } td { (number_badge(n.state)) } td { (n.rate) "/s" }
                    td { (n.sent) } td { (n.failed) } td { (n.waiting) }
                } } }
            } }
        }
        section {
            h2 { "Templates" }
            div.scroll { table {
                thead { tr { th { "Template" } th { "Weight" } th { "Sent" } th { "Delivered" } th { "Read" } th { "Failed" } } }
                tbody { @for t in &c.templates { tr {
                    td { (t.name) " (" (t.language) ")" } td { (t.weight) }
                    td { (t.counters.sent) } td { (t.counters.delivered) } td { (t.counters.read) } td { (t.counters.failed) }
                } } }
            } }
        }
        @if !c.failures.is_empty() {
            section {
                h2 { "Failures" }
                div.scroll { table.failures {
                    thead { tr { th { "Code" } th { "Error" } th { "Messages" } } }
                    tbody { @for f in &c.failures { tr {
                        td { (f.code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                        td { (f.title.as_deref().unwrap_or("")) }
                        td { (f.count) }
                    } } }
                } }
            }
        }
        p.meta {
            "Created " (when(&c.created_at))
            @if let Some(at) = &c.started_at { " · started " (when(at)) }
            @if let Some(at) = &c.completed_at { " · ended " (when(at)) }
        }
    }
}

fn upload_report(ctx: Ctx, c: &CampaignView, r: &UploadReport) -> Markup {
    html! {
        div.report role="status" {
            p { strong { "Upload: " } (r.rows) " rows read, " (r.accepted) " accepted, "
                (r.suppressed) " suppressed, " (r.duplicates) " duplicates, " (r.rejected_count) " refused." }
            @if !r.rejected.is_empty() {
                div.scroll { table.rejected {
                    thead { tr { th { "Row" } th { "Field" } th { "Why" } } }
                    tbody { @for e in &r.rejected { tr { td { (e.row) } td { code { (e.field) } } td { (e.reason) } } } }
                } }
                p { a href=(ctx.href(&format!("/campaigns/{}/uploads/{}/errors.csv", c.id, r.upload_id))) download { "Every refused row (CSV)" } }
            }
        }
    }
}

/// An approved template, as the new campaign form offers it.
pub struct Offered<'a> {
    pub template: &'a TemplateDetail,
    pub body: String,
}

/// The text of a template's body component, `{{1}}` and all.
pub fn body_text(components: &[serde_json::Value]) -> String {
    components
        .iter()
        .filter(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("body"))
        })
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the new campaign form was given, to show again when the API refused it.
#[derive(Default)]
pub struct Draft {
    pub name: String,
    pub numbers: Vec<String>,
    pub templates: Vec<(String, String)>,
}

pub const TEMPLATE_SLOTS: usize = 3;

pub fn new_campaign(
    ctx: Ctx,
    numbers: &[NumberView],
    offered: &[Offered],
    draft: &Draft,
) -> Markup {
    html! {
        @if numbers.is_empty() || offered.is_empty() {
            p.notice.refused {
                "A campaign needs a sender number and an approved template: "
                a href=(ctx.href("/numbers")) { "register a number" } ", then "
                a href=(ctx.href("/templates")) { "sync its templates" } "."
            }
        }
        form.campaign method="post" action=(ctx.href("/campaigns")) {
            label for="name" { "Name" }
            input #name name="name" required maxlength="200" value=(draft.name);
            fieldset {
                legend { "Sender numbers" }
                @for n in numbers {
                    div.check {
                        input type="checkbox" name="number" value=(n.id) id=(format!("n-{}", n.id))
                              checked[draft.numbers.contains(&n.id.to_string()) || numbers.len() == 1];
                        label for=(format!("n-{}", n.id)) { (n.display_number) " " (number_badge(n.state)) }
                    }
                }
            }
            fieldset {
                legend { "Templates (recipients are shared between them by weight)" }
                @for slot in 0..TEMPLATE_SLOTS {
                    div.template {
                        label for=(format!("template-{slot}")) { "Template " (slot + 1) }
                        select id=(format!("template-{slot}")) name="template" data-preview=(format!("preview-{slot}")) {
                            option value="" { @if slot == 0 { "choose…" } @else { "none" } }
                            @for o in offered {
                                @let value = format!("{}|{}", o.template.name, o.template.language);
                                option value=(value) data-body=(o.body)
                                       selected[draft.templates.get(slot).is_some_and(|(v, _)| *v == value)] {
                                    (o.template.name) " (" (o.template.language) ")"
                                }
                            }
                        }
                        label for=(format!("weight-{slot}")) { "Weight" }
                        input id=(format!("weight-{slot}")) name="weight" type="number" min="1" max="1000"
                              value=(draft.templates.get(slot).map(|(_, w)| w.as_str()).unwrap_or("1"));
                        pre.preview id=(format!("preview-{slot}")) aria-live="polite" {}
                    }
                }
            }
            details {
                summary { "Every approved template's text" }
                dl.templates { @for o in offered {
                    dt { (o.template.name) " (" (o.template.language) ")" } dd { pre { (o.body) } }
                } }
            }
            button type="submit" { "Create (a draft: upload recipients next)" }
        }
    }
}

pub fn numbers(ctx: Ctx, numbers: &[NumberView], tested: Option<(&str, &TestReport)>) -> Markup {
    html! {
        @if let Some((id, report)) = tested {
            div.report role="status" {
                @let name = numbers.iter().find(|n| n.id.to_string() == id).map_or(id, |n| n.display_number.as_str());
                p { strong { "Connection test of " (name) ": " } @if report.ok { "it works." } @else { "it does not work." } }
                @if let Some(e) = &report.error {
                    p { "The Cloud API answered " @if let Some(code) = e.code { "(" (code) ") " } (e.reason) }
                }
                @if !report.problems.is_empty() { ul { @for p in &report.problems { li { (p) } } } }
                pre { (serde_json::to_string_pretty(&report.profile).unwrap_or_default()) }
            }
        }
        div.scroll { table.numbers {
            thead { tr { th { "Number" } th { "State" } th { "Rate" } th { "Quality" } th { "Actions" } } }
            tbody { @for n in numbers { tr {
                td { (n.display_number) br; small { (n.phone_number_id) } @if let Some(v) = &n.verified_name { br; small { (v) } } }
                td { (number_badge(n.state)) @if let Some(r) = &n.state_reason { br; small.reason { (r) } } }
                td { (n.rate) "/s of " (n.throughput_ceiling) }
                td { (n.quality_rating.as_deref().unwrap_or("—")) }
                td.actions {
                    form.inline method="post" action=(ctx.href(&format!("/numbers/{}/test", n.id))) { button type="submit" { "Test connection" } }
                    @if n.state != NumberState::Active {
                        form.inline method="post" action=(ctx.href(&format!("/numbers/{}/resume", n.id))) { button type="submit" { "Resume" } }
                    }
                    details {
                        summary { "Replace token" }
                        form method="post" action=(ctx.href(&format!("/numbers/{}/token", n.id))) {
                            label for=(format!("token-{}", n.id)) { "New access token" }
                            input id=(format!("token-{}", n.id)) name="access_token" type="password" autocomplete="off" required;
                            button type="submit" { "Replace" }
                        }
                    }
                }
            } } }
        } }
        section {
            h2 { "Register a number" }
            form.register method="post" action=(ctx.href("/numbers")) {
                label for="phone_number_id" { "Phone number ID (from Meta's WhatsApp Manager)" }
                input #phone_number_id name="phone_number_id" required inputmode="numeric";
                label for="waba_id" { "WhatsApp Business Account ID" }
                input #waba_id name="waba_id" required inputmode="numeric";
                label for="access_token" { "Access token" }
                input #access_token name="access_token" type="password" autocomplete="off" required;
                label for="rate" { "Rate to start at, messages per second (optional)" }
                input #rate name="rate" type="number" min="1" max="1000";
                p.hint { "The connection is tested first; a number the Cloud API refuses is not registered." }
                button type="submit" { "Register" }
            }
        }
    }
}

pub fn templates(ctx: Ctx, templates: &[TemplateDetail]) -> Markup {
    html! {
        form method="post" action=(ctx.href("/templates/sync")) {
            button type="submit" { "Sync from the Cloud API" }
        }
        @if templates.is_empty() { p { "No templates yet: sync them." } }
        div.scroll { table.templates {
            thead { tr { th { "Name" } th { "Language" } th { "Status" } th { "Category" } th { "Parameters" } th { "Synced" } } }
            tbody { @for t in templates { tr {
                td { (t.name) details { summary { "text" } pre { (body_text(&t.components)) } } }
                td { (t.language) }
                td { span.badge data-state=(t.status.to_lowercase()) { (t.status) } @if let Some(u) = &t.unsupported { br; small.reason { (u) } } }
                td { (t.category) }
                td { @for (i, p) in t.parameters.iter().enumerate() { @if i > 0 { ", " } code { (p.key) } @if !p.required { " (optional)" } } }
                td { (when(&t.synced_at)) }
            } } }
        } }
    }
}

pub fn suppressions(ctx: Ctx, page: &Page<SuppressionRow>, search: Option<&str>) -> Markup {
    let extra = search
        .map(|s| format!("search={}&", super::urlencode(s)))
        .unwrap_or_default();
    html! {
        form.search method="get" action=(ctx.href("/suppressions")) {
            label for="search" { "Find a number" }
            input #search name="search" type="search" inputmode="tel" value=[search];
            button type="submit" { "Find" }
        }
        section {
            h2 { "Add or import" }
            form method="post" action=(ctx.href("/suppressions")) {
                label for="phones" { "Phone numbers, one per line or comma-separated (E.164)" }
                textarea #phones name="phones" rows="4" required {}
                label for="reason" { "Why (optional)" }
                input #reason name="reason" maxlength="200";
                button type="submit" { "Suppress" }
            }
            form method="post" enctype="multipart/form-data" action=(ctx.href("/suppressions/import")) {
                label for="import-reason" { "Why, for rows without a reason (optional)" }
                input #import-reason name="reason" maxlength="200";
                label for="import-file" { "A CSV file with a " code { "phone" } " column (and, if you like, a " code { "reason" } " one)" }
                input #import-file name="file" type="file" accept=".csv,text/csv" required;
                button type="submit" { "Import" }
            }
        }
        @if page.items.is_empty() {
            p { @if search.is_some() { "Nobody suppressed matches." } @else { "Nobody is suppressed." } }
        }
        div.scroll { table.suppressions {
            thead { tr { th { "Recipient" } th { "Why" } th { "Note" } th { "Since" } th {} } }
            tbody { @for s in &page.items { tr {
                td { (s.recipient) } td { (s.reason) } td { (s.note.as_deref().unwrap_or("")) } td { (when(&s.changed_at)) }
                td { form.inline method="post" action=(ctx.href("/suppressions/remove")) {
                    input type="hidden" name="phone" value=(s.recipient);
                    button type="submit" aria-label=(format!("Remove {}", s.recipient)) { "Remove" }
                } }
            } } }
        } }
        (next_link(ctx, "/suppressions", &extra, page.next_cursor.as_deref()))
    }
}

pub fn inbox(ctx: Ctx, page: &Page<InboundRecord>) -> Markup {
    html! {
        @if page.items.is_empty() { p { "No messages from users yet." } }
        div.scroll { table.inbox {
            thead { tr { th { "From" } th { "Message" } th { "Campaign" } th { "Sent" } } }
            tbody { @for m in &page.items { tr {
                td { (m.from) @if let Some(n) = &m.profile_name { br; small { (n) } } }
                td { small { (m.kind) } " " (m.text.as_deref().unwrap_or("")) @if let Some(media) = &m.media { br; small { "media " (media.0.id) } } }
                td { @if let Some(c) = m.campaign_id { a href=(ctx.href(&format!("/campaigns/{c}"))) { "campaign" } } }
                td { (when(&m.sent_at)) }
            } } }
        } }
        (next_link(ctx, "/inbox", "", page.next_cursor.as_deref()))
    }
}

pub fn webhook_log(ctx: Ctx, page: &Page<WebhookEventView>) -> Markup {
    html! {
        @if page.items.is_empty() { p { "Nothing from Meta yet." } }
        div.scroll { table.webhooks {
            thead { tr { th { "Received" } th { "Outcome" } th { "Body" } } }
            tbody { @for e in &page.items { tr {
                td { (when(&e.received_at)) }
                td { (e.outcome) @if let Some(err) = &e.error { br; small.reason { (err) } } }
                td { details { summary { (summary(&e.body)) } pre { (serde_json::to_string_pretty(&e.body).unwrap_or_default()) } } }
            } } }
        } }
        (next_link(ctx, "/webhook-log", "", page.next_cursor.as_deref()))
    }
}

/// A webhook body in a few words: how many statuses and messages it carries.
fn summary(body: &serde_json::Value) -> String {
    let values = body["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten())
        .map(|c| &c["value"]);
    let (mut statuses, mut messages, mut other) = (0, 0, 0);
    for v in values {
        statuses += v["statuses"].as_array().map_or(0, Vec::len);
        messages += v["messages"].as_array().map_or(0, Vec::len);
        other += usize::from(v["statuses"].is_null() && v["messages"].is_null());
    }
    format!("{statuses} statuses, {messages} messages, {other} other changes")
}

/// A page that could not be made: what the API said.
pub fn failed(ctx: Ctx, title: &str, refusal: &Refusal) -> Markup {
    layout(
        ctx,
        title,
        "",
        Some(&Notice::Refused(refusal.clone())),
        html! {
            p { a href=(ctx.href("/")) { "Back to the campaigns" } }
        },
    )
}
