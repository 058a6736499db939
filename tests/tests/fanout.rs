//! Fan-out against a real Postgres and Redis: which messages reach the streams, and in what
//! order.

use std::sync::Arc;

use herald_ingest::FanOut;
use herald_shared::db::{campaigns, messages};
use herald_shared::domain::{CampaignId, CampaignState, MessageId, MessageStatus, NumberId};
use herald_shared::stream::{Entry, Keys, conn::entry_field};
use herald_tests::{TestContext, seed_campaign, set_status, status_of};
use sqlx::PgPool;

/// Adds `n` recipients to `campaign` (ids after every message so far, of any campaign).
async fn add_recipients(pool: &PgPool, campaign: CampaignId, tag: &str, n: usize) {
    let number = campaigns::campaign_numbers(pool, campaign).await.unwrap()[0];
    let rows: Vec<messages::NewMessage> = (0..n)
        .map(|i| messages::NewMessage {
            number,
            recipient: format!("+44750{tag}{i:04}"),
            variables: serde_json::json!(["x", "y"]),
        })
        .collect();
    messages::insert_recipients(pool, campaign, &rows)
        .await
        .unwrap();
}

async fn message_ids(pool: &PgPool, campaign: CampaignId) -> Vec<MessageId> {
    sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
        .bind(campaign)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The messages in a number's stream, in stream order.
async fn streamed(
    redis: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    number: NumberId,
) -> Vec<MessageId> {
    let reply: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(redis, keys.stream(number))
            .await
            .unwrap();
    reply
        .ids
        .iter()
        .map(|e| Entry::decode(entry_field(e, "e").unwrap()).unwrap().message)
        .collect()
}

#[tokio::test]
async fn fan_out_streams_a_campaigns_pending_messages_in_order_across_other_campaigns_ids() {
    let ctx = TestContext::new().await;
    // Campaign A's ids interleave with B's in blocks of 4, and A's first block is sent
    // already: with pages 4 ids wide, some pages hold nothing of A's to send.
    let (a, _) = seed_campaign(&ctx, 4).await;
    let (b, _) = seed_campaign(&ctx, 4).await;
    add_recipients(&ctx.pool, a, "1", 4).await;
    add_recipients(&ctx.pool, b, "2", 4).await;
    add_recipients(&ctx.pool, a, "3", 4).await;
    let a_ids = message_ids(&ctx.pool, a).await;
    for &id in &a_ids[..4] {
        set_status(
            &ctx.pool,
            id,
            MessageStatus::Sent,
            Some(&format!("wamid.{}", id.0)),
        )
        .await;
    }
    let tenant = sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
        .bind(a)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert!(
        campaigns::transition_campaign(
            &ctx.pool,
            tenant,
            a,
            &[CampaignState::Draft],
            CampaignState::Running
        )
        .await
        .unwrap()
    );

    let mut settings = ctx.settings.ingest.clone();
    settings.fanout_batch = 4;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut fan_out = FanOut::new(
        ctx.pool.clone(),
        ctx.redis().await,
        keys.clone(),
        &settings,
        wake,
    );
    assert_eq!(fan_out.process_running().await.unwrap(), 8);

    let mut redis = ctx.redis().await;
    let a_number = campaigns::campaign_numbers(&ctx.pool, a).await.unwrap()[0];
    let b_number = campaigns::campaign_numbers(&ctx.pool, b).await.unwrap()[0];
    assert_eq!(
        streamed(&mut redis, &keys, a_number).await,
        a_ids[4..].to_vec()
    );
    assert!(streamed(&mut redis, &keys, b_number).await.is_empty());
    for &id in &a_ids[4..] {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Queued);
    }
    for id in message_ids(&ctx.pool, b).await {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Pending);
    }

    // Recipients added while it runs are fanned out next time, and nothing before them again.
    add_recipients(&ctx.pool, a, "4", 3).await;
    assert_eq!(fan_out.process_running().await.unwrap(), 3);
    let a_ids = message_ids(&ctx.pool, a).await;
    assert_eq!(
        streamed(&mut redis, &keys, a_number).await,
        a_ids[4..].to_vec()
    );
    herald_tests::assert_counters_match(&ctx.pool, a).await;
    ctx.cleanup().await;
}
