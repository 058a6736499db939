//! Issue #17, the web console: pages made of the public API's answers, signed in with an API
//! key kept out of sight; readable without JavaScript, and driven in a real browser (Debian's
//! Chromium through ChromeDriver) the way a campaign team uses it.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use herald::client::{ApiClient, DEMO_WABA};
use herald::stack::Stack;
use herald_tests::{TestContext, eventually, recipients};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use secrecy::ExposeSecret;
use serde_json::json;

/// A browser-less client of the console: no redirects followed, the session cookie carried
/// by hand.
struct Plain {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Plain {
    fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base,
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }
}

/// Every form control of a page that a person fills has a label naming it (`<label for>`).
fn assert_labelled(path: &str, html: &str) {
    for tag in ["<input", "<select", "<textarea"] {
        for (at, _) in html.match_indices(tag) {
            let element = &html[at..at + html[at..].find('>').unwrap()];
            if element.contains(r#"type="hidden""#) {
                continue;
            }
            let id = element
                .split(r#"id=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("{path}: a control without an id: {element}"));
            assert!(
                html.contains(&format!(r#"<label for="{id}""#)),
                "{path}: no label for {element}"
            );
        }
    }
}

async fn stack_with_console(mut ctx: TestContext, path: &str) -> (TestContext, Stack) {
    ctx.settings.ingest.console.path = path.to_owned();
    let stack = ctx.start_stack().await;
    (ctx, stack)
}

#[tokio::test]
async fn the_console_reads_without_javascript_and_keeps_the_key_out_of_sight() {
    let (ctx, stack) = stack_with_console(TestContext::new().await, "/console/").await;
    let (_, secret) = herald::tenant::create(&ctx.pool, "console").await.unwrap();
    let key = secret.expose_secret().to_owned();
    let api = ApiClient::new(&stack.ingest_url, secret);
    let number = api.create_number("310000000031", "t", 50).await.unwrap();
    let campaign = api
        .create_campaign("Winter sale", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    let mut console = Plain::new(format!("{}/console", stack.ingest_url));

    // Not signed in: every page sends to the sign-in page.
    let response = console.get("/").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/console/sign-in");
    let sign_in = console.page("/sign-in").await;
    assert!(sign_in.contains(r#"<label for="key">"#), "{sign_in}");
    let refused = console.post("/sign-in", &[("key", "hk_not_a_key")]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.unwrap().contains("not accepted"));

    let signed = console.post("/sign-in", &[("key", &key)]).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let set_cookie = signed.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(&key),
        "the key is sealed, not stored as it is"
    );
    console.cookie = Some(set_cookie.split(';').next().unwrap().to_owned());

    // The pages, as a browser without JavaScript gets them.
    let list = console.page("/").await;
    assert!(
        list.contains("Winter sale") && list.contains("draft"),
        "{list}"
    );
    let page = console.page(&format!("/campaigns/{}", campaign.id)).await;
    assert_labelled("a campaign", &page);
    assert_labelled("sign-in", &sign_in);
    for expected in [
        r#"data-counter="total""#,
        "Start now",
        r#"enctype="multipart/form-data""#,
        "<code>body.1</code>",
        "Export CSV",
    ] {
        assert!(page.contains(expected), "{expected} in {page}");
    }
    assert!(!page.contains(&key) && !list.contains(&key));
    for path in [
        "/numbers",
        "/templates",
        "/suppressions",
        "/inbox",
        "/webhook-log",
        "/campaigns/new",
    ] {
        let html = console.page(path).await;
        assert!(html.contains("<nav"), "{path}");
        assert_labelled(path, &html);
        assert!(!html.contains(&key), "{path}");
    }

    // Forms do what the API does, and show what it refused, given back as they were filled.
    let number_id = number.id.to_string();
    let refused = console
        .post(
            "/campaigns",
            &[
                ("name", "Spring again"),
                ("number", &number_id),
                ("template", "spring_sale_2026|en_GB"),
                ("weight", "lots"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("weight"), "{refused}");
    assert!(refused.contains(r#"value="Spring again""#), "{refused}");
    assert!(refused.contains(r#"value="lots""#), "{refused}");
    let upload = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text(
            "phone,body.1,body.2\n+447400000001,Ann,5%\nnot a phone,Bo,5%\n",
        )
        .file_name("people.csv")
        .mime_str("text/csv")
        .unwrap(),
    );
    let report = console
        .http
        .post(format!(
            "{}/campaigns/{}/recipients",
            console.base, campaign.id
        ))
        .header(COOKIE, console.cookie.as_deref().unwrap())
        .multipart(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), StatusCode::OK);
    let report = report.text().await.unwrap();
    assert!(report.contains("2 rows read, 1 accepted"), "{report}");
    assert!(
        report.contains("not a phone"),
        "the refused row is shown: {report}"
    );
    assert_eq!(api.campaign(campaign.id).await.unwrap().counters.total, 1);

    let bad = console
        .post(
            "/numbers",
            &[
                ("phone_number_id", "310000000032"),
                ("waba_id", DEMO_WABA),
                ("access_token", " "),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("access_token"));

    let suppressed = console
        .post(
            "/suppressions",
            &[
                ("phones", "+447400000009\n+447400000008"),
                ("reason", "asked"),
            ],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(suppressed.contains("2 suppressed"), "{suppressed}");
    let removed = console
        .post("/suppressions/remove", &[("phone", "+447400000009")])
        .await
        .text()
        .await
        .unwrap();
    assert!(removed.contains("may be sent to again") && removed.contains("+447400000008"));
    let import = reqwest::multipart::Form::new()
        .text("reason", "from the old system")
        .part(
            "file",
            reqwest::multipart::Part::text("phone\n+447400000007\nnobody\n")
                .file_name("stop.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let imported = console
        .http
        .post(format!("{}/suppressions/import", console.base))
        .header(COOKIE, console.cookie.as_deref().unwrap())
        .multipart(import)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        imported.contains("1 suppressed") && imported.contains("row 3"),
        "{imported}"
    );
    assert!(imported.contains("from the old system"), "{imported}");
    let found = console.page("/suppressions?search=7400%20000008").await;
    assert!(found.contains("+447400000008"), "{found}");
    let none = console.page("/suppressions?search=999999").await;
    assert!(!none.contains("+447400000008") && none.contains("Nobody suppressed matches"));
    let bad = console.get("/suppressions?search=abc").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("search"));

    let replaced = console
        .post(
            &format!("/numbers/{}/token", number.id),
            &[("access_token", "a-new-token")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        replaced.contains("Token replaced") && !replaced.contains("a-new-token"),
        "{replaced}"
    );
    sqlx::query(
        "UPDATE sender_numbers SET state = 'paused_quality', state_reason = 'RED' WHERE id = $1",
    )
    .bind(number.id)
    .execute(&ctx.pool)
    .await
    .unwrap();
    let paused = console.page("/numbers").await;
    assert!(
        paused.contains("paused quality") && paused.contains(">Resume<"),
        "{paused}"
    );
    let resumed = console
        .post(&format!("/numbers/{}/resume", number.id), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(resumed.contains("The number sends again"), "{resumed}");
    assert_eq!(
        api.get::<serde_json::Value>(&format!("/v1/numbers/{}", number.id))
            .await
            .unwrap()["state"],
        "active"
    );
    let scheduled = console
        .post(
            &format!("/campaigns/{}/schedule", campaign.id),
            &[("at", "2030-01-02T09:30")],
        )
        .await;
    assert_eq!(scheduled.status(), StatusCode::SEE_OTHER);
    let view = api.campaign(campaign.id).await.unwrap();
    assert_eq!(view.state.to_string(), "scheduled");
    assert_eq!(
        view.scheduled_at.unwrap().to_rfc3339(),
        "2030-01-02T09:30:00+00:00"
    );
    let filtered = console.page("/?state=scheduled").await;
    assert!(filtered.contains("Winter sale"));
    assert!(
        !console
            .page("/?state=running")
            .await
            .contains("Winter sale")
    );
    let past = console
        .post(
            &format!("/campaigns/{}/schedule", campaign.id),
            &[("at", "2001-01-01T00:00")],
        )
        .await;
    assert_eq!(
        past.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "the API's refusal, shown"
    );
    console
        .post(&format!("/campaigns/{}/unschedule", campaign.id), &[])
        .await;
    assert_eq!(
        api.campaign(campaign.id).await.unwrap().state.to_string(),
        "draft"
    );

    // Another site's form cannot act with the session.
    let forged = console
        .http
        .post(format!("{}/campaigns/{}/start", console.base, campaign.id))
        .header(COOKIE, console.cookie.as_deref().unwrap())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api.campaign(campaign.id).await.unwrap().state.to_string(),
        "draft"
    );

    // A revoked key ends the session.
    let keys: serde_json::Value = api.get("/v1/api-keys").await.unwrap();
    let id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let _ = api
        .post::<serde_json::Value>("/v1/api-keys", &json!({"name": "spare"}))
        .await
        .unwrap();
    api.delete(&format!("/v1/api-keys/{id}")).await.unwrap();
    let out = console.get("/numbers").await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/console/sign-in");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// Chromium and ChromeDriver, as Debian installs them (`scripts/test.sh` installs them when
/// it may).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    Some((
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])?,
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?,
    ))
}

/// Where the screenshots go: `target/console-screens/`.
fn screens() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        eventually(
            "ChromeDriver answering",
            Duration::from_secs(20),
            || async { reqwest::get(format!("{url}/status")).await.ok().map(|_| ()) },
        )
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn fill(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                // Not there yet, or the page navigated while it was looked for: a campaign's
                // page reloads itself when the campaign's state changes.
                Err(e)
                    if std::time::Instant::now() < deadline
                        && (e.is_no_such_element()
                            || e.to_string().contains("aborted by navigation")) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{css} never appeared: {e}"),
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screens().join(format!("{name}.png")), png).unwrap();
    }

    /// Whether the page is wider than the window (it must not be, at 360 px).
    async fn overflows(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth + 1",
                vec![],
            )
            .await
            .unwrap()
            .as_bool()
            .unwrap()
    }
}

#[tokio::test]
async fn a_campaign_team_runs_campaigns_from_the_console_in_a_browser() {
    let Some((chromium, driver)) = browser() else {
        eprintln!(
            "SKIPPED: the console's browser test needs Debian's chromium and chromium-driver \
             (sudo apt-get install -y chromium chromium-driver); neither was found"
        );
        return;
    };
    let (ctx, stack) = stack_with_console(TestContext::new().await, "/").await;
    let (_, secret) = herald::tenant::create(&ctx.pool, "browser").await.unwrap();
    let key = secret.expose_secret().to_owned();
    let api = ApiClient::new(&stack.ingest_url, secret);
    let b = Browser::start(&chromium, &driver).await;
    let base = stack.ingest_url.clone();

    b.client.goto(&base).await.unwrap();
    b.wait_for("#key").await;
    b.screenshot("01-sign-in").await;
    b.fill("key", &key).await;
    b.click("form button[type=submit]").await;
    b.wait_for("a.button[href='/campaigns/new']").await;

    // Register a number and test it.
    b.client.goto(&format!("{base}/numbers")).await.unwrap();
    b.fill("phone_number_id", "310000000041").await;
    b.fill("waba_id", DEMO_WABA).await;
    b.fill("access_token", "a-token").await;
    b.fill("rate", "200").await;
    b.click("form.register button").await;
    let done = b.wait_for(".notice.done").await.text().await.unwrap();
    assert!(done.contains("registered"), "{done}");
    b.click("td.actions form button").await;
    let report = b.wait_for(".report").await.text().await.unwrap();
    assert!(report.contains("it works"), "{report}");
    b.screenshot("02-numbers").await;

    // Sync templates.
    b.client.goto(&format!("{base}/templates")).await.unwrap();
    b.click("main form button").await;
    let synced = b.wait_for(".notice.done").await.text().await.unwrap();
    assert!(synced.contains("Synced"), "{synced}");
    assert!(b.text("table.templates").await.contains("spring_sale_2026"));
    b.screenshot("03-templates").await;

    // A campaign from a CSV, started, watched to its end.
    b.client
        .goto(&format!("{base}/campaigns/new"))
        .await
        .unwrap();
    b.fill("name", "Browser spring sale").await;
    b.client
        .find(Locator::Css(
            "#template-0 option[value='spring_sale_2026|en_GB']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let preview = b.text("#preview-0").await;
    assert!(
        preview.contains("{{1}}"),
        "the template's text previewed: {preview}"
    );
    b.screenshot("04-new-campaign").await;
    b.click("form.campaign > button").await;
    b.wait_for("#upload").await;
    let csv = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    let mut rows = String::from("phone,body.1,body.2\n");
    for (phone, values) in recipients(40) {
        rows.push_str(&format!("{phone},{},{}\n", values[0], values[1]));
    }
    rows.push_str("12,Nobody,0%\n");
    std::fs::write(csv.path(), rows).unwrap();
    b.client
        .find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(&csv.path().display().to_string())
        .await
        .unwrap();
    let mapped = b.wait_for("#preview table").await.text().await.unwrap();
    assert!(
        mapped.contains("Customer 0"),
        "the first rows previewed: {mapped}"
    );
    assert!(!b.text("#preview").await.contains("Missing"));
    assert_eq!(b.text("#preview pre.message").await, "Hello Customer 0 25%");
    b.client
        .execute(
            "document.getElementById('preview').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("05-upload-preview").await;
    b.click("#upload button").await;
    let report = b.wait_for(".report").await.text().await.unwrap();
    assert!(report.contains("41 rows read, 40 accepted"), "{report}");
    assert!(b.text("table.rejected").await.contains("phone"));
    b.screenshot("06-upload-report").await;
    b.click("button[data-action=start]").await;
    b.wait_for(".badge[data-state=completed]").await;
    let sent: i64 = b.text("[data-counter=sent]").await.parse().unwrap();
    let read: i64 = b.text("[data-counter=read]").await.parse().unwrap();
    let delivered: i64 = b.text("[data-counter=delivered]").await.parse().unwrap();
    assert_eq!(sent + delivered + read, 40);
    b.screenshot("07-campaign-completed").await;

    // Another campaign, slower, paused and resumed from its page.
    let number = api.create_number("310000000042", "t", 5).await.unwrap();
    let slow = api
        .create_campaign("Browser slow", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    api.upload(slow.id, &recipients(200)).await.unwrap();
    b.client
        .goto(&format!("{base}/campaigns/{}", slow.id))
        .await
        .unwrap();
    b.click("button[data-action=start]").await;
    b.wait_for(".badge[data-state=running]").await;
    b.click("button[data-action=pause]").await;
    b.wait_for(".badge[data-state=paused]").await;
    b.screenshot("08-campaign-paused").await;
    b.click("button[data-action=resume]").await;
    b.wait_for(".badge[data-state=running]").await;
    // Live counters: the page moves without a reload.
    let left = || async {
        let pending: i64 = b.text("[data-counter=pending]").await.parse().unwrap();
        let queued: i64 = b.text("[data-counter=queued]").await.parse().unwrap();
        pending + queued
    };
    let before = left().await;
    b.client
        .execute("window.notReloaded = true", vec![])
        .await
        .unwrap();
    eventually(
        "the counters move live",
        Duration::from_secs(30),
        || async { (left().await < before).then_some(()) },
    )
    .await;
    let same_page = b
        .client
        .execute("return window.notReloaded === true", vec![])
        .await
        .unwrap();
    assert_eq!(
        same_page,
        json!(true),
        "the counters moved without a reload"
    );
    b.screenshot("09-campaign-running").await;

    b.client.goto(&base).await.unwrap();
    b.wait_for("table.campaigns").await;
    b.screenshot("10-campaigns").await;
    for (path, name) in [
        ("/suppressions", "11-suppressions"),
        ("/inbox", "12-inbox"),
        ("/webhook-log", "13-webhook-log"),
    ] {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
        b.wait_for("main h1").await;
        b.screenshot(name).await;
    }
    // A phone's width: nothing wider than the screen.
    b.client.set_window_size(360, 800).await.unwrap();
    for (path, name) in [
        (format!("/campaigns/{}", slow.id), "14-campaign-360px"),
        ("/numbers".to_owned(), "15-numbers-360px"),
    ] {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
        b.wait_for("main h1").await;
        assert!(!b.overflows().await, "{path} is wider than 360 px");
        b.screenshot(name).await;
    }
    b.client.clone().close().await.unwrap();
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
