//! Fan-out against a real Postgres and Redis: which messages reach the streams, and in what
//! order.

use std::sync::Arc;
use std::time::Duration;

use herald_ingest::{FanOut, Fanned};
use herald_shared::db::{campaigns, messages};
use herald_shared::domain::{CampaignId, CampaignState, MessageId, MessageStatus, NumberId};
use herald_shared::settings::IngestSettings;
use herald_shared::stream::{Entry, Keys, conn::entry_field};
use herald_tests::{
    TestContext, assert_counters_match, eventually, seed_campaign, seed_campaign_over, set_status,
    status_of,
};
use redis::AsyncCommands;
use sqlx::PgPool;

/// A fan-out over the test's database and Redis with pages of at most `batch` messages and
/// streams `window` entries long.
async fn fan_out(ctx: &TestContext, batch: i64, window: usize) -> FanOut {
    let settings = IngestSettings {
        fanout_batch: batch,
        fanout_window: window,
        ..ctx.settings.ingest.clone()
    };
    FanOut::new(
        ctx.pool.clone(),
        ctx.redis().await,
        Keys::new(ctx.settings.redis.key_prefix.clone()),
        &settings,
        Arc::new(tokio::sync::Notify::new()),
    )
}

async fn start(pool: &PgPool, campaign: CampaignId) {
    let tenant = sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(
        campaigns::transition_campaign(
            pool,
            tenant,
            campaign,
            &[CampaignState::Draft],
            CampaignState::Running
        )
        .await
        .unwrap()
    );
}

/// Adds `n` recipients to `campaign` (ids after every message so far, of any campaign).
async fn add_recipients(pool: &PgPool, campaign: CampaignId, tag: &str, n: usize) {
    let number = campaigns::campaign_numbers(pool, campaign).await.unwrap()[0];
    let rows: Vec<messages::NewMessage> = (0..n)
        .map(|i| messages::NewMessage {
            template: 0,
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
    redis: &mut herald_shared::stream::Connection,
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
    // already: with pages of 4, some pages' spans of ids hold nothing of A's to send.
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
    start(&ctx.pool, a).await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut fan_out = fan_out(&ctx, 4, 1000).await;
    assert_eq!(
        fan_out.process_running().await.unwrap(),
        Fanned {
            queued: 8,
            held: false
        }
    );

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
    assert_eq!(fan_out.process_running().await.unwrap().queued, 3);
    let a_ids = message_ids(&ctx.pool, a).await;
    assert_eq!(
        streamed(&mut redis, &keys, a_number).await,
        a_ids[4..].to_vec()
    );
    assert_counters_match(&ctx.pool, a).await;
    ctx.cleanup().await;
}

/// Takes up to `n` entries off the front of a number's stream, as its sender would once they
/// are sent and recorded; returns their messages.
async fn drain(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    number: NumberId,
    n: usize,
) -> Vec<MessageId> {
    let reply: redis::streams::StreamRangeReply = redis
        .xrange_count(keys.stream(number), "-", "+", n)
        .await
        .unwrap();
    let ids: Vec<&str> = reply.ids.iter().map(|e| e.id.as_str()).collect();
    if !ids.is_empty() {
        let _: () = redis.xdel(keys.stream(number), &ids).await.unwrap();
    }
    reply
        .ids
        .iter()
        .map(|e| Entry::decode(entry_field(e, "e").unwrap()).unwrap().message)
        .collect()
}

async fn ids_of(pool: &PgPool, campaign: CampaignId, number: NumberId) -> Vec<MessageId> {
    sqlx::query_scalar(
        "SELECT id FROM messages WHERE campaign_id = $1 AND sender_number_id = $2 ORDER BY id",
    )
    .bind(campaign)
    .bind(number)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_stream_stays_within_its_window_and_a_number_that_does_not_drain_holds_back_no_other()
{
    let ctx = TestContext::new().await;
    let (campaign, numbers) = seed_campaign_over(&ctx, 2, 60).await;
    let (fast, stuck) = (numbers[0], numbers[1]);
    start(&ctx.pool, campaign).await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = ctx.redis().await;
    let mut fan_out = fan_out(&ctx, 4, 10).await;

    // Each number's stream fills to its window, or nearly (fan-out tops a stream up by pages
    // of at least 4 here), and the rest waits in Postgres.
    let fanned = fan_out.process_running().await.unwrap();
    assert!(fanned.held);
    let mut lengths = Vec::new();
    for number in [fast, stuck] {
        let length: u64 = redis.xlen(keys.stream(number)).await.unwrap();
        assert!(
            (7..=10).contains(&length),
            "{length} entries in a window of 10"
        );
        lengths.push(length);
    }
    assert_eq!(fanned.queued, lengths.iter().sum::<u64>());

    // One number's sender drains its stream a few entries at a time; the other never does.
    // The first is topped up after each pass, in order, until its every message went out.
    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.extend(drain(&mut redis, &keys, fast, 3).await);
        let fanned = fan_out.process_running().await.unwrap();
        assert!(fanned.held, "the stuck number's stream stays full");
        let length: usize = redis.xlen(keys.stream(fast)).await.unwrap();
        assert!(length <= 10, "{length} entries in a window of 10");
    }
    sent.extend(drain(&mut redis, &keys, fast, 100).await);
    assert_eq!(sent, ids_of(&ctx.pool, campaign, fast).await);
    let stuck_ids = ids_of(&ctx.pool, campaign, stuck).await;
    let held = lengths[1] as usize;
    assert_eq!(
        streamed(&mut redis, &keys, stuck).await,
        stuck_ids[..held].to_vec()
    );
    for &id in &stuck_ids[held..] {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Pending);
    }
    assert_counters_match(&ctx.pool, campaign).await;

    // Once the stuck number drains, the rest of its share follows.
    let mut rest = drain(&mut redis, &keys, stuck, 100).await;
    for _ in 0..5 {
        fan_out.process_running().await.unwrap();
        rest.extend(drain(&mut redis, &keys, stuck, 100).await);
    }
    assert_eq!(rest, stuck_ids);
    ctx.cleanup().await;
}

/// A page is `queued` only once it is in its stream: a page the stream refuses (it lost
/// entries, and appending more would hide that) is left `pending`, and the counters with it.
#[tokio::test]
async fn a_page_its_stream_refuses_stays_pending() {
    let ctx = TestContext::new().await;
    let (campaign, _) = seed_campaign(&ctx, 4).await;
    start(&ctx.pool, campaign).await;
    let mut fan_out = fan_out(&ctx, 4, 1000).await;
    assert_eq!(fan_out.process_running().await.unwrap().queued, 4);
    // Redis loses the stream and its record of what was appended; more recipients arrive.
    let mut redis = ctx.redis().await;
    herald_shared::stream::admin::delete_prefixed(&mut redis, &ctx.settings.redis.key_prefix)
        .await
        .unwrap();
    add_recipients(&ctx.pool, campaign, "5", 3).await;
    assert_eq!(fan_out.process_running().await.unwrap().queued, 0);
    let ids = message_ids(&ctx.pool, campaign).await;
    assert_eq!(ids.len(), 7);
    for &id in &ids[4..] {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Pending);
    }
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

/// A Redis restarted (or new) since fan-out last ran lacks the stream's script: it is loaded
/// again, and every message is appended once.
#[tokio::test]
async fn a_page_is_appended_once_after_redis_forgot_the_fan_out_script() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 6).await;
    let number = campaigns::campaign_numbers(&ctx.pool, campaign)
        .await
        .unwrap()[0];
    start(&ctx.pool, campaign).await;
    let mut redis = ctx.redis().await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut fan_out = fan_out(&ctx, 100, 1000).await;
    assert_eq!(fan_out.process_running().await.unwrap().queued, 6);
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    assert_eq!(streamed(&mut redis, &keys, number).await, ids);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

/// A page holds up to `batch` of its number's messages however the campaign's ids interleave
/// among its numbers: with ten numbers taking turns, a page bounded by `batch` ids would hold
/// one message of its number, and a campaign over many numbers would cost a page (and its
/// statements) per message or two.
#[tokio::test]
async fn a_page_holds_a_batch_of_its_numbers_messages_among_many_numbers_ids() {
    let ctx = TestContext::new().await;
    let (campaign, numbers) = seed_campaign_over(&ctx, 10, 200).await;
    start(&ctx.pool, campaign).await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = ctx.redis().await;
    let mut fan_out = fan_out(&ctx, 8, 1000).await;

    assert_eq!(fan_out.process_running().await.unwrap().queued, 200);
    for &number in &numbers {
        let ids = ids_of(&ctx.pool, campaign, number).await;
        assert_eq!(ids.len(), 20);
        assert_eq!(streamed(&mut redis, &keys, number).await, ids);
        let pages: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM fanout_pages WHERE campaign_id = $1 AND sender_number_id = $2",
        )
        .bind(campaign)
        .bind(number)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
        assert_eq!(pages, 3, "20 messages in pages of 8, 8 and 4");
    }
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

/// Recording a page waits for its lane's lock, which the recorder's transactions hold shared;
/// one lane's wait holds back no other lane's page.
#[tokio::test]
async fn a_lane_whose_lock_is_held_holds_back_no_other_lanes_page() {
    let ctx = TestContext::new().await;
    let (campaign, _) = seed_campaign_over(&ctx, 2, 10).await;
    start(&ctx.pool, campaign).await;
    let lanes = campaigns::fanout_lanes(&ctx.pool, campaign).await.unwrap();
    let (first, second) = (lanes[0].number, lanes[1].number);
    // A recorder's transaction, as it holds the first lane (the first fan-out comes to).
    let mut recorder = ctx.pool.begin().await.unwrap();
    sqlx::query(
        "SELECT 1 FROM campaign_numbers WHERE campaign_id = $1 AND sender_number_id = $2 FOR SHARE",
    )
    .bind(campaign)
    .bind(first)
    .execute(&mut *recorder)
    .await
    .unwrap();
    let mut fan_out = fan_out(&ctx, 100, 1000).await;
    let pass = tokio::spawn(async move { fan_out.process_running().await.unwrap() });

    let second_ids = ids_of(&ctx.pool, campaign, second).await;
    eventually(
        "the second lane's page recorded",
        Duration::from_secs(10),
        || async {
            let statuses = messages::statuses(&ctx.pool, &second_ids).await.unwrap();
            statuses
                .iter()
                .all(|(_, s)| *s == MessageStatus::Queued)
                .then_some(())
        },
    )
    .await;
    assert!(
        !pass.is_finished(),
        "the first lane's page waits for its lock"
    );
    for id in ids_of(&ctx.pool, campaign, first).await {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Pending);
    }

    recorder.commit().await.unwrap();
    assert_eq!(pass.await.unwrap().queued, 10);
    for id in ids_of(&ctx.pool, campaign, first).await {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Queued);
    }
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}
