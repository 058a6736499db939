//! Inbound messages through the webhook (issue #5): a reply counts as `replied` and a
//! quick-reply tap as `clicked` on its campaign, once each however often Meta delivers them; a
//! STOP keyword, an opt-out button or Meta's marketing preference suppresses the user, and a
//! later upload stores them `suppressed`, never to be sent. Bodies are the fixtures' shapes.

use herald::fixtures;
use std::time::Duration;

use herald::client::{ApiClient, DEMO_WABA};
use herald::stack::{Roles, Stack};
use herald_shared::db::transitions::{self, Sent};
use herald_shared::domain::{CampaignId, MessageId, MessageStatus};
use herald_tests::{TestContext, assert_counters_match, eventually, post_webhook, recipients};
use serde_json::{Value, json};

/// The fixtures' business number and the message their taps and replies answer.
const FIXTURE_NUMBER: &str = "109876543210987";
const FIXTURE_CONTEXT: &str = "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgURjI5QkM5MUJCREFCMTY5RkMwQzAA";
const FIXTURE_USER: &str = "447700900123";

/// A fixture as this test's world sees it: sent by `user` (digits), answering `context`.
fn fixture(name: &str, user: &str, context: &str, inbound_id: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/whatsapp/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut body: Value = serde_json::from_str(
        &text
            .replace(FIXTURE_CONTEXT, context)
            .replace(FIXTURE_USER, user),
    )
    .unwrap();
    body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = json!(inbound_id);
    serde_json::to_vec(&body).unwrap()
}

fn preference(user: &str, value: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "user_preferences", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "447400000000",
                         "phone_number_id": FIXTURE_NUMBER},
            "contacts": [{"wa_id": user}],
            "user_preferences": [{"wa_id": user, "detail": "User requested to stop marketing messages",
                "category": "marketing_messages", "value": value, "timestamp": 1778580400}]}}]}]}))
    .unwrap()
}

async fn suppressed(ctx: &TestContext, recipient: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM suppressions WHERE recipient = $1 AND active)")
        .bind(recipient)
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

/// A campaign of three on the fixtures' number, each message sent with wamid `wamid.sent<i>`.
async fn sent_campaign(ctx: &TestContext, api: &ApiClient) -> (CampaignId, Vec<MessageId>) {
    let number = api.create_number(FIXTURE_NUMBER, "t", 80).await.unwrap();
    let campaign = fixtures::campaign(api, "engaging", &[number.id], 3)
        .await
        .unwrap();
    let ids: Vec<MessageId> =
        sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
            .bind(campaign.id)
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    let sends: Vec<Sent> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Sent {
            message: *id,
            wa_message_id: format!("wamid.sent{i}"),
            at: chrono::Utc::now(),
        })
        .collect();
    let unrecorded = transitions::record_sent(&ctx.pool, &sends).await.unwrap();
    assert!(
        unrecorded.is_empty(),
        "pending messages are recorded as sent"
    );
    (campaign.id, ids)
}

#[tokio::test]
async fn replies_taps_and_opt_outs_are_counted_once_and_suppress_later_uploads() {
    let ctx = TestContext::new().await;
    let roles = Roles::INGEST_AND_WEBHOOK;
    // One processor, so that bodies are applied in the order they were posted.
    let mut settings = ctx.settings.clone();
    settings.webhook.processors = 1;
    let stack = Stack::start(settings, roles).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let (campaign, _) = sent_campaign(&ctx, &api).await;
    let users = recipients(3);
    let digits = |i: usize| users[i].0.trim_start_matches('+').to_owned();

    // "STOP" answering the first message, delivered twice.
    let stop = fixture(
        "webhook-inbound-text.json",
        &digits(0),
        "wamid.sent0",
        "wamid.in1",
    );
    post_webhook(&ctx, &stack, &stop).await;
    post_webhook(&ctx, &stack, &stop).await;
    // A quick-reply tap ("Stop promotions") on the second.
    let tap = fixture(
        "webhook-inbound-button-reply.json",
        &digits(1),
        "wamid.sent1",
        "wamid.in2",
    );
    post_webhook(&ctx, &stack, &tap).await;
    // A plain reply from the third that quotes nothing: the campaign of their last message.
    let mut hello: Value = serde_json::from_slice(&fixture(
        "webhook-inbound-text.json",
        &digits(2),
        "x",
        "wamid.in3",
    ))
    .unwrap();
    let message = &mut hello["entry"][0]["changes"][0]["value"]["messages"][0];
    message.as_object_mut().unwrap().remove("context");
    message["text"]["body"] = json!("Is the sale on in store too?");
    post_webhook(&ctx, &stack, &serde_json::to_vec(&hello).unwrap()).await;

    // Bodies are applied in order: once the last is, the duplicate was too.
    eventually(
        "the last reply counted",
        Duration::from_secs(20),
        || async {
            let counted: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM engagements WHERE wa_message_id = 'wamid.in3')",
            )
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
            counted.then_some(())
        },
    )
    .await;
    let c = api.campaign(campaign).await.unwrap().counters;
    assert_eq!(
        (c.replied, c.clicked),
        (2, 1),
        "the duplicate changed nothing"
    );
    assert!(suppressed(&ctx, &users[0].0).await, "STOP opts out");
    assert!(
        suppressed(&ctx, &users[1].0).await,
        "the opt-out button opts out"
    );
    assert!(!suppressed(&ctx, &users[2].0).await, "a question does not");

    // Meta's own marketing opt-out, then the user's opt back in.
    post_webhook(&ctx, &stack, &preference(&digits(2), "stop")).await;
    eventually(
        "the preference applied",
        Duration::from_secs(20),
        || async { suppressed(&ctx, &users[2].0).await.then_some(()) },
    )
    .await;
    post_webhook(&ctx, &stack, &preference(&digits(2), "resume")).await;
    eventually("the opt-in applied", Duration::from_secs(20), || async {
        (!suppressed(&ctx, &users[2].0).await).then_some(())
    })
    .await;

    // The next campaign to the same people: the two who opted out are stored, never sent.
    let number = api
        .create_campaign(
            "next",
            "spring_sale_2026",
            "en_GB",
            &[sqlx::query_scalar("SELECT id FROM sender_numbers")
                .fetch_one(&ctx.pool)
                .await
                .unwrap()],
        )
        .await
        .unwrap();
    let report = api.upload(number.id, &users).await.unwrap();
    assert_eq!((report.accepted, report.suppressed), (1, 2));
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, number.id)
        .await
        .unwrap();
    assert_eq!(
        statuses,
        vec![(MessageStatus::Pending, 1), (MessageStatus::Suppressed, 2)]
    );
    assert_counters_match(&ctx.pool, number.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_template_meta_paused_pauses_the_running_campaigns_that_send_it() {
    let ctx = TestContext::new().await;
    let roles = Roles::INGEST_AND_WEBHOOK;
    let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    // `create_number` registers its numbers under WABA `DEMO_WABA`.
    let number = api.create_number(FIXTURE_NUMBER, "t", 80).await.unwrap();
    let mut started = Vec::new();
    for template in ["spring_sale_2026", "loyalty_points"] {
        let campaign = api
            .create_campaign(template, template, "en_GB", &[number.id])
            .await
            .unwrap();
        api.upload(campaign.id, &recipients(2)).await.unwrap();
        api.start(campaign.id).await.unwrap();
        started.push(campaign.id);
    }
    let update = |waba: &str, event: &str| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{
            "id": waba, "time": 1778580400, "changes": [{
                "field": "message_template_status_update",
                "value": {"event": event, "message_template_id": 1234567890,
                          "message_template_name": "spring_sale_2026",
                          "message_template_language": "en_GB", "reason": "LOW_QUALITY"}}]}]}))
        .unwrap()
    };
    // Another WABA's template of the same name, and an approval, change nothing; the pause
    // after them does.
    post_webhook(&ctx, &stack, &update("other-waba", "PAUSED")).await;
    post_webhook(&ctx, &stack, &update(DEMO_WABA, "APPROVED")).await;
    eventually("both applied", Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        (n == 2).then_some(())
    })
    .await;
    let view = api.campaign(started[0]).await.unwrap();
    assert_eq!(view.state, herald_shared::domain::CampaignState::Running);
    post_webhook(&ctx, &stack, &update(DEMO_WABA, "PAUSED")).await;
    let paused = eventually("the campaign paused", Duration::from_secs(20), || async {
        let view = api.campaign(started[0]).await.unwrap();
        (view.state == herald_shared::domain::CampaignState::Paused).then_some(view)
    })
    .await;
    assert_eq!(
        paused.state_reason.as_deref(),
        Some("template spring_sale_2026 PAUSED by Meta: LOW_QUALITY")
    );
    let other = api.campaign(started[1]).await.unwrap();
    assert_eq!(other.state, herald_shared::domain::CampaignState::Running);
    // The template's stored status follows Meta's.
    let listed: herald_ingest::views::Page<herald_ingest::views::TemplateDetail> = api
        .get("/v1/templates?name=spring_sale_2026")
        .await
        .unwrap();
    assert_eq!(listed.items[0].status, "PAUSED");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
