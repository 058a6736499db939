//! A campaign through every role, in-process, against the simulator.

use std::time::Duration;

use herald::fixtures;
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, assert_counters_match, eventually, recipients, signed};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_recipient_campaign_over_two_numbers_is_read_by_everyone_exactly_once() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;

    let a = api
        .create_number("100000000001", "token-a", 400)
        .await
        .unwrap();
    let b = api
        .create_number("100000000002", "token-b", 400)
        .await
        .unwrap();
    let campaign = api
        .create_campaign("e2e", "spring_sale_2026", "en_GB", &[a.id, b.id])
        .await
        .unwrap();
    let report = api.upload(campaign.id, &recipients(500)).await.unwrap();
    assert_eq!(report.accepted, 500);
    assert!(report.rejected.is_empty());
    // Before the start, a forged webhook failing every message is refused; had it been
    // applied, every message would end `failed` instead of `read`.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1")
        .bind(campaign.id)
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
    let statuses: Vec<_> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": format!("wamid.forged{id}"), "status": "failed",
                "timestamp": "1778580007", "biz_opaque_callback_data": id.to_string(),
                "errors": [{"code": 131026, "title": "forged"}]})
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"statuses": statuses}}]}]}))
    .unwrap();
    let mut forged = signed(&ctx.settings, &body);
    let flipped = if &forged[7..8] == "0" { "1" } else { "0" };
    forged.replace_range(7..8, flipped);
    let response = reqwest::Client::new()
        .post(format!("{}/webhook", stack.webhook_url))
        .header("x-hub-signature-256", forged)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    api.start(campaign.id).await.unwrap();

    let done = eventually("every message read", Duration::from_secs(60), || async {
        let view = api.campaign(campaign.id).await.unwrap();
        (view.counters.read == 500).then_some(view)
    })
    .await;
    assert_eq!(done.counters.total, 500);
    assert_eq!(done.state, herald_shared::domain::CampaignState::Completed);

    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
        .await
        .unwrap();
    assert_eq!(statuses, vec![(MessageStatus::Read, 500)]);
    assert_counters_match(&ctx.pool, campaign.id).await;

    // Sent entries are deleted from the streams: Redis does not keep the campaign.
    let keys = herald_shared::stream::Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    for number in [a.id, b.id] {
        eventually("the stream emptied", Duration::from_secs(10), || {
            let (mut redis, stream) = (redis.clone(), keys.stream(number));
            async move {
                let len: usize = redis::AsyncCommands::xlen(&mut redis, stream)
                    .await
                    .unwrap();
                (len == 0).then_some(())
            }
        })
        .await;
    }

    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    assert_eq!(stats.accepted_total, 500);
    assert_eq!(stats.duplicate_recipients, 0);
    assert_eq!(
        stats.accepted.len(),
        2,
        "both numbers sent: {:?}",
        stats.accepted
    );
    assert!(
        stats.accepted.values().all(|n| *n > 100),
        "{:?}",
        stats.accepted
    );

    stack.stop().await.unwrap();
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
        .await
        .unwrap();
    assert_eq!(statuses, vec![(MessageStatus::Read, 500)]);
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_pasted_with_spaces_quotes_and_a_bearer_prefix_is_sent_bare() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    // The simulator accepts only the bare token for this number: anything else is a 190.
    let phone = "610000000001";
    let numbers = json!({"numbers": [{"phone_number_id": phone, "token": "EAAG-right"}]});
    herald_tests::configure_simulator(&stack, numbers).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_number(phone, " \"Bearer EAAG-right\"\n", 80)
        .await
        .unwrap();
    let campaign = fixtures::campaign(&api, "pasted token", &[number.id], 3)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually(
        "every message out of the queue",
        Duration::from_secs(30),
        || async {
            let c = api.campaign(campaign.id).await.unwrap().counters;
            (c.pending + c.queued == 0).then_some(())
        },
    )
    .await;
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    assert_eq!(stats.accepted_total, 3, "{stats:?}");
    assert_eq!(stats.rejected.get(&190), None);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
