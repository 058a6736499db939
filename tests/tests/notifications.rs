//! Issue #17, notifications: a tenant's webhook endpoints receive the events of its campaigns
//! and numbers, signed as Standard Webhooks has it, in order per subject, and a receiver that
//! was down receives everything once it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::standard_webhooks;
use herald_tests::{TestContext, configure_simulator, eventually, recipients};
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

impl World {
    async fn start(mut ctx: TestContext) -> Self {
        // A receiver may be down for a while in these tests: tried every second meanwhile.
        ctx.settings.ingest.notifications.retry_delays_s = vec![1; 60];
        let roles = Roles {
            ingest: true,
            sender: true,
            webhook: false,
            simulator: true,
        };
        let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
        let api = ctx.tenant(&stack.ingest_url).await;
        let receiver = Receiver::default();
        let url = receiver.start().await;
        let created: Value = api
            .post(
                "/v1/webhook-endpoints",
                &json!({"url": url, "description": "tests",
                        "events": ["campaign.started", "campaign.paused", "campaign.resumed",
                                   "campaign.completed", "number.paused", "number.resumed"]}),
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
