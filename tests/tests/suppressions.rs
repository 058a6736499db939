//! Suppressions (#12): added, listed and lifted by the API (or a CSV); an opt-out recorded
//! mid-campaign stops every later send to that person on every sender, matched across
//! Meta's WhatsApp ID and the E.164 number uploaded; Meta's timestamps order stop and resume.

use std::time::Duration;

use herald::client::ApiClient;
use herald::fixtures::Simulator;
use herald::stack::{Roles, Stack};
use herald_ingest::views::{AddReport, Page, SuppressionRow};

type SuppressionList = Page<SuppressionRow>;
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, configure_simulator, eventually, post_webhook, refusal};
use serde_json::{Value, json};

async fn listed(api: &ApiClient) -> Vec<String> {
    let list: SuppressionList = api.get("/v1/suppressions?limit=1000").await.unwrap();
    list.items.into_iter().map(|s| s.recipient).collect()
}

/// Meta's marketing preference of `wa_id` for business number `number`, stamped `at`.
fn preference(number: &str, wa_id: &str, value: &str, at: i64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "user_preferences", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "447400000000", "phone_number_id": number},
            "contacts": [{"wa_id": wa_id}],
            "user_preferences": [{"wa_id": wa_id, "detail": "marketing",
                "category": "marketing_messages", "value": value, "timestamp": at}]}}]}]}),
    )
    .unwrap()
}

#[tokio::test]
async fn the_api_adds_lists_and_lifts_suppressions_and_an_older_resume_cannot_undo_a_stop() {
    let ctx = TestContext::new().await;
    let roles = Roles::INGEST_AND_WEBHOOK;
    let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let body = json!({"phones": ["+447400000001", "not a phone", "+44 7400 000002"],
                      "reason": "asked by phone"});
    let report: AddReport = api.post("/v1/suppressions", &body).await.unwrap();
    assert_eq!((report.added, report.already), (2, 0));
    assert_eq!(report.rejected[0].row, 2);
    let again: AddReport = api.post("/v1/suppressions", &body).await.unwrap();
    assert_eq!((again.added, again.already), (0, 2));
    let csv: AddReport = api
        .post_raw(
            "/v1/suppressions?default_country=GB",
            "text/csv",
            "phone,reason\n07400 000003,complaint\n",
        )
        .await
        .unwrap();
    assert_eq!(csv.added, 1);
    assert_eq!(
        listed(&api).await,
        ["+447400000001", "+447400000002", "+447400000003"]
    );
    let page: SuppressionList = api.get("/v1/suppressions?limit=2").await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].note.as_deref(), Some("asked by phone"));
    let rest: SuppressionList = api
        .get(&format!(
            "/v1/suppressions?limit=2&cursor={}",
            page.next_cursor.unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(rest.items[0].recipient, "+447400000003");
    assert_eq!(rest.next_cursor, None);
    api.delete("/v1/suppressions/+447400000001").await.unwrap();
    let gone = refusal(
        api.delete("/v1/suppressions/+447400000001")
            .await
            .unwrap_err(),
    );
    assert_eq!(gone.status, 404);
    assert_eq!(listed(&api).await, ["+447400000002", "+447400000003"]);
    // Named by its WhatsApp ID's digits too.
    api.delete("/v1/suppressions/447400000003").await.unwrap();
    assert_eq!(listed(&api).await, ["+447400000002"]);
    // Another tenant's list is its own.
    let other = ctx.tenant(&stack.ingest_url).await;
    assert!(listed(&other).await.is_empty());

    // Brazil: Meta's wa_id lacks the ninth digit the uploaded number has. A stop stamped
    // later than a resume that arrives after it still holds.
    let number = api.create_number("660000000001", "t", 80).await.unwrap();
    post_webhook(
        &ctx,
        &stack,
        &preference("660000000001", "551187654321", "stop", 2_000),
    )
    .await;
    post_webhook(
        &ctx,
        &stack,
        &preference("660000000001", "551187654321", "resume", 1_000),
    )
    .await;
    eventually(
        "both preferences applied",
        Duration::from_secs(20),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
                .fetch_one(&ctx.pool)
                .await
                .unwrap();
            (n == 2).then_some(())
        },
    )
    .await;
    assert!(listed(&api).await.contains(&"+5511987654321".to_owned()));
    // Uploaded after: stored suppressed, never to be sent.
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    let rows = [
        ("+55 11 98765 4321".to_owned(), vec!["A".into(), "1".into()]),
        ("+447400000002".to_owned(), vec!["B".into(), "2".into()]),
        ("+447400000009".to_owned(), vec!["C".into(), "3".into()]),
    ];
    let report = api.upload(campaign.id, &rows).await.unwrap();
    assert_eq!((report.accepted, report.suppressed), (1, 2));
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_received_mid_campaign_stops_every_later_send_to_that_person() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    configure_simulator(&stack, json!({"capture": 1000})).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let phone_number_id = "660000000002";
    let number = api.create_number(phone_number_id, "t", 10).await.unwrap();
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    // Forty recipients at 10 a second; the Mexican one, uploaded in E.164, is the last.
    let mut rows: Vec<(String, Vec<String>)> = (0..39)
        .map(|i| {
            (
                format!("+4474000002{i:02}"),
                vec![format!("C{i}"), "5%".into()],
            )
        })
        .collect();
    rows.push(("+52 55 1234 5678".into(), vec!["Mx".into(), "5%".into()]));
    api.upload(campaign.id, &rows).await.unwrap();
    api.start(campaign.id).await.unwrap();
    eventually(
        "every message queued, the first sent",
        Duration::from_secs(20),
        || async {
            let c = api.campaign(campaign.id).await.unwrap().counters;
            (c.pending == 0 && c.sent + c.delivered + c.read > 0).then_some(())
        },
    )
    .await;
    // STOP, from Meta's WhatsApp ID (Mexico's keeps the old `1`).
    let answer = reqwest::Client::new()
        .post(format!("{}/sim/inbound", stack.simulator_url))
        .json(
            &json!({"phone_number_id": phone_number_id, "from": "5215512345678",
                      "type": "text", "body": "STOP"}),
        )
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let done = eventually("every message settled", Duration::from_secs(30), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.pending + c.queued == 0).then_some(c)
    })
    .await;
    assert_eq!(done.suppressed, 1, "{done:?}");
    let status: MessageStatus =
        sqlx::query_scalar("SELECT status FROM messages WHERE recipient = '+525512345678'")
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(status, MessageStatus::Suppressed);
    let sent: Vec<Value> = Simulator::new(stack.simulator_url.clone())
        .sent()
        .await
        .unwrap();
    assert_eq!(sent.len(), 39);
    assert!(
        sent.iter().all(|b| b["to"] != "+525512345678"),
        "nothing reached the person who said STOP"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
