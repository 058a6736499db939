//! The Cloud API simulator over HTTP: one test per behaviour.

use std::time::{Duration, Instant};

use herald::stack::{Roles, Stack};
use herald_shared::settings::Settings;
use herald_simulator::StatsReport;
use herald_tests::{TestContext, eventually};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const NUMBER: &str = "109876543210987";

/// A simulator with `config` applied through the admin API and webhooks to `webhook_url`
/// (none when empty).
struct Sim {
    stack: Stack,
    http: reqwest::Client,
}

impl Sim {
    async fn start(ctx: &TestContext, webhook_url: &str, config: Value) -> Self {
        let mut settings: Settings = ctx.settings.clone();
        settings.simulator.webhook_url = webhook_url.to_owned();
        let stack = Stack::start(settings, Roles::SIMULATOR).await.unwrap();
        let sim = Self {
            stack,
            http: reqwest::Client::new(),
        };
        sim.configure(config).await;
        sim
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.simulator_url)
    }

    async fn configure(&self, patch: Value) {
        let r = self
            .http
            .post(self.url("/sim/config"))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn send_as(&self, number: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url(&format!("/v24.0/{number}/messages")))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, body: &Value) -> (u16, Value) {
        self.send_as(NUMBER, Some("token"), body).await
    }

    /// A user (digits) writes to the number: their customer-service window opens.
    async fn user_writes(&self, from: &str) {
        let r = self
            .http
            .post(self.url("/sim/inbound"))
            .json(&json!({"phone_number_id": NUMBER, "from": from, "type": "text", "body": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    async fn stats(&self) -> StatsReport {
        self.http
            .get(self.url("/sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stack.stop().await.unwrap();
    }
}

/// A send of a template the simulator does not define: an open sandbox takes it as it comes.
fn template(to: &str, params: &[&str]) -> Value {
    named("sandbox_offer", to, params)
}

/// A send of template `name`, checked against its definition when the simulator has one.
fn named(name: &str, to: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"type": "text", "text": p}))
        .collect();
    json!({"messaging_product": "whatsapp", "to": to, "type": "template",
           "biz_opaque_callback_data": format!("cb-{to}"),
           "template": {"name": name, "language": {"code": "en_GB"},
                        "components": [{"type": "body", "parameters": parameters}]}})
}

fn code(body: &Value) -> Option<i64> {
    body["error"]["code"].as_i64()
}

/// Statuses and messages received by a webhook mock, after checking every signature.
async fn received(ctx: &TestContext, hooks: &MockServer) -> (Vec<Value>, Vec<Value>) {
    let mut statuses = Vec::new();
    let mut messages = Vec::new();
    for request in hooks.received_requests().await.unwrap() {
        let signature = request
            .headers
            .get("x-hub-signature-256")
            .map(|v| v.as_bytes());
        herald_shared::signature::verify(
            &ctx.settings.webhook.app_secrets,
            &request.body,
            signature,
        )
        .expect("every webhook is signed with the app secret");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for change in body["entry"][0]["changes"].as_array().unwrap() {
            let value = &change["value"];
            statuses.extend(value["statuses"].as_array().cloned().unwrap_or_default());
            messages.extend(value["messages"].as_array().cloned().unwrap_or_default());
        }
    }
    (statuses, messages)
}

async fn webhook_mock() -> MockServer {
    let hooks = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hooks)
        .await;
    hooks
}

#[tokio::test]
async fn an_open_sandbox_answers_like_the_cloud_api_and_counts_repeats() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({})).await;
    let (status, first) = sim.send(&template("+447400000001", &["Ann"])).await;
    assert_eq!(status, 200);
    assert!(
        first["messages"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.")
    );
    assert_eq!(first["messages"][0]["message_status"], "accepted");
    assert_eq!(first["contacts"][0]["wa_id"], "447400000001");
    let (_, second) = sim.send(&template("+447400000001", &["Ann"])).await;
    assert_ne!(second["messages"][0]["id"], first["messages"][0]["id"]);
    sim.user_writes("447400000002").await;
    let text = json!({"messaging_product": "whatsapp", "to": "+447400000002", "type": "text",
                      "text": {"body": "Your order has shipped"}});
    assert_eq!(sim.send(&text).await.0, 200);
    let empty = json!({"messaging_product": "whatsapp", "to": "+447400000002", "type": "text",
                       "text": {"body": ""}});
    assert_eq!(code(&sim.send(&empty).await.1), Some(100));
    let s = sim.stats().await;
    assert_eq!(
        (
            s.accepted_total,
            s.duplicate_recipients,
            s.duplicate_callbacks
        ),
        (3, 1, 1)
    );
    assert_eq!(s.duplicates[NUMBER].recipients, 1);
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_send_from_an_owner_older_than_one_seen_is_a_fence_violation() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({})).await;
    for (i, fence) in [3, 3, 5, 4, 5].into_iter().enumerate() {
        let r = sim
            .http
            .post(sim.url(&format!("/v24.0/{NUMBER}/messages")))
            .bearer_auth("token")
            .header(herald_shared::whatsapp::FENCE_HEADER, fence.to_string())
            .json(&template(&format!("+44740000001{i}"), &["Ann"]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let s = sim.stats().await;
    assert_eq!((s.fences[NUMBER], s.fence_violations), (5, 1));
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn malformed_requests_get_error_100_and_a_bad_token_gets_401_with_190() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(
        &ctx,
        "",
        json!({"numbers": [{"phone_number_id": NUMBER, "token": "right"}]}),
    )
    .await;
    let good = template("+447400000001", &["Ann"]);
    for broken in [
        json!({"to": "+447400000001"}),
        json!({"messaging_product": "whatsapp", "type": "template"}),
        json!({"messaging_product": "whatsapp", "to": "not a number", "type": "template",
               "template": {"name": "t", "language": {"code": "en"}}}),
        json!({"messaging_product": "whatsapp", "to": "+447400000001", "type": "template"}),
        json!({"messaging_product": "whatsapp", "to": "+447400000001", "type": "sticker"}),
    ] {
        let (status, body) = sim.send_as(NUMBER, Some("right"), &broken).await;
        assert_eq!((status, code(&body)), (400, Some(100)), "{broken}");
    }
    let (status, body) = sim.send_as(NUMBER, Some("wrong"), &good).await;
    assert_eq!((status, code(&body)), (401, Some(190)));
    let (status, body) = sim.send_as(NUMBER, None, &good).await;
    assert_eq!((status, code(&body)), (401, Some(190)));
    assert_eq!(sim.send_as(NUMBER, Some("right"), &good).await.0, 200);
    // Strict: a number nobody configured does not exist.
    sim.configure(json!({"strict": true})).await;
    let (status, body) = sim.send_as("555", Some("right"), &good).await;
    assert_eq!((status, code(&body)), (400, Some(100)));
    assert_eq!(sim.stats().await.rejected[&100], 6);
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn templates_are_checked_for_existence_language_status_and_parameter_count() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(
        &ctx,
        "",
        json!({"strict": true,
               "numbers": [{"phone_number_id": NUMBER}],
               "templates": [
                   {"name": "spring_sale_2026", "language": "en_GB", "body_params": 2},
                   {"name": "winter_clearance", "language": "en_GB", "status": "PAUSED"}]}),
    )
    .await;
    assert_eq!(
        sim.send(&named("spring_sale_2026", "+447400000001", &["Ann", "25%"]))
            .await
            .0,
        200
    );
    let (status, body) = sim
        .send(&named("spring_sale_2026", "+447400000002", &["Ann"]))
        .await;
    assert_eq!((status, code(&body)), (400, Some(132000)));
    let mut other_language = named("spring_sale_2026", "+447400000003", &["Ann", "25%"]);
    other_language["template"]["language"]["code"] = json!("pt_BR");
    let (status, body) = sim.send(&other_language).await;
    assert_eq!((status, code(&body)), (404, Some(132001)));
    let mut paused = template("+447400000004", &[]);
    paused["template"]["name"] = json!("winter_clearance");
    assert_eq!(code(&sim.send(&paused).await.1), Some(132015));
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_phone_number_and_the_template_pages_read_like_graph() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(
        &ctx,
        "",
        json!({"numbers": [{"phone_number_id": NUMBER, "waba_id": "211987654321098",
                            "display_phone_number": "+44 7700 900100", "cap": 80,
                            "quality_rating": "YELLOW", "messaging_limit": "TIER_10K"}],
               "templates": [
                   {"waba_id": "211987654321098", "name": "a", "language": "en_GB"},
                   {"waba_id": "211987654321098", "name": "b", "language": "en_GB"},
                   {"waba_id": "211987654321098", "name": "c", "language": "en_GB"},
                   {"waba_id": "other", "name": "d", "language": "en_GB"}]}),
    )
    .await;
    let get = |path: String| {
        let http = sim.http.clone();
        async move {
            http.get(path)
                .bearer_auth("t")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let number = get(sim.url(&format!("/v24.0/{NUMBER}"))).await;
    assert_eq!(number["display_phone_number"], "+44 7700 900100");
    assert_eq!(number["quality_rating"], "YELLOW");
    assert_eq!(number["throughput"]["level"], "STANDARD");
    assert_eq!(
        number["whatsapp_business_manager_messaging_limit"],
        "TIER_10K"
    );

    let first = get(sim.url("/v24.0/211987654321098/message_templates?limit=2")).await;
    let names: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let next = first["paging"]["next"].as_str().unwrap().to_owned();
    let second = get(next).await;
    let names: Vec<&str> = second["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c"]);
    assert!(second["paging"].get("next").is_none());
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn over_its_cap_a_number_gets_130429_and_the_cap_changes_at_run_time() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({"cap_per_number": 5})).await;
    let burst = |n: usize, offset: usize| {
        let sends = (0..n).map(|i| {
            let body = template(&format!("+4474000{:05}", offset + i), &[]);
            let sim = &sim;
            async move { sim.send(&body).await }
        });
        futures::future::join_all(sends)
    };
    let started = Instant::now();
    let results = burst(20, 0).await;
    let most = 5 * (started.elapsed().as_secs() + 1);
    let throttled = results
        .iter()
        .filter(|(s, b)| *s == 400 && code(b) == Some(130429))
        .count();
    let s = sim.stats().await;
    assert!(s.accepted_total >= 1 && s.accepted_total <= most, "{s:?}");
    assert_eq!(throttled as u64, 20 - s.accepted_total);
    assert!(s.max_per_second[NUMBER] <= 5);

    // Lift the cap for this number only: a new burst goes through.
    let r = sim
        .http
        .put(sim.url(&format!("/sim/numbers/{NUMBER}")))
        .json(&json!({"cap": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let results = burst(20, 100).await;
    assert!(results.iter().all(|(s, _)| *s == 200));
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_pair_rate_limit_allows_a_burst_of_45_to_one_recipient_then_131056() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({})).await;
    for _ in 0..45 {
        assert_eq!(sim.send(&template("+447400000001", &[])).await.0, 200);
    }
    let (status, body) = sim.send(&template("+447400000001", &[])).await;
    assert_eq!((status, code(&body)), (400, Some(131056)));
    // Other recipients are unaffected.
    assert_eq!(sim.send(&template("+447400000002", &[])).await.0, 200);
    sim.configure(json!({"pair_limit": false})).await;
    assert_eq!(sim.send(&template("+447400000001", &[])).await.0, 200);
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn faults_answer_with_their_code_status_or_silence_while_scheduled() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({})).await;
    let body = |i: usize| template(&format!("+4474000{i:05}"), &[]);

    // Scheduled for later: not active yet.
    sim.configure(
        json!({"faults": [{"kind": "error", "code": 131000, "probability": 1.0, "after_s": 3600}]}),
    )
    .await;
    assert_eq!(sim.send(&body(1)).await.0, 200);

    sim.configure(
        json!({"faults": [{"kind": "error", "code": 131000, "probability": 1.0, "for_s": 3600}]}),
    )
    .await;
    let (status, answer) = sim.send(&body(2)).await;
    assert_eq!((status, code(&answer)), (500, Some(131000)));
    assert!(answer["error"]["fbtrace_id"].is_string());

    sim.configure(json!({"faults": [{"kind": "error", "code": 190, "probability": 1.0, "numbers": ["other"]}]})).await;
    assert_eq!(
        sim.send(&body(3)).await.0,
        200,
        "a fault for another number"
    );

    sim.configure(json!({"faults": [{"kind": "http", "status": 503, "probability": 1.0}]}))
        .await;
    let (status, answer) = sim.send(&body(4)).await;
    assert_eq!((status, answer), (503, Value::Null));

    sim.configure(json!({"faults": [{"kind": "timeout", "accepted": true, "probability": 1.0}]}))
        .await;
    let timed_out = sim
        .http
        .post(sim.url(&format!("/v24.0/{NUMBER}/messages")))
        .bearer_auth("t")
        .json(&body(5))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());

    sim.configure(json!({"faults": [{"kind": "reset", "accepted": false, "probability": 1.0}]}))
        .await;
    let reset = sim
        .http
        .post(sim.url(&format!("/v24.0/{NUMBER}/messages")))
        .bearer_auth("t")
        .json(&body(6))
        .send()
        .await;
    let reset_failed = match reset {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(reset_failed, "a reset connection gives no usable answer");

    sim.configure(json!({"faults": [], "latency": {"kind": "fixed", "ms": 150}}))
        .await;
    let started = Instant::now();
    assert_eq!(sim.send(&body(7)).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let s = sim.stats().await;
    assert_eq!(s.rejected[&131000], 1);
    assert_eq!((s.http_errors, s.timeouts, s.resets), (1, 1, 1));
    // 1, 3, 7, and the timed-out one that was accepted.
    assert_eq!(s.accepted_total, 4);
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn in_lean_mode_every_send_is_answered_with_a_new_wamid_and_only_counted() {
    let ctx = TestContext::new().await;
    let hooks = webhook_mock().await;
    // A cap and a certain fault that lean mode does not apply.
    let sim = Sim::start(
        &ctx,
        &hooks.uri(),
        json!({"lean": true, "cap_per_number": 1,
               "faults": [{"kind": "error", "code": 131000, "probability": 1.0}]}),
    )
    .await;
    let mut wamids = std::collections::HashSet::new();
    for i in 0..5 {
        let (status, body) = sim
            .send(&template(&format!("+44740000020{i}"), &["Ann"]))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["messaging_product"], "whatsapp");
        let wamid = body["messages"][0]["id"].as_str().unwrap().to_owned();
        assert!(wamid.starts_with("wamid."), "{wamid}");
        wamids.insert(wamid);
    }
    // Not even a body is read for what it says.
    let (status, _) = sim.send(&json!({"anything": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(wamids.len(), 5, "every wamid is new");
    let stats = sim.stats().await;
    assert_eq!(stats.accepted_total, 6);
    assert_eq!(stats.peak_in_flight, 1);
    assert!(stats.rejected.is_empty());
    // Counted per number (by the path's number: the body is not read), its busiest second
    // too: what shows whether a sender kept to a number's rate.
    assert_eq!(stats.accepted.get(NUMBER), Some(&6));
    let busiest = stats.max_per_second.get(NUMBER).copied().unwrap_or(0);
    assert!((1..=6).contains(&busiest), "busiest second: {busiest}");
    sim.configure(json!({"lean": false, "faults": [], "cap_per_number": 0}))
        .await;
    let (status, body) = sim.send(&template("+447400000300", &["Ann"])).await;
    assert_eq!(status, 200, "{body}");
    let wamid = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let statuses = eventually(
        "the full send's receipts",
        Duration::from_secs(10),
        || async {
            let (statuses, _) = received(&ctx, &hooks).await;
            statuses
                .iter()
                .any(|s| s["id"] == wamid.as_str())
                .then_some(statuses)
        },
    )
    .await;
    assert!(
        statuses.iter().all(|s| s["id"] == wamid.as_str()),
        "lean sends get no receipts: {statuses:?}"
    );
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_stats_give_the_most_sends_in_flight_at_once() {
    let ctx = TestContext::new().await;
    // Every send is held unanswered, so all six are in flight together.
    let sim = Sim::start(
        &ctx,
        "",
        json!({"faults": [{"kind": "timeout", "accepted": false, "probability": 1.0}]}),
    )
    .await;
    let sim = std::sync::Arc::new(sim);
    let mut held = tokio::task::JoinSet::new();
    for i in 0..6 {
        let sim = sim.clone();
        held.spawn(async move {
            sim.send(&template(&format!("+44740000010{i}"), &["Ann"]))
                .await
        });
    }
    eventually("six sends in flight", Duration::from_secs(10), || async {
        (sim.stats().await.peak_in_flight == 6).then_some(())
    })
    .await;
    held.abort_all();
    while held.join_next().await.is_some() {}
    let sim = std::sync::Arc::into_inner(sim).expect("the sends are gone");
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults_for_the_same_requests() {
    let ctx = TestContext::new().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = Sim::start(
            &ctx,
            "",
            json!({"seed": 42, "faults": [{"kind": "error", "code": 131000, "probability": 0.5}]}),
        )
        .await;
        let mut outcomes = Vec::new();
        for i in 0..40 {
            outcomes.push(sim.send(&template(&format!("+4474000{i:05}"), &[])).await.0);
        }
        sim.stop().await;
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200) && runs[0].contains(&500));
    ctx.cleanup().await;
}

#[tokio::test]
async fn accepted_messages_get_signed_sent_delivered_and_read_webhooks_with_their_callback() {
    let ctx = TestContext::new().await;
    let hooks = webhook_mock().await;
    let sim = Sim::start(&ctx, &hooks.uri(), json!({})).await;
    for i in 0..10 {
        assert_eq!(
            sim.send(&template(&format!("+4474000{i:05}"), &[])).await.0,
            200
        );
    }
    eventually("30 statuses", Duration::from_secs(10), || async {
        (sim.stats().await.statuses_posted == 30).then_some(())
    })
    .await;
    let (statuses, _) = received(&ctx, &hooks).await;
    for kind in ["sent", "delivered", "read"] {
        assert_eq!(
            statuses.iter().filter(|s| s["status"] == kind).count(),
            10,
            "{kind}"
        );
    }
    assert!(statuses.iter().all(|s| {
        s["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .starts_with("cb-+44")
    }));
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn webhook_chances_duplication_and_async_failures_follow_the_configuration() {
    let ctx = TestContext::new().await;
    let hooks = webhook_mock().await;
    let sim = Sim::start(
        &ctx,
        &hooks.uri(),
        json!({"webhooks": {"delivered": 1.0, "read": 0.0, "duplicate": 1.0, "shuffle": true},
               "faults": [{"kind": "async_failure", "code": 131026, "probability": 1.0, "numbers": ["failing"]}]}),
    )
    .await;
    for i in 0..5 {
        assert_eq!(
            sim.send(&template(&format!("+4474000{i:05}"), &[])).await.0,
            200
        );
    }
    assert_eq!(
        sim.send_as("failing", Some("t"), &template("+447400000099", &[]))
            .await
            .0,
        200
    );
    // 5 × (sent + delivered) + 1 failed, each twice.
    eventually("22 statuses", Duration::from_secs(10), || async {
        (sim.stats().await.statuses_posted == 22).then_some(())
    })
    .await;
    let (statuses, _) = received(&ctx, &hooks).await;
    assert_eq!(statuses.iter().filter(|s| s["status"] == "read").count(), 0);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s["status"] == "delivered")
            .count(),
        10
    );
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["errors"][0]["code"], 131026);
    assert_eq!(sim.stats().await.async_failures, 1);
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_refused_webhook_is_retried_until_taken() {
    let ctx = TestContext::new().await;
    let hooks = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&hooks)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hooks)
        .await;
    let sim = Sim::start(&ctx, &hooks.uri(), json!({"webhooks": {"delivered": 0.0}})).await;
    assert_eq!(sim.send(&template("+447400000001", &[])).await.0, 200);
    let s = eventually(
        "the sent status delivered",
        Duration::from_secs(10),
        || async {
            let s = sim.stats().await;
            (s.webhooks_delivered == 1).then_some(s)
        },
    )
    .await;
    assert_eq!((s.webhooks_retried, s.webhooks_failed), (2, 0));
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn inbound_replies_button_taps_and_stop_are_injected_as_messages() {
    let ctx = TestContext::new().await;
    let hooks = webhook_mock().await;
    let sim = Sim::start(&ctx, &hooks.uri(), json!({})).await;
    for inbound in [
        json!({"phone_number_id": NUMBER, "from": "447400000001", "type": "text", "body": "STOP", "context": "wamid.A"}),
        json!({"phone_number_id": NUMBER, "from": "447400000002", "type": "button", "text": "Stop promotions", "payload": "optout:c1"}),
    ] {
        let r = sim
            .http
            .post(sim.url("/sim/inbound"))
            .json(&inbound)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    eventually("2 inbound messages", Duration::from_secs(10), || async {
        (sim.stats().await.statuses_posted == 2).then_some(())
    })
    .await;
    let (_, messages) = received(&ctx, &hooks).await;
    let text = messages.iter().find(|m| m["type"] == "text").unwrap();
    assert_eq!(
        (
            text["text"]["body"].as_str(),
            text["context"]["id"].as_str()
        ),
        (Some("STOP"), Some("wamid.A"))
    );
    let button = messages.iter().find(|m| m["type"] == "button").unwrap();
    assert_eq!(button["button"]["payload"], "optout:c1");
    sim.stop().await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn past_the_daily_cap_new_recipients_fail_and_known_ones_still_go() {
    let ctx = TestContext::new().await;
    let hooks = webhook_mock().await;
    let sim = Sim::start(
        &ctx,
        &hooks.uri(),
        json!({"daily_cap": 2, "pair_limit": false, "webhooks": {"delivered": 0.0},
               "numbers": [{"phone_number_id": NUMBER, "portfolio_id": "p1"}]}),
    )
    .await;
    for to in [
        "+447400000001",
        "+447400000002",
        "+447400000003",
        "+447400000001",
    ] {
        assert_eq!(sim.send(&template(to, &[])).await.0, 200);
    }
    eventually("4 statuses", Duration::from_secs(10), || async {
        (sim.stats().await.statuses_posted == 4).then_some(())
    })
    .await;
    let (statuses, _) = received(&ctx, &hooks).await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["recipient_id"], "447400000003");
    assert_eq!(failed[0]["errors"][0]["code"], 131049);
    sim.stop().await;
    ctx.cleanup().await;
}

/// A free-form message of `kind` to `to` with `content` as its `kind` field.
fn free_form(to: &str, kind: &str, content: Value) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
           "type": kind, kind: content})
}

#[tokio::test]
async fn free_form_messages_go_only_inside_the_window_in_meta_s_shapes() {
    let ctx = TestContext::new().await;
    let sim = Sim::start(&ctx, "", json!({})).await;
    let text = free_form(
        "+447400000005",
        "text",
        json!({"body": "Your order shipped"}),
    );
    // Never wrote: 131047, Meta's re-engagement error; a template goes all the same.
    let (status, refused) = sim.send(&text).await;
    assert_eq!((status, code(&refused)), (400, Some(131047)), "{refused}");
    assert_eq!(sim.send(&template("+447400000005", &["Ann"])).await.0, 200);
    sim.user_writes("447400000005").await;
    assert_eq!(sim.send(&text).await.0, 200);
    // Each kind in Meta's shape goes; each shape Meta refuses is a 100 naming the field.
    let goes = [
        ("text", json!({"body": "Hi", "preview_url": true})),
        (
            "image",
            json!({"link": "https://example.com/a.jpg", "caption": "New"}),
        ),
        ("video", json!({"id": "1234567890"})),
        ("audio", json!({"id": "1234567890"})),
        (
            "document",
            json!({"link": "https://example.com/a.pdf", "filename": "a.pdf"}),
        ),
        ("sticker", json!({"id": "1234567890"})),
        (
            "location",
            json!({"latitude": 51.5, "longitude": -0.12, "name": "Shop"}),
        ),
        (
            "contacts",
            json!([{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"},
                             "phones": [{"phone": "+447400000009", "type": "WORK"}]}]),
        ),
        (
            "interactive",
            json!({"type": "button", "body": {"text": "Which colour?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "b", "title": "Blue"}},
                                   {"type": "reply", "reply": {"id": "r", "title": "Red"}}]}}),
        ),
        (
            "interactive",
            json!({"type": "list", "body": {"text": "Pick a size"},
            "action": {"button": "Sizes", "sections": [{"title": "All",
                "rows": [{"id": "s", "title": "Small"}, {"id": "m", "title": "Medium"}]}]}}),
        ),
        (
            "interactive",
            json!({"type": "cta_url", "body": {"text": "See the sale"},
            "action": {"name": "cta_url", "parameters": {"display_text": "Open",
                                                          "url": "https://example.com"}}}),
        ),
    ];
    for (kind, content) in goes {
        let (status, answer) = sim
            .send(&free_form("+447400000005", kind, content.clone()))
            .await;
        assert_eq!(status, 200, "{kind} {content}: {answer}");
    }
    let four_buttons: Vec<Value> = (0..4)
        .map(|i| json!({"type": "reply", "reply": {"id": i.to_string(), "title": "B"}}))
        .collect();
    let eleven_rows: Vec<Value> = (0..11)
        .map(|i| json!({"id": i.to_string(), "title": "Row"}))
        .collect();
    let refused = [
        ("text", json!({"body": "x".repeat(4097)}), "text.body"),
        (
            "image",
            json!({"link": "https://example.com/a.jpg", "id": "1"}),
            "not both",
        ),
        (
            "image",
            json!({"caption": "no media"}),
            "image.id or image.link",
        ),
        (
            "image",
            json!({"id": "1", "caption": "x".repeat(1025)}),
            "caption",
        ),
        ("sticker", json!({"id": "1", "caption": "no"}), "no caption"),
        (
            "interactive",
            json!({"type": "button", "body": {"text": "?"},
            "action": {"buttons": four_buttons}}),
            "1 to 3 buttons",
        ),
        (
            "interactive",
            json!({"type": "list", "body": {"text": "?"},
            "action": {"button": "Rows", "sections": [{"rows": eleven_rows}]}}),
            "10 rows",
        ),
        (
            "interactive",
            json!({"type": "button", "action": {}}),
            "body.text",
        ),
        (
            "location",
            json!({"latitude": 91.0, "longitude": 0.0}),
            "latitude",
        ),
        ("contacts", json!([{"phones": []}]), "formatted_name"),
    ];
    for (kind, content, says) in refused {
        let (status, answer) = sim.send(&free_form("+447400000005", kind, content)).await;
        assert_eq!(
            (status, code(&answer)),
            (400, Some(100)),
            "{kind}: {answer}"
        );
        assert!(answer.to_string().contains(says), "{kind}: {answer}");
    }
    // A day later the window has closed.
    let r = sim
        .http
        .post(sim.url("/sim/clock"))
        .json(&json!({"advance_s": 24 * 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(code(&sim.send(&text).await.1), Some(131047));
    sim.user_writes("447400000005").await;
    assert_eq!(sim.send(&text).await.0, 200);
    // Without the rule (a sandbox for free-form tests), anything goes.
    sim.configure(json!({"window": false})).await;
    let stranger = free_form("+447400000006", "text", json!({"body": "hello"}));
    assert_eq!(sim.send(&stranger).await.0, 200);
    sim.stop().await;
    ctx.cleanup().await;
}
