//! The API's conventions, over HTTP (issue #14): one error shape for every 4xx — unknown routes
//! (404), wrong methods (405), bodies too large (413), wrong content types (415), JSON of the
//! wrong shape (422) — with enum values spelt as the API spells them; every list in one shape,
//! `{"items", "next_cursor"}`, paged by keyset; a campaign's rate, ETA and per-number
//! breakdown; its messages listed and exported; its live view over Server-Sent Events; a
//! tenant's API keys; `Idempotency-Key` on POSTs; and the tenant's webhook log.

use std::collections::HashSet;

use herald::stack::{Roles, Stack};
use herald_ingest::views::{CampaignView, MessageView, Page};
use herald_tests::{TestContext, eventually};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// Status and JSON body of a request made with the tenant's key.
async fn call(request: reqwest::RequestBuilder, key: &secrecy::SecretString) -> (u16, Value) {
    let response = request
        .bearer_auth(key.expose_secret())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_one_json_shape_and_the_right_status() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.ingest.max_body_bytes = 4096;
    let stack = Stack::start(settings, Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let key = api.key();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", stack.ingest_url);
    let number = api.create_number("510000000001", "t", 80).await.unwrap();

    let cases = [
        (http.get(url("/v1/nothing-here")), 404, "not_found"),
        (http.delete(url("/v1/campaigns")), 405, "method_not_allowed"),
        (
            http.post(url("/v1/campaigns"))
                .header("content-type", "application/json")
                .body(format!("{{\"name\": \"{}\"}}", "x".repeat(8000))),
            413,
            "too_large",
        ),
        (
            http.post(url("/v1/campaigns"))
                .header("content-type", "text/plain")
                .body("name=x"),
            415,
            "unsupported_media_type",
        ),
        (
            http.post(url("/v1/suppressions"))
                .header("content-type", "application/xml")
                .body("<phones/>"),
            415,
            "unsupported_media_type",
        ),
        (
            http.post(url("/v1/campaigns"))
                .header("content-type", "application/json")
                .body("{\"name\": "),
            400,
            "bad_request",
        ),
        (
            http.post(url("/v1/campaigns")).json(&json!({"name": 5})),
            422,
            "invalid",
        ),
        (http.get(url("/v1/campaigns?limit=0")), 422, "invalid"),
        (http.get(url("/v1/numbers?cursor=%%%")), 422, "invalid"),
        (
            http.get(url("/v1/numbers?cursor=bm90LWFuLWlk")),
            422,
            "invalid",
        ),
        (
            http.get(url(&format!("/v1/campaigns/{}", uuid::Uuid::now_v7()))),
            404,
            "not_found",
        ),
    ];
    for (request, status, code) in cases {
        let described = format!("{request:?}");
        let (got, body) = call(request, &key).await;
        assert_eq!(got, status, "{described}: {body}");
        assert_eq!(body["error"]["code"], code, "{described}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{described}: {body}"
        );
    }
    // A 422 names its fields.
    let (_, body) = call(http.get(url("/v1/campaigns?limit=5000")), &key).await;
    assert_eq!(body["error"]["fields"][0]["field"], "limit", "{body}");
    // Without a key, the same shape.
    let response = http.get(url("/v1/campaigns")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    // States as the API spells them.
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    api.cancel(campaign.id).await.unwrap();
    let (status, body) = call(
        http.post(url(&format!("/v1/campaigns/{}/start", campaign.id))),
        &key,
    )
    .await;
    assert_eq!(status, 409);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("this one is cancelled"), "{message}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_listed_newest_first_a_page_at_a_time() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("510000000002", "t", 80).await.unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        let c = api
            .create_campaign(&format!("c{i}"), "spring_sale_2026", "en_GB", &[number.id])
            .await
            .unwrap();
        created.push(c.id);
    }
    api.cancel(created[1]).await.unwrap();
    // Another tenant's campaigns are not listed.
    let other = ctx.tenant(&stack.ingest_url).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/campaigns?limit=2".to_owned(),
            Some(c) => format!("/v1/campaigns?limit=2&cursor={c}"),
        };
        let page: Page<CampaignView> = api.get(&path).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let newest_first: Vec<_> = created.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    let cancelled: Page<CampaignView> = api.get("/v1/campaigns?state=cancelled").await.unwrap();
    assert_eq!(
        cancelled.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        [created[1]]
    );
    assert!(cancelled.items[0].completed_at.is_some(), "{cancelled:?}");
    let drafts: Page<CampaignView> = api
        .get("/v1/campaigns?state=draft&limit=1000")
        .await
        .unwrap();
    assert_eq!(drafts.items.len(), 4);
    assert_eq!(drafts.next_cursor, None);
    let theirs: Page<CampaignView> = other.get("/v1/campaigns").await.unwrap();
    assert!(theirs.items.is_empty());
    // An unknown state is refused.
    assert!(
        api.get::<Value>("/v1/campaigns?state=sleeping")
            .await
            .is_err()
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_campaign_shows_its_rate_eta_and_numbers() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for phone in ["520000000001", "520000000002"] {
        numbers.push(api.create_number(phone, "t", 50).await.unwrap().id);
    }
    // 100 msg/s over two numbers: about 8 s.
    let campaign = herald::fixtures::campaign(&api, "rate", &numbers, 800)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    let running = eventually(
        "a rate and an ETA",
        std::time::Duration::from_secs(20),
        || async {
            let c = api.campaign(campaign.id).await.unwrap();
            (c.send_rate.is_some_and(|r| r > 0.0) && c.eta_seconds.is_some()).then_some(c)
        },
    )
    .await;
    let rate = running.send_rate.unwrap();
    assert!(rate <= 110.0, "{running:?}");
    assert!(running.eta.unwrap() > chrono::Utc::now() - chrono::Duration::seconds(1));
    assert_eq!(running.numbers.len(), 2);
    for n in &running.numbers {
        assert_eq!(n.rate, 50);
        assert_eq!(n.state, herald_shared::domain::NumberState::Active);
        assert_eq!(n.sent + n.failed + n.waiting, 400, "{n:?}");
    }
    let done = eventually("completed", std::time::Duration::from_secs(30), || async {
        let c = api.campaign(campaign.id).await.unwrap();
        (c.state == herald_shared::domain::CampaignState::Completed).then_some(c)
    })
    .await;
    assert!(done.completed_at.is_some() && done.eta.is_none() && done.send_rate.is_none());
    let average = done.average_send_rate.unwrap();
    assert!(average > 20.0 && average <= 110.0, "{done:?}");
    assert_eq!(done.numbers.iter().map(|n| n.sent).sum::<i64>(), 800);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_listed_once_each_while_they_change_and_exported_as_csv() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("530000000001", "t", 60).await.unwrap();
    let campaign = herald::fixtures::campaign(&api, "listing", &[number.id], 300)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    // Paged while the sender moves them from pending to read: each once, in id order.
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Page<MessageView> = api
            .get(&format!(
                "/v1/campaigns/{}/messages?limit=37&cursor={cursor}",
                campaign.id
            ))
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|m| m.id.0));
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    eventually(
        "every message read",
        std::time::Duration::from_secs(30),
        || async {
            let c = api.campaign(campaign.id).await.unwrap().counters;
            (c.read == 300).then_some(())
        },
    )
    .await;
    let read: Page<MessageView> = api
        .get(&format!(
            "/v1/campaigns/{}/messages?status=read&limit=1000",
            campaign.id
        ))
        .await
        .unwrap();
    assert_eq!(read.items.len(), 300);
    let m = &read.items[0];
    assert!(
        m.wamid.is_some() && m.read_at.is_some() && m.sent_at.is_some(),
        "{m:?}"
    );
    assert_eq!(m.template.as_deref(), Some("spring_sale_2026"));
    assert_eq!(m.number, number.id);
    let none: Page<MessageView> = api
        .get(&format!(
            "/v1/campaigns/{}/messages?status=failed",
            campaign.id
        ))
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());

    let csv = api
        .get_text(&format!("/v1/campaigns/{}/messages.csv", campaign.id))
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.len(), 15);
    assert_eq!(&headers[2], "status");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter()
            .all(|r| &r[2] == "read" && r[6].starts_with("wamid."))
    );
    // Another tenant sees neither.
    let other = ctx.tenant(&stack.ingest_url).await;
    assert!(
        other
            .get_text(&format!("/v1/campaigns/{}/messages.csv", campaign.id))
            .await
            .is_err()
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// The events of a Server-Sent Events body: (event, id, data).
fn sse_events(body: &str) -> Vec<(String, String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = String::new();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (!event.is_empty()).then(|| (event, id, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_streams_progress_and_state_changes_and_resumes() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("540000000001", "t", 60).await.unwrap();
    let campaign = herald::fixtures::campaign(&api, "live", &[number.id], 240)
        .await
        .unwrap();
    let url = format!("{}/v1/campaigns/{}/events", stack.ingest_url, campaign.id);
    let key = api.key();
    let watch = |last: Option<String>| {
        let (url, key) = (url.clone(), key.clone());
        async move {
            let mut request = reqwest::Client::new()
                .get(&url)
                .bearer_auth(key.expose_secret());
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            // The stream ends by itself once the campaign has.
            tokio::time::timeout(std::time::Duration::from_secs(60), response.text())
                .await
                .expect("the stream ends after the campaign")
                .unwrap()
        }
    };
    // Watched from before the start (a watcher that came later would still get every state
    // change: from the first, as it gave no Last-Event-ID).
    let live = tokio::spawn(watch(None));
    api.start(campaign.id).await.unwrap();
    let events = sse_events(&live.await.unwrap());
    let states: Vec<&str> = events
        .iter()
        .filter(|(e, _, _)| e == "state")
        .map(|(_, _, d)| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["draft", "running", "completed"], "{events:?}");
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(e, _, _)| e == "progress")
        .map(|(_, _, d)| d)
        .collect();
    // About 4 s of sending at 60 msg/s: a progress event each second.
    assert!(progress.len() >= 3, "{events:?}");
    let left = |d: &Value| {
        d["counters"]["total"].as_i64().unwrap()
            - d["counters"]["pending"].as_i64().unwrap()
            - d["counters"]["queued"].as_i64().unwrap()
    };
    assert!(progress.windows(2).all(|w| left(w[0]) <= left(w[1])));
    let (last_event, _, last) = events.last().unwrap();
    assert_eq!(
        (last_event.as_str(), last["state"].as_str()),
        ("progress", Some("completed"))
    );
    assert_eq!(left(last), 240);
    assert!(
        progress
            .iter()
            .any(|d| d["send_rate"].as_f64().is_some_and(|r| r > 0.0))
    );

    // Back after the draft's event: the changes missed first, then the end.
    let draft_id = events
        .iter()
        .find(|(e, _, d)| e == "state" && d["state"] == "draft")
        .map(|(_, id, _)| id.clone())
        .unwrap();
    let resumed = sse_events(&watch(Some(draft_id)).await);
    let kinds: Vec<(&str, &str)> = resumed
        .iter()
        .map(|(e, _, d)| (e.as_str(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("state", "running"),
            ("state", "completed"),
            ("progress", "completed")
        ]
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_made_listed_and_revoked_on_every_replica_at_once() {
    use herald_ingest::views::{ApiKeyRow, CreatedKey};
    let ctx = TestContext::new().await;
    // Two ingest replicas on one database.
    let one = Stack::start(ctx.settings.clone(), Roles::INGEST)
        .await
        .unwrap();
    let two = Stack::start(ctx.settings.clone(), Roles::INGEST)
        .await
        .unwrap();
    let api = ctx.tenant(&one.ingest_url).await;
    let created: CreatedKey = api
        .post("/v1/api-keys", &json!({"name": "ci"}))
        .await
        .unwrap();
    assert_eq!(created.row.name, "ci");
    assert!(created.key.starts_with(&created.row.prefix), "{created:?}");
    let ci = herald::client::ApiClient::new(two.ingest_url.clone(), created.key.clone().into());
    let _: Page<CampaignView> = ci.get("/v1/campaigns").await.unwrap();
    let keys: Page<ApiKeyRow> = ci.get("/v1/api-keys").await.unwrap();
    assert_eq!(keys.items.len(), 2);
    assert!(
        keys.items.iter().all(|k| k.last_used_at.is_some()),
        "{keys:?}"
    );
    let listed = api.get_text("/v1/api-keys").await.unwrap();
    assert!(!listed.contains(&created.key), "a key is shown once only");

    api.delete(&format!("/v1/api-keys/{}", created.row.id))
        .await
        .unwrap();
    // Refused at once by both replicas.
    for url in [&one.ingest_url, &two.ingest_url] {
        let revoked = herald::client::ApiClient::new(url.clone(), created.key.clone().into());
        let e = herald_tests::refusal(revoked.get::<Value>("/v1/campaigns").await.unwrap_err());
        assert_eq!(e.status, 401);
    }
    let keys: Page<ApiKeyRow> = api.get("/v1/api-keys").await.unwrap();
    assert_eq!(keys.items.len(), 1);
    // The last key stays; an unknown one is not found; a name is needed.
    let last = herald_tests::refusal(
        api.delete(&format!("/v1/api-keys/{}", keys.items[0].id))
            .await
            .unwrap_err(),
    );
    assert_eq!(last.status, 409);
    let unknown = herald_tests::refusal(
        api.delete(&format!("/v1/api-keys/{}", uuid::Uuid::now_v7()))
            .await
            .unwrap_err(),
    );
    assert_eq!(unknown.status, 404);
    let unnamed = herald_tests::refusal(
        api.post::<Value>("/v1/api-keys", &json!({"name": " "}))
            .await
            .unwrap_err(),
    );
    assert_eq!(unnamed.status, 422);
    one.stop().await.unwrap();
    two.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_retried_with_its_idempotency_key_is_answered_once() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let key = api.key();
    let number = api.create_number("550000000001", "t", 80).await.unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, idempotency: &str, content_type: &str, body: String| {
        http.post(format!("{}{path}", stack.ingest_url))
            .bearer_auth(key.expose_secret())
            .header("idempotency-key", idempotency)
            .header("content-type", content_type)
            .body(body)
    };
    let json = "application/json";
    let create = json!({"name": "once", "sender_numbers": [number.id],
        "template": {"name": "spring_sale_2026", "language": "en_GB"}})
    .to_string();
    let first = post("/v1/campaigns", "create-1", json, create.clone())
        .send()
        .await
        .unwrap();
    let status = first.status();
    assert!(status.is_success(), "{status}");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post("/v1/campaigns", "create-1", json, create.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), status);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let listed: Page<CampaignView> = api.get("/v1/campaigns").await.unwrap();
    assert_eq!(listed.items.len(), 1, "one campaign for two POSTs");
    // The same key for another request is refused; another key makes another campaign.
    let other = create.replace("once", "twice");
    let (code, body) = call(post("/v1/campaigns", "create-1", json, other.clone()), &key).await;
    assert_eq!(
        (code, body["error"]["fields"][0]["field"].as_str()),
        (422, Some("Idempotency-Key"))
    );
    let (code, _) = call(post("/v1/campaigns", "create-2", json, other), &key).await;
    assert!((200..300).contains(&code));

    // A CSV upload, retried: its rows stored once, the first report replayed.
    let id = first["id"].as_str().unwrap();
    let csv = "phone,body.1,body.2\n+447400000001,Ann,10%\n+447400000002,Bo,20%\n".to_owned();
    let path = format!("/v1/campaigns/{id}/recipients");
    let (code, report) = call(post(&path, "upload-1", "text/csv", csv.clone()), &key).await;
    assert_eq!(
        (code, report["accepted"].as_i64()),
        (200, Some(2)),
        "{report}"
    );
    let (code, replayed) = call(post(&path, "upload-1", "text/csv", csv), &key).await;
    assert_eq!((code, &replayed), (200, &report));
    // A start without a body, retried: the first answer, not a 409.
    let path = format!("/v1/campaigns/{id}/start");
    let started = post(&path, "start-1", json, String::new())
        .send()
        .await
        .unwrap();
    let started_status = started.status();
    assert!(started_status.is_success(), "{started_status}");
    let retried = post(&path, "start-1", json, String::new())
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), started_status);
    let (code, _) = call(post(&path, "start-2", json, String::new()), &key).await;
    assert_eq!(code, 409, "a new key is a new request");
    assert_eq!(
        api.campaign(first["id"].as_str().unwrap().parse().unwrap())
            .await
            .unwrap()
            .counters
            .total,
        2
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_the_webhook_bodies_naming_its_numbers() {
    use herald_ingest::views::WebhookEventView;
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_AND_WEBHOOK)
        .await
        .unwrap();
    let ours = ctx.tenant(&stack.ingest_url).await;
    let theirs = ctx.tenant(&stack.ingest_url).await;
    let a = ours.create_number("560000000001", "t", 80).await.unwrap();
    let b = theirs.create_number("560000000002", "t", 80).await.unwrap();
    let status = |number: &str, waba: &str, wamid: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "1", "phone_number_id": number},
                "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1778580007",
                              "recipient_id": "447400000001"}]}}]}]})
        .to_string()
    };
    for (number, waba, wamid) in [
        (&a.phone_number_id, &a.waba_id, "wamid.A1"),
        (&b.phone_number_id, &b.waba_id, "wamid.B1"),
        (&a.phone_number_id, &a.waba_id, "wamid.A2"),
    ] {
        herald_tests::post_webhook(&ctx, &stack, status(number, waba, wamid).as_bytes()).await;
    }
    let log = eventually(
        "both of ours logged",
        std::time::Duration::from_secs(10),
        || async {
            let page: Page<WebhookEventView> = ours.get("/v1/webhook-events").await.unwrap();
            (page.items.len() == 2).then_some(page)
        },
    )
    .await;
    // Newest first, as Meta sent them, with what processing made of them.
    let wamid = |e: &WebhookEventView| {
        e.body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"].clone()
    };
    assert_eq!(wamid(&log.items[0]), "wamid.A2");
    assert_eq!(wamid(&log.items[1]), "wamid.A1");
    assert!(
        log.items
            .iter()
            .all(|e| e.outcome == "applied" && e.processed_at.is_some())
    );
    let first: Page<WebhookEventView> = ours.get("/v1/webhook-events?limit=1").await.unwrap();
    let next: Page<WebhookEventView> = ours
        .get(&format!(
            "/v1/webhook-events?limit=1&cursor={}",
            first.next_cursor.unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(wamid(&next.items[0]), "wamid.A1");
    assert_eq!(next.next_cursor, None);
    // Another processor may still be applying the other tenant's body: bodies are applied in
    // order by each processor, not across them.
    let other = eventually(
        "theirs logged",
        std::time::Duration::from_secs(10),
        || async {
            let page: Page<WebhookEventView> = theirs.get("/v1/webhook-events").await.unwrap();
            (!page.items.is_empty()).then_some(page)
        },
    )
    .await;
    assert_eq!(other.items.len(), 1);
    assert_eq!(wamid(&other.items[0]), "wamid.B1");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
