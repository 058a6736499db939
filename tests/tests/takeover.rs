//! A new owner of a number handles what a dead sender left pending: recorded sends are
//! acknowledged, unrecorded ones wait for their receipt and are sent again only without one.

use herald::fixtures;
use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::domain::{CampaignId, MessageId, MessageStatus};
use herald_shared::stream::{Keys, SENDER_GROUP};
use herald_tests::{TestContext, assert_counters_match, eventually, set_status};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

/// Ingest, with a simulator to read templates from (no sender sends to it).
const SENDER_AND_SIMULATOR: Roles = Roles {
    ingest: false,
    sender: true,
    webhook: false,
    simulator: true,
};

/// A started campaign of six on one number whose entries a sender read and then died with:
/// all six are pending for consumer `dead`, and the first three were recorded as sent.
async fn dead_senders_leftovers(ctx: &TestContext) -> (CampaignId, Vec<MessageId>) {
    let ingest = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&ingest.ingest_url).await;
    let number = api.create_number("500000000001", "t", 100).await.unwrap();
    let campaign = fixtures::campaign(&api, "takeover", &[number.id], 6)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("six queued", Duration::from_secs(10), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.queued == 6).then_some(())
    })
    .await;
    ingest.stop().await.unwrap();

    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = ctx.redis().await;
    herald_shared::stream::conn::ensure_group(&mut redis, &keys.stream(number.id), SENDER_GROUP)
        .await
        .unwrap();
    let read: StreamReadReply = redis
        .xread_options(
            &[keys.stream(number.id)],
            &[">"],
            &StreamReadOptions::default()
                .group(SENDER_GROUP, "dead")
                .count(10),
        )
        .await
        .unwrap();
    assert_eq!(read.keys[0].ids.len(), 6);
    let ids: Vec<MessageId> =
        sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
            .bind(campaign.id)
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    for (i, id) in ids.iter().take(3).enumerate() {
        set_status(
            &ctx.pool,
            *id,
            MessageStatus::Sent,
            Some(&format!("wamid.old{i}")),
        )
        .await;
    }
    (campaign.id, ids)
}

/// The stream of the campaign's one number.
async fn stream_of(ctx: &TestContext, campaign: CampaignId) -> String {
    let number: herald_shared::domain::NumberId =
        sqlx::query_scalar("SELECT sender_number_id FROM campaign_numbers WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    Keys::new(ctx.settings.redis.key_prefix.clone()).stream(number)
}

async fn pending(ctx: &TestContext, campaign: CampaignId) -> usize {
    let stream = stream_of(ctx, campaign).await;
    let summary: redis::streams::StreamPendingReply = ctx
        .redis()
        .await
        .xpending(stream, SENDER_GROUP)
        .await
        .unwrap();
    summary.count()
}

/// The consumer holding each pending entry of the campaign's number.
async fn pending_owners(ctx: &TestContext, campaign: CampaignId) -> Vec<String> {
    let stream = stream_of(ctx, campaign).await;
    let reply: redis::streams::StreamPendingCountReply = ctx
        .redis()
        .await
        .xpending_count(stream, SENDER_GROUP, "-", "+", 100)
        .await
        .unwrap();
    reply.ids.into_iter().map(|p| p.consumer).collect()
}

async fn accepted(stack: &Stack) -> u64 {
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    stats.accepted_total
}

#[tokio::test]
async fn recorded_sends_are_acknowledged_and_unrecorded_ones_sent_again_after_the_window() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = dead_senders_leftovers(&ctx).await;
    let sender = Stack::start(ctx.settings.clone(), SENDER_AND_SIMULATOR)
        .await
        .unwrap();
    eventually("all six sent", Duration::from_secs(20), || async {
        let c = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign)
            .await
            .unwrap();
        (c == vec![(MessageStatus::Sent, 6)]).then_some(())
    })
    .await;
    // Only the three unrecorded ones went out again.
    assert_eq!(accepted(&sender).await, 3);
    let wamid: Option<String> =
        sqlx::query_scalar("SELECT wa_message_id FROM message_wamids WHERE message_id = $1")
            .bind(ids[0])
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(wamid.as_deref(), Some("wamid.old0"));
    eventually("nothing pending", Duration::from_secs(10), || async {
        (pending(&ctx, campaign).await == 0).then_some(())
    })
    .await;
    assert_counters_match(&ctx.pool, campaign).await;
    sender.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn an_ambiguous_send_whose_receipt_arrives_in_the_window_is_not_sent_again() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = dead_senders_leftovers(&ctx).await;
    let mut settings = ctx.settings.clone();
    settings.sender.reconciliation_window_ms = 5_000;
    let sender = Stack::start(settings, SENDER_AND_SIMULATOR).await.unwrap();
    // Once the new owner has claimed the dead sender's entries...
    eventually("the entries claimed", Duration::from_secs(10), || async {
        let owners = pending_owners(&ctx, campaign).await;
        (owners.len() == 3 && owners.iter().all(|o| o != "dead")).then_some(())
    })
    .await;
    // ...the old owner's sends turn out to have been accepted: their receipts come in now.
    for (i, id) in ids.iter().enumerate().skip(3) {
        set_status(
            &ctx.pool,
            *id,
            MessageStatus::Sent,
            Some(&format!("wamid.late{i}")),
        )
        .await;
    }
    eventually("nothing pending", Duration::from_secs(20), || async {
        (pending(&ctx, campaign).await == 0).then_some(())
    })
    .await;
    assert_eq!(accepted(&sender).await, 0, "no message was sent twice");
    assert_counters_match(&ctx.pool, campaign).await;
    sender.stop().await.unwrap();
    ctx.cleanup().await;
}
