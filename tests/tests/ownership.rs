//! Several senders: each number is leased by one of them, and the numbers move when a
//! sender leaves.

use herald::fixtures;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::domain::NumberId;
use herald_shared::stream::Keys;
use herald_tests::{TestContext, assert_counters_match, eventually};
use redis::AsyncCommands;

const SENDER_ONLY: Roles = Roles {
    ingest: false,
    sender: true,
    webhook: false,
    simulator: false,
};

/// Each number's lease holder (the consumer name before the fencing token).
async fn holders(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    numbers: &[NumberId],
) -> BTreeMap<NumberId, Option<String>> {
    let mut out = BTreeMap::new();
    for n in numbers {
        let value: Option<String> = redis.get(keys.lease(*n)).await.unwrap();
        out.insert(
            *n,
            value.and_then(|v| v.rsplit_once(':').map(|(o, _)| o.to_owned())),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_split_the_numbers_and_one_takes_all_when_the_other_stops() {
    let ctx = TestContext::new().await;
    let first = ctx.start_stack().await;
    let mut settings = first.settings.clone();
    settings.whatsapp.base_url = first.simulator_url.clone();
    let second = Stack::start(settings, SENDER_ONLY).await.unwrap();

    let api = ctx.tenant(&first.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..4 {
        numbers.push(
            api.create_number(&format!("40000000000{i}"), "t", 200)
                .await
                .unwrap()
                .id,
        );
    }
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;

    // Both senders heartbeat, so each holds a share of two.
    let split = eventually(
        "the numbers split two and two",
        Duration::from_secs(20),
        || {
            let (mut redis, keys, numbers) = (redis.clone(), &keys, &numbers);
            async move {
                let h = holders(&mut redis, keys, numbers).await;
                let owners: BTreeSet<_> = h.values().flatten().cloned().collect();
                let each = owners
                    .iter()
                    .map(|o| h.values().flatten().filter(|v| *v == o).count());
                (h.values().all(Option::is_some)
                    && owners.len() == 2
                    && each.clone().all(|c| c == 2))
                .then_some(owners)
            }
        },
    )
    .await;
    assert_eq!(split.len(), 2);

    let campaign = fixtures::campaign(&api, "split", &numbers, 400)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message read", Duration::from_secs(60), || async {
        (api.campaign(campaign.id).await.unwrap().counters.read == 400).then_some(())
    })
    .await;
    let stats = herald_tests::simulator_stats(&first.simulator_url).await;
    assert_eq!((stats.accepted_total, stats.duplicate_recipients), (400, 0));

    // The second sender leaves: it releases its leases and the first takes every number.
    second.stop().await.unwrap();
    let remaining = eventually("one sender holds all four", Duration::from_secs(20), || {
        let (mut redis, keys, numbers) = (redis.clone(), &keys, &numbers);
        async move {
            let h = holders(&mut redis, keys, numbers).await;
            let owners: BTreeSet<_> = h.values().flatten().cloned().collect();
            (h.values().all(Option::is_some) && owners.len() == 1).then_some(owners)
        }
    })
    .await;
    assert!(split.is_superset(&remaining));
    assert_counters_match(&ctx.pool, campaign.id).await;
    first.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_leaving_on_purpose_hands_its_unsent_entries_straight_to_the_next() {
    let ctx = TestContext::new().await;
    // The reconciliation window is longer than the test's deadline: had the next owner taken
    // any entry for ambiguous, the campaign could not finish in time.
    let mut settings = ctx.settings.clone();
    settings.sender.reconciliation_window_ms = 120_000;
    let roles = Roles::INGEST_AND_WEBHOOK;
    let world = Stack::start(settings.clone(), roles).await.unwrap();
    settings.whatsapp.base_url = world.simulator_url.clone();
    let leaving = Stack::start(settings.clone(), SENDER_ONLY).await.unwrap();
    let api = ctx.tenant(&world.ingest_url).await;
    let number = api.create_number("400000000009", "t", 20).await.unwrap().id;
    let campaign = fixtures::campaign(&api, "handover", &[number], 200)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("some sent", Duration::from_secs(20), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.total - c.pending - c.queued >= 30).then_some(())
    })
    .await;
    // It has read every entry (one read of up to 256) but sent only some.
    leaving.stop().await.unwrap();
    let c = api.campaign(campaign.id).await.unwrap().counters;
    assert!(c.queued > 100, "most were left to the next sender: {c:?}");
    let staying = Stack::start(settings, SENDER_ONLY).await.unwrap();
    eventually("every message sent", Duration::from_secs(40), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.pending + c.queued == 0).then_some(())
    })
    .await;
    let stats = herald_tests::simulator_stats(&world.simulator_url).await;
    assert_eq!((stats.accepted_total, stats.duplicate_recipients), (200, 0));
    assert_counters_match(&ctx.pool, campaign.id).await;
    staying.stop().await.unwrap();
    world.stop().await.unwrap();
    ctx.cleanup().await;
}

/// A sender that is stopping takes no lease: the numbers whose workers it stopped are released
/// and left for the next owner, not leased again (each time with a new fencing token) in the
/// moments before the process ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_sender_releases_its_numbers_and_takes_none_again() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    // Rounds of balancing as often as they may go (every 50 ms), so that the stop is likely
    // to come while one is under way, and find workers that ended meanwhile.
    settings.sender.discovery_interval_ms = 1;
    let world = Stack::start(settings.clone(), Roles::INGEST_AND_WEBHOOK)
        .await
        .unwrap();
    settings.whatsapp.base_url = world.simulator_url.clone();
    let sender = Stack::start(settings, SENDER_ONLY).await.unwrap();
    let api = ctx.tenant(&world.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..12 {
        let phone = format!("4000000001{i:02}");
        numbers.push(api.create_number(&phone, "t", 80).await.unwrap().id);
    }
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    eventually("every number leased", Duration::from_secs(20), || {
        let (mut redis, keys, numbers) = (redis.clone(), &keys, &numbers);
        async move {
            let h = holders(&mut redis, keys, numbers).await;
            h.values().all(Option::is_some).then_some(())
        }
    })
    .await;
    let fences = |mut redis: herald_shared::stream::Connection| {
        let (keys, numbers) = (&keys, &numbers);
        async move {
            let mut out = Vec::new();
            for n in numbers {
                let fence: Option<i64> = redis.get(&keys.number(*n).fence).await.unwrap();
                out.push(fence);
            }
            out
        }
    };
    let before = fences(redis.clone()).await;
    sender.stop().await.unwrap();
    let mut after_redis = redis.clone();
    let left = holders(&mut after_redis, &keys, &numbers).await;
    assert!(
        left.values().all(Option::is_none),
        "every lease released: {left:?}"
    );
    assert_eq!(
        fences(redis.clone()).await,
        before,
        "no number leased again while stopping"
    );
    world.stop().await.unwrap();
    ctx.cleanup().await;
}
