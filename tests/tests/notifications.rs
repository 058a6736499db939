//! Issue #17, notifications: a tenant's webhook endpoints receive the events of its campaigns
//! and numbers, signed as Standard Webhooks has it, in order per subject, and a receiver that
//! was down receives everything once it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::standard_webhooks;
use herald_tests::{TestContext, configure_simulator, eventually, message_to, recipients};
use secrecy::SecretString;
use serde_json::{Value, json};

/// A tenant's receiver: records what it is sent, answering 200, or 503 while it is down.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, bytes::Bytes)>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

/// An event as received, its signature checked.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    kind: String,
    subject: String,
    data: Value,
}

impl Receiver {
    async fn start(&self) -> String {
        let this = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let this = this.clone();
                async move {
                    if this.down.load(std::sync::atomic::Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    this.got.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}/hook")
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// What arrived so far, each signature checked against `secret`.
    fn received(&self, secret: &SecretString) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(headers, body)| {
                let header = |name: &str| headers[name].to_str().unwrap().to_owned();
                let (id, timestamp) = (
                    header(standard_webhooks::ID),
                    header(standard_webhooks::TIMESTAMP),
                );
                let timestamp: i64 = timestamp.parse().unwrap();
                let signature = header(standard_webhooks::SIGNATURE);
                standard_webhooks::verify(secret, &id, timestamp, body, &signature)
                    .expect("the signature verifies with the endpoint's secret");
                assert!(
                    standard_webhooks::verify(
                        &standard_webhooks::new_secret(),
                        &id,
                        timestamp,
                        body,
                        &signature
                    )
                    .is_err(),
                    "another secret's signature does not verify"
                );
                assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300);
                let event: Value = serde_json::from_slice(body).unwrap();
                let data = event["data"].clone();
                let subject = data["campaign_id"]
                    .as_str()
                    .or(data["number_id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                Received {
                    id,
                    kind: event["type"].as_str().unwrap().to_owned(),
                    subject,
                    data,
                }
            })
            .collect()
    }

    /// The types received about `subject`, in order.
    fn kinds_of(&self, secret: &SecretString, subject: &str) -> Vec<String> {
        self.received(secret)
            .into_iter()
            .filter(|r| r.subject == subject)
            .map(|r| r.kind)
            .collect()
    }
}

struct World {
    ctx: TestContext,
    stack: Stack,
    api: ApiClient,
    receiver: Receiver,
    endpoint: String,
    secret: SecretString,
}

/// The events of campaigns and numbers.
const LIFECYCLE: &[&str] = &[
    "campaign.started",
    "campaign.paused",
    "campaign.resumed",
    "campaign.completed",
    "number.paused",
    "number.resumed",
];

impl World {
    async fn start(ctx: TestContext) -> Self {
        Self::receiving(ctx, LIFECYCLE, false).await
    }

    /// A stack whose tenant has an endpoint for `events`; with the webhook role when
    /// `webhooks` (statuses and inbound messages then reach Herald).
    async fn receiving(mut ctx: TestContext, events: &[&str], webhooks: bool) -> Self {
        // A receiver may be down for a while in these tests: tried every second meanwhile.
        ctx.settings.ingest.notifications.retry_delays_s = vec![1; 60];
        let roles = Roles {
            ingest: true,
            sender: true,
            webhook: webhooks,
            simulator: true,
        };
        let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
        let api = ctx.tenant(&stack.ingest_url).await;
        let receiver = Receiver::default();
        let url = receiver.start().await;
        let created: Value = api
            .post(
                "/v1/webhook-endpoints",
                &json!({"url": url, "description": "tests", "events": events}),
            )
            .await
            .unwrap();
        let secret = SecretString::from(created["secret"].as_str().unwrap().to_owned());
        Self {
            ctx,
            stack,
            api,
            receiver,
            endpoint: created["id"].as_str().unwrap().to_owned(),
            secret,
        }
    }

    async fn wait_for(&self, subject: &str, kinds: &[&str]) {
        eventually(
            &format!("{kinds:?} received about {subject}"),
            Duration::from_secs(30),
            || async { (self.receiver.kinds_of(&self.secret, subject) == kinds).then_some(()) },
        )
        .await;
    }

    async fn deliveries(&self) -> Vec<Value> {
        let page: Value = self
            .api
            .get(&format!(
                "/v1/webhook-endpoints/{}/deliveries",
                self.endpoint
            ))
            .await
            .unwrap();
        page["items"].as_array().unwrap().clone()
    }

    async fn finish(self) {
        self.stack.stop().await.unwrap();
        self.ctx.cleanup().await;
    }
}

#[tokio::test]
async fn campaign_and_number_events_reach_the_endpoint_signed_and_in_order() {
    let w = World::start(TestContext::new().await).await;
    // Every send refused for the token: the number pauses.
    configure_simulator(
        &w.stack,
        json!({"faults": [{"kind": "error", "code": 190, "probability": 1.0}]}),
    )
    .await;
    let number = w
        .api
        .create_number("310000000017", "t", 50)
        .await
        .unwrap()
        .id;
    let campaign = w
        .api
        .create_campaign("told", "spring_sale_2026", "en_GB", &[number])
        .await
        .unwrap()
        .id;
    w.api.upload(campaign, &recipients(3)).await.unwrap();
    w.api.start(campaign).await.unwrap();
    let (number, campaign) = (number.to_string(), campaign.to_string());
    w.wait_for(&number, &["number.paused"]).await;
    let id = campaign.parse().unwrap();
    w.api.pause(id).await.unwrap();
    w.api.resume(id).await.unwrap();
    // The operator fixed the token.
    configure_simulator(&w.stack, json!({"faults": []})).await;
    w.api
        .act(&format!("/v1/numbers/{number}/resume"))
        .await
        .unwrap();
    w.wait_for(
        &campaign,
        &[
            "campaign.started",
            "campaign.paused",
            "campaign.resumed",
            "campaign.completed",
        ],
    )
    .await;
    w.wait_for(&number, &["number.paused", "number.resumed"])
        .await;

    let received = w.receiver.received(&w.secret);
    let paused = received.iter().find(|r| r.kind == "number.paused").unwrap();
    assert!(
        paused.data["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("190"),
        "{:?}",
        paused.data
    );
    let completed = received
        .iter()
        .find(|r| r.kind == "campaign.completed")
        .unwrap();
    assert_eq!(completed.data["counters"]["sent"], 3);
    let mut ids: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), received.len(), "each event once: {ids:?}");
    // The endpoint's log: each delivered with the receiver's answer.
    let log = w.deliveries().await;
    assert_eq!(log.len(), 6);
    for d in &log {
        assert_eq!(
            (d["state"].as_str(), d["last_status"].as_i64()),
            (Some("delivered"), Some(204)),
            "{d}"
        );
    }
    w.finish().await;
}

#[tokio::test]
async fn a_receiver_that_was_down_receives_everything_afterwards_in_order() {
    let w = World::start(TestContext::new().await).await;
    w.receiver.set_down(true);
    let number = w
        .api
        .create_number("310000000018", "t", 40)
        .await
        .unwrap()
        .id;
    let campaign = w
        .api
        .create_campaign("while down", "spring_sale_2026", "en_GB", &[number])
        .await
        .unwrap()
        .id;
    w.api.upload(campaign, &recipients(80)).await.unwrap();
    w.api.start(campaign).await.unwrap();
    w.api.pause(campaign).await.unwrap();
    w.api.resume(campaign).await.unwrap();
    // Refused, and tried again, while the campaign goes on.
    eventually(
        "the first event refused twice",
        Duration::from_secs(20),
        || async {
            let log = w.deliveries().await;
            log.iter()
                .any(|d| {
                    d["attempts"].as_i64() >= Some(2) && d["last_status"].as_i64() == Some(503)
                })
                .then_some(())
        },
    )
    .await;
    assert!(w.receiver.received(&w.secret).is_empty());
    w.receiver.set_down(false);
    w.wait_for(
        &campaign.to_string(),
        &[
            "campaign.started",
            "campaign.paused",
            "campaign.resumed",
            "campaign.completed",
        ],
    )
    .await;
    w.finish().await;
}

#[tokio::test]
async fn endpoints_are_made_changed_rotated_and_deleted_and_bad_ones_refused() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let refused = |body: Value| {
        let api = &api;
        async move {
            let e = api
                .post::<Value>("/v1/webhook-endpoints", &body)
                .await
                .unwrap_err();
            e.to_string()
        }
    };
    for (body, field) in [
        (
            json!({"url": "ftp://x/y", "events": ["campaign.started"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["campaign.started"]}),
            "url",
        ),
        (
            json!({"url": "https://x.example/h", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://x.example/h", "events": ["campaign.exploded"]}),
            "events",
        ),
    ] {
        let e = refused(body.clone()).await;
        assert!(e.contains("422") && e.contains(field), "{body}: {e}");
    }
    let created: Value = api
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": "https://x.example/h", "events": ["campaign.completed", "campaign.completed"]}),
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"));
    assert_eq!(created["events"], json!(["campaign.completed"]));
    // Never shown again.
    let got: Value = api
        .get(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .unwrap();
    assert!(got.get("secret").is_none(), "{got}");
    let list: Value = api.get("/v1/webhook-endpoints").await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let changed: Value = api
        .patch(
            &format!("/v1/webhook-endpoints/{id}"),
            &json!({"events": ["number.paused"], "description": "ops", "enabled": false}),
        )
        .await
        .unwrap();
    assert_eq!(changed["events"], json!(["number.paused"]));
    assert_eq!(changed["description"], "ops");
    assert!(changed["disabled_at"].is_string());
    let enabled: Value = api
        .patch(
            &format!("/v1/webhook-endpoints/{id}"),
            &json!({"enabled": true, "description": null}),
        )
        .await
        .unwrap();
    assert!(enabled["disabled_at"].is_null() && enabled["description"].is_null());
    let rotated: Value = api
        .post(
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            &json!({}),
        )
        .await
        .unwrap();
    let second = rotated["secret"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != first);
    // Another tenant sees none of it.
    let other = ctx.tenant(&stack.ingest_url).await;
    let e = other
        .get::<Value>(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    api.delete(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .unwrap();
    let e = api
        .get::<Value>(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn events_past_their_retention_go_unless_a_delivery_is_pending() {
    use herald_shared::db::notifications::{self, NewEndpoint};
    let ctx = TestContext::new().await;
    let (paused, _) = herald_tests::seed_campaign(&ctx, 1).await;
    let (completed, _) = herald_tests::seed_campaign(&ctx, 1).await;
    let tenants: Vec<herald_shared::domain::TenantId> =
        sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = ANY($1) ORDER BY id")
            .bind([paused, completed])
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    for tenant in tenants {
        let events = [
            "campaign.paused".to_owned(),
            "campaign.completed".to_owned(),
        ];
        notifications::insert_endpoint(
            &ctx.pool,
            &NewEndpoint {
                id: uuid::Uuid::now_v7(),
                tenant,
                url: "http://127.0.0.1:9/hook",
                events: &events,
                description: None,
                secret: b"sealed",
            },
        )
        .await
        .unwrap();
    }
    for (campaign, state) in [(paused, "paused"), (completed, "completed")] {
        sqlx::query("UPDATE campaigns SET state = $2::campaign_state WHERE id = $1")
            .bind(campaign)
            .bind(state)
            .execute(&ctx.pool)
            .await
            .unwrap();
    }
    // Both happened long ago; the completion was delivered, the pause is still being tried.
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '40 days'")
        .execute(&ctx.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE event_deliveries d SET state = 'delivered' FROM outbox_events o
         WHERE o.id = d.event_id AND o.type = 'campaign.completed'",
    )
    .execute(&ctx.pool)
    .await
    .unwrap();
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    assert_eq!(
        notifications::prune(&ctx.pool, day_ago - chrono::Duration::days(60))
            .await
            .unwrap(),
        0
    );
    assert_eq!(notifications::prune(&ctx.pool, day_ago).await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT o.type FROM outbox_events o JOIN event_deliveries d ON d.event_id = o.id",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(left, vec!["campaign.paused"]);
    ctx.cleanup().await;
}

/// Makes a user of the simulator send `message` to the number.
async fn user_sends(stack: &Stack, phone_number_id: &str, from: &str, message: Value) -> String {
    let mut body = json!({"phone_number_id": phone_number_id, "from": from});
    body.as_object_mut()
        .unwrap()
        .extend(message.as_object().unwrap().clone());
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/sim/inbound", stack.simulator_url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn failures_replies_and_opt_outs_reach_the_endpoint_and_replies_are_listed() {
    let events = [
        "campaign.completed",
        "campaign.cancelled",
        "message.failed",
        "inbound.message",
        "recipient.opted_out",
        "recipient.opted_in",
    ];
    let w = World::receiving(TestContext::new().await, &events, true).await;
    let number = w
        .api
        .create_number("310000000019", "t", 1000)
        .await
        .unwrap()
        .id;
    // A campaign whose every message Meta accepts and then fails.
    configure_simulator(
        &w.stack,
        json!({"faults": [{"kind": "async_failure", "code": 131026, "probability": 1.0}]}),
    )
    .await;
    let failing = w
        .api
        .create_campaign("failing", "spring_sale_2026", "en_GB", &[number])
        .await
        .unwrap()
        .id;
    w.api.upload(failing, &recipients(30)).await.unwrap();
    w.api.start(failing).await.unwrap();
    let failing = failing.to_string();
    // Meta's failures come after the sends, so some may be told after the completion.
    let received = eventually("every failure told", Duration::from_secs(30), || async {
        let received = w.receiver.received(&w.secret);
        let told: usize = received
            .iter()
            .filter(|r| r.kind == "message.failed")
            .map(|r| r.data["messages"].as_array().unwrap().len())
            .sum();
        let completed = received.iter().any(|r| r.kind == "campaign.completed");
        (told >= 30 && completed).then_some(received)
    })
    .await;
    let failures: Vec<&Received> = received
        .iter()
        .filter(|r| r.kind == "message.failed")
        .collect();
    let mut failed: Vec<i64> = Vec::new();
    for event in &failures {
        assert_eq!(event.subject, failing);
        let messages = event.data["messages"].as_array().unwrap();
        assert_eq!(event.data["count"].as_u64(), Some(messages.len() as u64));
        assert!(messages.len() <= 100);
        for m in messages {
            assert_eq!(m["error_code"], 131026, "{m}");
            assert!(
                m["error_title"].as_str().is_some_and(|t| !t.is_empty()),
                "{m}"
            );
            assert!(m["recipient"].as_str().unwrap().starts_with("+4474"), "{m}");
            failed.push(m["message_id"].as_i64().unwrap());
        }
    }
    let told = failed.len();
    failed.sort_unstable();
    failed.dedup();
    assert_eq!((told, failed.len()), (30, 30), "each failure told once");
    let counters = w
        .api
        .campaign(failing.parse().unwrap())
        .await
        .unwrap()
        .counters;
    assert_eq!(counters.failed, 30);

    // A campaign that reaches its users; they answer.
    configure_simulator(&w.stack, json!({"faults": []})).await;
    let replied = w
        .api
        .create_campaign("replied", "spring_sale_2026", "en_GB", &[number])
        .await
        .unwrap()
        .id;
    let people = vec![
        (
            "+447900000001".to_owned(),
            vec!["Ann".to_owned(), "5%".to_owned()],
        ),
        (
            "+447900000002".to_owned(),
            vec!["Bo".to_owned(), "5%".to_owned()],
        ),
    ];
    w.api.upload(replied, &people).await.unwrap();
    w.api.start(replied).await.unwrap();
    eventually("both sent", Duration::from_secs(20), || async {
        let c = w.api.campaign(replied).await.unwrap().counters;
        (c.sent + c.delivered + c.read == 2).then_some(())
    })
    .await;
    let wamid = |m: Value| m["wamid"].as_str().unwrap().to_owned();
    let ann = wamid(message_to(&w.api, replied, "+447900000001").await);
    let bo = wamid(message_to(&w.api, replied, "+447900000002").await);
    // Each sent once the one before is in Herald's inbox (Meta does not keep the order of
    // messages sent close together, and neither does the simulator).
    let mut said = Vec::new();
    for (from, message) in [
        (
            "447900000001",
            json!({"type": "text", "body": "Is it on sale in blue?", "context": ann}),
        ),
        (
            "447900000002",
            json!({"type": "image", "caption": "this one"}),
        ),
        (
            "447900000002",
            json!({"type": "interactive", "id": "blue", "title": "Blue", "context": bo}),
        ),
        (
            "447900000001",
            json!({"type": "reaction", "message_id": ann, "emoji": "👍"}),
        ),
        (
            "447900000002",
            json!({"type": "document", "filename": "order.pdf"}),
        ),
        ("447900000001", json!({"type": "text", "body": "STOP"})),
    ] {
        let id = user_sends(&w.stack, "310000000019", from, message).await;
        eventually(
            "the message in the inbox",
            Duration::from_secs(20),
            || async {
                let page: Value = w.api.get("/v1/inbound?limit=1").await.unwrap();
                (page["items"][0]["wa_message_id"] == id.as_str()).then_some(())
            },
        )
        .await;
        said.push(id);
    }
    let inbound = eventually("every reply forwarded", Duration::from_secs(30), || async {
        let got: Vec<Received> = w
            .receiver
            .received(&w.secret)
            .into_iter()
            .filter(|r| r.kind == "inbound.message")
            .collect();
        (got.len() == said.len()).then_some(got)
    })
    .await;
    // One event each, in the order each user sent them.
    for from in ["+447900000001", "+447900000002"] {
        let theirs: Vec<&str> = inbound
            .iter()
            .filter(|r| r.data["from"] == from)
            .map(|r| r.data["wa_message_id"].as_str().unwrap())
            .collect();
        let sent: Vec<&str> = said
            .iter()
            .map(String::as_str)
            .filter(|id| theirs.contains(id))
            .collect();
        assert_eq!(theirs, sent, "{from}'s messages in order");
    }
    let by_id = |id: &str| {
        inbound
            .iter()
            .find(|r| r.data["wa_message_id"] == id)
            .unwrap()
            .data
            .clone()
    };
    let replied = replied.to_string();
    let text = by_id(&said[0]);
    assert_eq!(
        (
            &text["type"],
            &text["text"],
            &text["campaign_id"],
            &text["context_wa_message_id"]
        ),
        (
            &json!("text"),
            &json!("Is it on sale in blue?"),
            &json!(replied),
            &json!(ann)
        )
    );
    assert_eq!(text["profile_name"], "Simulated User");
    assert_eq!(text["number_id"], json!(number.to_string()));
    let image = by_id(&said[1]);
    assert_eq!(
        (&image["type"], &image["text"]),
        (&json!("image"), &json!("this one"))
    );
    assert!(
        image["media"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{image}"
    );
    assert_eq!(image["media"]["mime_type"], "image/jpeg");
    assert_eq!(
        image["campaign_id"],
        json!(replied),
        "the last campaign to reach them"
    );
    let tap = by_id(&said[2]);
    assert_eq!(
        (&tap["text"], &tap["payload"]),
        (&json!("Blue"), &json!("blue"))
    );
    let reaction = by_id(&said[3]);
    assert_eq!(
        (&reaction["text"], &reaction["context_wa_message_id"]),
        (&json!("👍"), &json!(ann))
    );
    assert_eq!(by_id(&said[4])["media"]["filename"], "order.pdf");
    assert_eq!(
        by_id(&said[4])["message"]["document"]["filename"],
        "order.pdf"
    );
    // The STOP opted Ann out; she then asks for marketing messages again.
    eventually("the opt-out told", Duration::from_secs(30), || async {
        w.receiver
            .received(&w.secret)
            .iter()
            .find(|r| r.kind == "recipient.opted_out")
            .map(|r| assert_eq!(r.data["recipient"], "+447900000001"))
    })
    .await;
    let resume = json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "user_preferences", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "447400000000", "phone_number_id": "310000000019"},
            "user_preferences": [{"wa_id": "447900000001", "detail": "marketing",
                "category": "marketing_messages", "value": "resume",
                "timestamp": chrono::Utc::now().timestamp() + 5}]}}]}]});
    herald_tests::post_webhook(&w.ctx, &w.stack, &serde_json::to_vec(&resume).unwrap()).await;
    eventually("the opt-in told", Duration::from_secs(30), || async {
        w.receiver
            .received(&w.secret)
            .iter()
            .find(|r| r.kind == "recipient.opted_in")
            .map(|r| assert_eq!(r.data["recipient"], "+447900000001"))
    })
    .await;
    // A campaign cancelled before it started.
    let dropped = w
        .api
        .create_campaign("dropped", "spring_sale_2026", "en_GB", &[number])
        .await
        .unwrap()
        .id;
    w.api.cancel(dropped).await.unwrap();
    w.wait_for(&dropped.to_string(), &["campaign.cancelled"])
        .await;

    // The inbox lists what the events carried, newest first; filtered by campaign and sender.
    let page: Value = w.api.get("/v1/inbound?limit=4").await.unwrap();
    let items = page["items"].as_array().unwrap();
    let newest: Vec<&str> = items
        .iter()
        .map(|i| i["wa_message_id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = said.iter().rev().take(4).map(String::as_str).collect();
    assert_eq!(newest, expected);
    assert_eq!(
        items[0],
        by_id(&said[5]),
        "the list and the event say the same"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = w
        .api
        .get(&format!("/v1/inbound?limit=4&cursor={cursor}"))
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let bos: Value = w
        .api
        .get("/v1/inbound?from=%2B44%207900%20000002")
        .await
        .unwrap();
    assert_eq!(bos["items"].as_array().unwrap().len(), 3);
    let answering: Value = w
        .api
        .get(&format!("/v1/inbound?campaign_id={failing}"))
        .await
        .unwrap();
    assert_eq!(answering["items"], json!([]));
    let bad = w
        .api
        .get::<Value>("/v1/inbound?from=call-me")
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("from"), "{bad}");
    // Counted on the campaign: two replies (a text, an image… the reaction and the
    // document too) and a tap.
    let counters = w
        .api
        .campaign(replied.parse().unwrap())
        .await
        .unwrap()
        .counters;
    assert_eq!((counters.replied, counters.clicked), (5, 1), "{counters:?}");
    // Another tenant's inbox is its own.
    let other = w.ctx.tenant(&w.stack.ingest_url).await;
    let theirs: Value = other.get("/v1/inbound").await.unwrap();
    assert_eq!(theirs["items"], json!([]));
    w.finish().await;
}

#[tokio::test]
async fn failures_are_told_a_hundred_at_a_time_and_not_written_when_nobody_listens() {
    use herald_shared::db::notifications::{self, NewEndpoint};
    use herald_shared::db::transitions::{self, Transition};
    let ctx = TestContext::new().await;
    let (campaign, ids) = herald_tests::seed_campaign(&ctx, 250).await;
    let failures = |ids: &[herald_shared::domain::MessageId]| -> Vec<Transition> {
        ids.iter()
            .map(|&id| {
                Transition::failed(
                    id,
                    131026,
                    "Message undeliverable".into(),
                    chrono::Utc::now(),
                )
            })
            .collect()
    };
    let outbox = || async {
        sqlx::query_scalar::<_, Value>("SELECT data FROM outbox_events ORDER BY id")
            .fetch_all(&ctx.pool)
            .await
            .unwrap()
    };
    // Nobody listens: nothing written.
    transitions::apply(&ctx.pool, &failures(&ids[..50]))
        .await
        .unwrap();
    assert!(outbox().await.is_empty());
    let tenant: herald_shared::domain::TenantId =
        sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    notifications::insert_endpoint(
        &ctx.pool,
        &NewEndpoint {
            id: uuid::Uuid::now_v7(),
            tenant,
            url: "http://127.0.0.1:9/hook",
            events: &["message.failed".to_owned()],
            description: None,
            secret: b"sealed",
        },
    )
    .await
    .unwrap();
    // 200 failures in one batch, and 50 the batch repeats: two events of 100, in id order.
    let mut batch = failures(&ids[50..]);
    batch.extend(failures(&ids[..50]));
    transitions::apply(&ctx.pool, &transitions::reduce(batch))
        .await
        .unwrap();
    let events = outbox().await;
    assert_eq!(events.len(), 2, "{events:?}");
    let told: Vec<i64> = events
        .iter()
        .flat_map(|e| {
            assert_eq!(e["count"], 100);
            assert_eq!(e["campaign_id"], json!(campaign));
            e["messages"].as_array().unwrap().clone()
        })
        .map(|m| m["message_id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = ids[50..].iter().map(|m| m.0).collect();
    assert_eq!(told, expected);
    ctx.cleanup().await;
}
