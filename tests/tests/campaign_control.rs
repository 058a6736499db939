//! Pause, resume and cancel, across the whole pipeline.

use herald::fixtures;
use std::time::Duration;

use herald_ingest::views::CampaignView;
use herald_shared::domain::{CampaignState, MessageStatus};
use herald_shared::stream::{Keys, SENDER_GROUP};
use herald_tests::{TestContext, assert_counters_match, eventually, simulator_stats};
use redis::AsyncCommands;

fn count(statuses: &[(MessageStatus, i64)], wanted: &[MessageStatus]) -> i64 {
    statuses
        .iter()
        .filter(|(s, _)| wanted.contains(s))
        .map(|(_, n)| n)
        .sum()
}

/// A campaign of 150 on one number at 25 msg/s, started, with some already sent.
async fn sending(
    ctx: &TestContext,
    stack: &herald::stack::Stack,
    phone_number_id: &str,
) -> (
    herald::client::ApiClient,
    CampaignView,
    herald_ingest::views::NumberView,
) {
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number(phone_number_id, "t", 25).await.unwrap();
    let campaign = fixtures::campaign(&api, "control", &[number.id], 150)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("some sent", Duration::from_secs(20), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.total - c.pending - c.queued >= 10).then_some(())
    })
    .await;
    (api, campaign, number)
}

const SENT_OR_LATER: [MessageStatus; 3] = [
    MessageStatus::Sent,
    MessageStatus::Delivered,
    MessageStatus::Read,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_campaign_keeps_its_unsent_messages_until_resumed_and_loses_none() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let (api, campaign, number) = sending(&ctx, &stack, "600000000001").await;
    assert_eq!(
        api.pause(campaign.id).await.unwrap().state,
        CampaignState::Paused
    );

    // Every unsent message ends up set aside, none in flight or pending in the stream.
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    let (sent, parked) = eventually("the rest parked", Duration::from_secs(20), || {
        let (mut redis, keys, api) = (redis.clone(), &keys, &api);
        async move {
            let parked: i64 = redis.zcard(keys.number(number.id).parked).await.unwrap();
            let pending: redis::streams::StreamPendingReply = redis
                .xpending(keys.stream(number.id), SENDER_GROUP)
                .await
                .unwrap();
            let c = api.campaign(campaign.id).await.unwrap().counters;
            (pending.count() == 0 && parked > 0 && parked == c.queued && c.pending == 0)
                .then_some((c.total - c.queued, parked))
        }
    })
    .await;
    assert_eq!(sent + parked, 150);
    let stats = simulator_stats(&stack.simulator_url).await;
    assert_eq!(stats.accepted_total as i64, sent, "nothing parked was sent");

    assert_eq!(
        api.resume(campaign.id).await.unwrap().state,
        CampaignState::Running
    );
    let done = eventually("every message read", Duration::from_secs(30), || async {
        let view = api.campaign(campaign.id).await.unwrap();
        (view.counters.read == 150).then_some(view)
    })
    .await;
    assert_eq!(done.state, CampaignState::Completed);
    let stats = simulator_stats(&stack.simulator_url).await;
    assert_eq!((stats.accepted_total, stats.duplicate_recipients), (150, 0));
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_marks_every_unsent_message_cancelled_and_sends_nothing_more() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let (api, campaign, number) = sending(&ctx, &stack, "600000000002").await;
    assert_eq!(
        api.cancel(campaign.id).await.unwrap().state,
        CampaignState::Cancelled
    );

    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    eventually("the stream drained", Duration::from_secs(20), || {
        let (mut redis, keys) = (redis.clone(), &keys);
        async move {
            let pending: redis::streams::StreamPendingReply = redis
                .xpending(keys.stream(number.id), SENDER_GROUP)
                .await
                .unwrap();
            let info: redis::streams::StreamInfoGroupsReply =
                redis.xinfo_groups(keys.stream(number.id)).await.unwrap();
            let lag = info.groups.first().and_then(|g| g.lag).unwrap_or(1);
            (pending.count() == 0 && lag == 0).then_some(())
        }
    })
    .await;
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
        .await
        .unwrap();
    let cancelled = count(&statuses, &[MessageStatus::Cancelled]);
    let sent = count(&statuses, &SENT_OR_LATER);
    assert!(cancelled > 0, "{statuses:?}");
    assert_eq!(sent + cancelled, 150, "{statuses:?}");
    // Sends started before the senders saw the cancel (within a second) went out, and are
    // recorded as sent: what the simulator accepted is exactly what Postgres says was sent.
    let accepted = simulator_stats(&stack.simulator_url).await.accepted_total as i64;
    assert_eq!(accepted, sent, "{statuses:?}");
    assert_counters_match(&ctx.pool, campaign.id).await;
    assert_eq!(
        api.campaign(campaign.id).await.unwrap().state,
        CampaignState::Cancelled
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_template_error_from_a_send_begun_before_the_resume_does_not_pause_again() {
    use herald_shared::db::campaigns;
    let ctx = TestContext::new().await;
    let (campaign, _) = herald_tests::seed_campaign(&ctx, 1).await;
    let tenant: herald_shared::domain::TenantId =
        sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    let to = |from: CampaignState, to: CampaignState| {
        let pool = ctx.pool.clone();
        async move { campaigns::transition_campaign(&pool, tenant, campaign, &[from], to).await }
    };
    assert!(
        to(CampaignState::Draft, CampaignState::Running)
            .await
            .unwrap()
    );
    let early_send = chrono::Utc::now();
    assert!(
        campaigns::pause_campaign(&ctx.pool, campaign, "template error 132001", early_send)
            .await
            .unwrap()
    );
    assert!(
        to(CampaignState::Paused, CampaignState::Running)
            .await
            .unwrap()
    );
    // A send begun before the resume reports the same error late: stale.
    assert!(
        !campaigns::pause_campaign(&ctx.pool, campaign, "template error 132001", early_send)
            .await
            .unwrap()
    );
    // One begun after the resume still pauses it.
    let late_send = chrono::Utc::now() + chrono::Duration::milliseconds(1);
    assert!(
        campaigns::pause_campaign(&ctx.pool, campaign, "template error 132001", late_send)
            .await
            .unwrap()
    );
    ctx.cleanup().await;
}
