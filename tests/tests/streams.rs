//! The stream protocol's scripts, against a real Redis.

use herald_shared::domain::{CampaignId, MessageId, NumberId};
use std::sync::Arc;

use herald_shared::stream::fanout::Expect;
use herald_shared::stream::{Entry, Keys, NumberQueue, fanout};
use herald_tests::TestContext;
use redis::AsyncCommands;

fn entry(id: i64, campaign: CampaignId) -> Entry {
    Entry {
        message: MessageId(id),
        campaign,
        attempt: 0,
        recipient: format!("+44740000{id:04}"),
        payload: bytes::Bytes::from(format!("{{\"to\":\"+44740000{id:04}\"}}")),
    }
}

async fn fan_out(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    number: NumberId,
    campaign: CampaignId,
    ids: std::ops::RangeInclusive<i64>,
) -> i64 {
    fan_out_expecting(redis, keys, number, campaign, Expect::default(), ids)
        .await
        .expect("nothing lost") as i64
}

async fn fan_out_expecting(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    number: NumberId,
    campaign: CampaignId,
    expect: Expect,
    ids: std::ops::RangeInclusive<i64>,
) -> Option<usize> {
    let entries: Vec<Entry> = ids.map(|id| entry(id, campaign)).collect();
    fanout::append(
        redis,
        keys,
        &keys.number(number),
        campaign,
        expect,
        &entries,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn repeating_a_fan_out_after_a_crash_appends_nothing_twice() {
    let ctx = TestContext::new().await;
    let mut redis = ctx.redis().await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let number = NumberId::new();
    let (first, second) = (CampaignId::new(), CampaignId::new());
    assert_eq!(fan_out(&mut redis, &keys, number, first, 1..=10).await, 10);
    // The same page again (the crash came before the messages were marked queued), then a
    // page that overlaps it.
    assert_eq!(fan_out(&mut redis, &keys, number, first, 1..=10).await, 0);
    assert_eq!(fan_out(&mut redis, &keys, number, first, 6..=15).await, 5);
    // Another campaign on the same number keeps its own place.
    assert_eq!(fan_out(&mut redis, &keys, number, second, 1..=3).await, 3);
    let len: usize = redis.xlen(keys.stream(number)).await.unwrap();
    assert_eq!(len, 18);
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_stream_that_lost_entries_takes_none_until_repaired() {
    let ctx = TestContext::new().await;
    let mut redis = ctx.redis().await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let (number, campaign) = (NumberId::new(), CampaignId::new());
    let lane = [(number, campaign)];
    assert_eq!(
        fan_out(&mut redis, &keys, number, campaign, 1..=10).await,
        10
    );
    assert_eq!(
        fanout::appended(&mut redis, &keys, &lane).await.unwrap(),
        [10]
    );
    // Postgres knows 1..=10 were appended; Redis loses them.
    herald_shared::stream::admin::delete_prefixed(&mut redis, keys.prefix())
        .await
        .unwrap();
    assert_eq!(
        fanout::appended(&mut redis, &keys, &lane).await.unwrap(),
        [0]
    );
    let next = Expect {
        appended: 10,
        raise_to: 0,
    };
    assert_eq!(
        fan_out_expecting(&mut redis, &keys, number, campaign, next, 11..=12).await,
        None,
        "appending the next page would hide the loss"
    );
    let len: usize = redis.xlen(keys.stream(number)).await.unwrap();
    assert_eq!(len, 0);
    // The repair appends the lost ones still unsent, a page at a time, raising the stream's
    // record to each page's end; repeated, it appends nothing twice.
    for _ in 0..2 {
        for (page, through) in [([2, 3], 5), ([7, 9], 10)] {
            let entries: Vec<Entry> = page.iter().map(|id| entry(*id, campaign)).collect();
            let expect = Expect {
                appended: 0,
                raise_to: through,
            };
            fanout::append(
                &mut redis,
                &keys,
                &keys.number(number),
                campaign,
                expect,
                &entries,
            )
            .await
            .unwrap()
            .unwrap();
        }
    }
    let len: usize = redis.xlen(keys.stream(number)).await.unwrap();
    assert_eq!(len, 4);
    assert_eq!(
        fan_out_expecting(&mut redis, &keys, number, campaign, next, 11..=12).await,
        Some(2)
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn fencing_tokens_keep_rising_after_redis_loses_the_counter() {
    use herald_shared::stream::lease::{self, Acquired};
    let ctx = TestContext::new().await;
    let mut redis = ctx.redis().await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let number = keys.number(NumberId::new());
    let ttl = std::time::Duration::from_secs(5);
    let conn = redis.clone();
    let take = |floor| {
        let (mut redis, number) = (conn.clone(), number.clone());
        async move {
            lease::acquire(&mut redis, &number, "s1", ttl, floor)
                .await
                .unwrap()
        }
    };
    // No counter yet: the highest token Postgres recorded is asked for first.
    assert_eq!(take(None).await, Acquired::NeedsFloor);
    assert_eq!(take(Some(0)).await, Acquired::Taken(1));
    assert_eq!(take(None).await, Acquired::Held);
    let _: () = redis.del(&number.lease).await.unwrap();
    assert_eq!(take(None).await, Acquired::Taken(2));
    // Redis loses everything; Postgres recorded 2.
    herald_shared::stream::admin::delete_prefixed(&mut redis, keys.prefix())
        .await
        .unwrap();
    assert_eq!(take(None).await, Acquired::NeedsFloor);
    assert_eq!(take(Some(2)).await, Acquired::Taken(3));
    ctx.cleanup().await;
}

#[tokio::test]
async fn due_retries_move_to_the_stream_and_later_ones_stay() {
    let ctx = TestContext::new().await;
    let mut redis = ctx.redis().await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let number = NumberId::new();
    let campaign = CampaignId::new();
    let now = 1_000_000i64;
    for (id, due) in [(1, now - 10), (2, now), (3, now + 10)] {
        let _: () = redis
            .zadd(keys.retry(number), entry(id, campaign).encode(), due)
            .await
            .unwrap();
    }
    let mut queue = NumberQueue::new(Arc::new(keys.number(number)), redis.clone());
    let moved = queue.promote_due(now, 100).await.unwrap();
    assert_eq!(moved, 2);
    let left: usize = redis.zcard(keys.retry(number)).await.unwrap();
    assert_eq!(left, 1);
    let reply: redis::streams::StreamRangeReply =
        redis.xrange_all(keys.stream(number)).await.unwrap();
    let moved: Vec<i64> = reply
        .ids
        .iter()
        .map(|e| {
            let raw = herald_shared::stream::conn::entry_field(e, "e").unwrap();
            Entry::decode(raw).unwrap().message.0
        })
        .collect();
    assert_eq!(moved, vec![1, 2]);
    ctx.cleanup().await;
}
