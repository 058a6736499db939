//! Issue #18, campaigns of every message type: a campaign's `message` is written the way Meta
//! writes one, `{{1}}`… standing for each recipient's values; each kind reaches the Cloud API
//! (the simulator) in Meta's exact shape with the recipient's values in it; Meta's limits are
//! 422s naming the field; a user outside the 24-hour window gets 131047, failed, not retried.

use std::time::Duration;

use herald::client::ApiClient;
use herald::fixtures::Simulator;
use herald::stack::Stack;
use herald_shared::domain::NumberId;
use herald_tests::{TestContext, configure_simulator, eventually, message_to};
use serde_json::{Value, json};

const PHONE_NUMBER_ID: &str = "310000000071";

struct World {
    ctx: TestContext,
    stack: Stack,
    api: ApiClient,
    number: NumberId,
    simulator: Simulator,
}

impl World {
    async fn start() -> Self {
        let ctx = TestContext::new().await;
        let stack = ctx.start_stack().await;
        configure_simulator(&stack, json!({"capture": 1000})).await;
        let api = ctx.tenant(&stack.ingest_url).await;
        let number = api
            .create_number(PHONE_NUMBER_ID, "t", 200)
            .await
            .unwrap()
            .id;
        let simulator = Simulator::new(stack.simulator_url.clone());
        Self {
            ctx,
            stack,
            api,
            number,
            simulator,
        }
    }

    /// A user writes to the number: their customer-service window opens, in the simulator
    /// at once and in Herald once its webhook has stored the message.
    async fn user_writes(&self, from: &str) {
        let sent: Value = reqwest::Client::new()
            .post(format!("{}/sim/inbound", self.stack.simulator_url))
            .json(&json!({"phone_number_id": PHONE_NUMBER_ID, "from": from,
                          "type": "text", "body": "hello"}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = sent["id"].as_str().unwrap().to_owned();
        let from = format!("%2B{from}");
        eventually(
            "the message stored by Herald",
            Duration::from_secs(20),
            || async {
                let page: Value = self
                    .api
                    .get(&format!("/v1/inbound?from={from}"))
                    .await
                    .unwrap();
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["wa_message_id"] == id.as_str())
                    .then_some(())
            },
        )
        .await;
    }

    /// Moves the simulator's clock a day and an hour ahead: the windows it knows close.
    async fn a_day_passes_for_meta(&self) {
        reqwest::Client::new()
            .post(format!("{}/sim/clock", self.stack.simulator_url))
            .json(&json!({"advance_s": 25 * 3600}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    async fn campaign(&self, message: Value) -> Result<Value, String> {
        self.api
            .post::<Value>(
                "/v1/campaigns",
                &json!({"name": "kinds", "message": message, "sender_numbers": [self.number]}),
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Creates, fills and starts a campaign of `message` to `recipients` (phone, values);
    /// waits until none is pending or queued.
    async fn run(&self, message: Value, recipients: Value) -> Value {
        let campaign = self.campaign(message).await.unwrap();
        let id = campaign["id"].as_str().unwrap().to_owned();
        let report: Value = self
            .api
            .post(
                &format!("/v1/campaigns/{id}/recipients"),
                &json!({"recipients": recipients}),
            )
            .await
            .unwrap();
        assert_eq!(report["rejected_count"], 0, "{report}");
        self.api
            .post::<Value>(&format!("/v1/campaigns/{id}/start"), &json!({}))
            .await
            .unwrap();
        eventually("the campaign settled", Duration::from_secs(30), || async {
            let c: Value = self.api.get(&format!("/v1/campaigns/{id}")).await.unwrap();
            let n = &c["counters"];
            (n["pending"] == 0 && n["queued"] == 0 && n["total"].as_i64() > Some(0)).then_some(c)
        })
        .await
    }

    /// What the simulator was sent for the messages of campaign `c`.
    async fn sent_for(&self, c: &Value) -> Vec<Value> {
        let id = c["id"].as_str().unwrap();
        let listed: Value = self
            .api
            .get(&format!("/v1/campaigns/{id}/messages"))
            .await
            .unwrap();
        let ids: Vec<String> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].to_string())
            .collect();
        self.simulator
            .sent()
            .await
            .unwrap()
            .into_iter()
            .filter(|b| ids.contains(&b["biz_opaque_callback_data"].as_str().unwrap().to_owned()))
            .collect()
    }

    async fn finish(self) {
        self.stack.stop().await.unwrap();
        self.ctx.cleanup().await;
    }
}

#[tokio::test]
async fn every_kind_reaches_the_cloud_api_in_meta_s_shape_with_the_recipient_s_values() {
    let w = World::start().await;
    w.user_writes("447400000001").await;
    let kinds = [
        json!({"type": "text", "text": {"body": "Hello {{1}}, your code is {{2}}", "preview_url": false}}),
        json!({"type": "image", "image": {"link": "https://example.com/sale.jpg", "caption": "For {{1}}"}}),
        json!({"type": "video", "video": {"id": "1234567890", "caption": "Hi {{1}}"}}),
        json!({"type": "audio", "audio": {"id": "1234567891"}}),
        json!({"type": "document", "document": {"link": "https://example.com/{{2}}.pdf",
                                                "filename": "receipt-{{2}}.pdf", "caption": "{{1}}'s receipt"}}),
        json!({"type": "sticker", "sticker": {"id": "1234567892"}}),
        json!({"type": "interactive", "interactive": {"type": "button",
            "body": {"text": "{{1}}, which colour?"}, "footer": {"text": "Reply below"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "blue", "title": "Blue"}},
                                   {"type": "reply", "reply": {"id": "red", "title": "Red"}}]}}}),
        json!({"type": "interactive", "interactive": {"type": "list",
            "header": {"type": "text", "text": "Sizes"}, "body": {"text": "Pick one, {{1}}"},
            "action": {"button": "Sizes", "sections": [{"title": "All",
                "rows": [{"id": "s", "title": "Small"}, {"id": "m", "title": "Medium",
                          "description": "Most chosen"}]}]}}}),
        json!({"type": "interactive", "interactive": {"type": "cta_url",
            "body": {"text": "{{1}}, the sale is on"},
            "action": {"name": "cta_url", "parameters": {"display_text": "Open",
                                                          "url": "https://example.com/s/{{2}}"}}}}),
        json!({"type": "location", "location": {"latitude": 51.5072, "longitude": -0.1276,
                                                "name": "Shop", "address": "1 Strand, London"}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Herald Support",
            "first_name": "Herald"}, "phones": [{"phone": "+447400000999", "type": "WORK"}]}]}),
    ];
    for message in kinds {
        let kind = message["type"].as_str().unwrap().to_owned();
        // The values the message takes: a value it has no place for is refused.
        let text = message.to_string();
        let values: Vec<&str> = ["Ann", "A7"]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| text.contains(&format!("{{{{{}}}}}", i + 1)))
            .map(|(_, v)| v)
            .collect();
        let c = w
            .run(
                message.clone(),
                json!([{"phone": "+447400000001", "variables": values}]),
            )
            .await;
        assert_eq!(c["counters"]["failed"], 0, "{kind}: {c}");
        assert_eq!(
            c["message"], message,
            "the campaign shows its message as written"
        );
        let sent = w.sent_for(&c).await;
        assert_eq!(sent.len(), 1, "{kind}");
        let written = serde_json::to_string(&message[&kind])
            .unwrap()
            .replace("{{1}}", "Ann")
            .replace("{{2}}", "A7");
        let expected = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+447400000001",
            "type": kind,
            kind.clone(): serde_json::from_str::<Value>(&written).unwrap(),
            "biz_opaque_callback_data": sent[0]["biz_opaque_callback_data"],
        });
        assert_eq!(sent[0], expected, "{kind}");
    }
    // `"type": "template"` is a template campaign, as with `template`.
    let t = w
        .campaign(json!({"type": "template",
                         "template": {"name": "spring_sale_2026", "language": {"code": "en_GB"}}}))
        .await
        .unwrap();
    assert_eq!(
        t["template"],
        json!({"name": "spring_sale_2026", "language": "en_GB"})
    );
    assert!(t.get("message").is_none());
    w.finish().await;
}

#[tokio::test]
async fn meta_s_limits_are_422s_naming_the_field() {
    let w = World::start().await;
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"type": "reply", "reply": {"id": i.to_string(), "title": format!("B{i}")}}))
        .collect();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"id": i.to_string(), "title": "Row"}))
        .collect();
    let refused = [
        (
            json!({"type": "text", "text": {"body": "x".repeat(4097)}}),
            "message.text.body",
        ),
        (json!({"type": "text", "text": {}}), "message.text.body"),
        (
            json!({"type": "image", "image": {"id": "1", "caption": "x".repeat(1025)}}),
            "message.image.caption",
        ),
        (
            json!({"type": "image", "image": {"id": "1", "link": "https://example.com/a.jpg"}}),
            "message.image",
        ),
        (
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": four}}}),
            "message.interactive.action.buttons",
        ),
        (
            json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "?"},
            "action": {"button": "Rows", "sections": [{"rows": eleven}]}}}),
            "message.interactive.action.sections",
        ),
        (
            json!({"type": "location", "location": {"latitude": 100, "longitude": 0}}),
            "message.location.latitude",
        ),
        (
            json!({"type": "contacts", "contacts": []}),
            "message.contacts",
        ),
        (
            json!({"type": "text", "text": {"body": "Hi {{name}}"}}),
            "message",
        ),
        (
            json!({"type": "reaction", "reaction": {"message_id": "x", "emoji": "👍"}}),
            "message.type",
        ),
        (json!({"text": {"body": "no type"}}), "message.type"),
    ];
    for (message, field) in refused {
        let e = w.campaign(message.clone()).await.unwrap_err();
        assert!(e.contains("422"), "{message}: {e}");
        assert!(e.contains(&format!("\"{field}")), "{field} named: {e}");
    }
    let both = w
        .api
        .post::<Value>(
            "/v1/campaigns",
            &json!({"name": "both", "message": {"type": "text", "text": {"body": "Hi"}},
                    "template": {"name": "spring_sale_2026", "language": "en_GB"},
                    "sender_numbers": [w.number]}),
        )
        .await
        .unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
    // A recipient must give every variable the message takes.
    let c = w
        .campaign(json!({"type": "text", "text": {"body": "Hi {{1}}, {{2}}"}}))
        .await
        .unwrap();
    let short = w
        .api
        .post::<Value>(
            &format!("/v1/campaigns/{}/recipients", c["id"].as_str().unwrap()),
            &json!({"recipients": [{"phone": "+447400000001", "variables": ["Ann"]}]}),
        )
        .await;
    let report = short
        .map(|r| r.to_string())
        .unwrap_or_else(|e| e.to_string());
    assert!(report.contains("body.2"), "{report}");
    w.finish().await;
}

#[tokio::test]
async fn a_window_closed_since_herald_looked_gives_131047_failed_with_the_reason_not_retried() {
    let w = World::start().await;
    w.user_writes("447400000001").await;
    // Meta's clock moves on a day: Ann's window closed there; Bo writes afterwards.
    w.a_day_passes_for_meta().await;
    w.user_writes("447400000002").await;
    let c = w
        .run(
            json!({"type": "text", "text": {"body": "Thanks for writing, {{1}}"}}),
            json!([{"phone": "+447400000001", "variables": ["Ann"]},
                   {"phone": "+447400000002", "variables": ["Bo"]}]),
        )
        .await;
    let id = c["id"].as_str().unwrap();
    let closed = message_to(&w.api, id, "+447400000001").await;
    assert_eq!(
        (
            &closed["status"],
            &closed["error_code"],
            &closed["attempts"]
        ),
        (&json!("failed"), &json!(131047), &json!(1)),
        "{closed}"
    );
    assert!(
        closed["error_title"]
            .as_str()
            .unwrap()
            .starts_with("outside_window: "),
        "the reason a skipped message gives, with Meta's title: {closed}"
    );
    assert_ne!(
        message_to(&w.api, id, "+447400000002").await["status"],
        "failed"
    );
    assert_eq!(c["failures"][0]["code"], 131047);
    w.finish().await;
}

#[tokio::test]
async fn a_text_campaign_reaches_those_inside_their_window_and_skips_the_rest() {
    let w = World::start().await;
    let people: Vec<String> = (0..100).map(|i| format!("4474000{i:05}")).collect();
    for user in people
        .iter()
        .step_by(5)
        .chain(people.iter().skip(1).step_by(5))
    {
        w.user_writes(user).await;
    }
    let recipients: Vec<Value> = people
        .iter()
        .map(|p| json!({"phone": format!("+{p}"), "variables": ["friend"]}))
        .collect();
    let c = w
        .run(
            json!({"type": "text", "text": {"body": "Thanks, {{1}}: here is your answer"}}),
            json!(recipients),
        )
        .await;
    let n = &c["counters"];
    assert_eq!(n["skipped"], 60, "{c}");
    assert_eq!(n["failed"], 0, "{c}");
    assert_eq!(
        n["sent"].as_i64().unwrap()
            + n["delivered"].as_i64().unwrap()
            + n["read"].as_i64().unwrap(),
        40,
        "{c}"
    );
    assert_eq!(c["state"], "completed");
    let id: herald_shared::domain::CampaignId = c["id"].as_str().unwrap().parse().unwrap();
    herald_tests::assert_counters_match(&w.ctx.pool, id).await;
    // Nothing reached those outside; the skipped say why.
    assert_eq!(w.sent_for(&c).await.len(), 40);
    let skipped: Value = w
        .api
        .get(&format!(
            "/v1/campaigns/{id}/messages?status=skipped&limit=1000"
        ))
        .await
        .unwrap();
    let skipped = skipped["items"].as_array().unwrap();
    assert_eq!(skipped.len(), 60);
    assert!(
        skipped.iter().all(|m| m["error_title"] == "outside_window"),
        "{skipped:?}"
    );
    w.finish().await;
}
