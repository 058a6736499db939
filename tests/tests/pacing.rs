//! A number pushed over its real cap slows down, loses and fails nothing, and keeps the rate
//! it learned.

use herald::fixtures;
use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, assert_counters_match, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_lower_hidden_cap_the_number_slows_down_and_every_message_is_sent() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.simulator.cap_per_number = 40;
    let stack = Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("700000000001", "t", 200).await.unwrap();
    let campaign = fixtures::campaign(&api, "pacing", &[number.id], 300)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message read", Duration::from_secs(60), || async {
        (api.campaign(campaign.id).await.unwrap().counters.read == 300).then_some(())
    })
    .await;
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
        .await
        .unwrap();
    assert_eq!(statuses, vec![(MessageStatus::Read, 300)]);
    let (rate, attempts): (i32, i64) = sqlx::query_as(
        "SELECT n.current_rate, (SELECT max(attempts)::bigint FROM messages WHERE campaign_id = $2)
         FROM sender_numbers n WHERE n.id = $1",
    )
    .bind(number.id)
    .bind(campaign.id)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    assert!(rate < 200, "the stored rate came down: {rate}");
    assert_eq!(attempts, 1, "throttling used up no attempts");
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// Sends that reach the API late, by up to three times the pacing guard, still leave no second
/// over the number's cap: the guard widens to how much longer than the fastest recent sends
/// took (each would otherwise arrive in the same second as the rate after it: 130429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_held_up_on_their_way_leave_no_second_over_the_cap() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.simulator.cap_per_number = 40;
    let stack = Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    herald_tests::configure_simulator(
        &stack,
        serde_json::json!({"arrival_delay": {"kind": "uniform", "min_ms": 0, "max_ms": 60}}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("700000000002", "t", 40).await.unwrap();
    let campaign = fixtures::campaign(&api, "late arrivals", &[number.id], 200)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message sent", Duration::from_secs(60), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.pending + c.queued == 0).then_some(())
    })
    .await;
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    assert_eq!(stats.rejected.get(&130429), None, "{stats:?}");
    assert_eq!(stats.accepted_total, 200, "{stats:?}");
    assert!(stats.max_per_second.values().all(|n| *n <= 40), "{stats:?}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
