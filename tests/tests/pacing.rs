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
