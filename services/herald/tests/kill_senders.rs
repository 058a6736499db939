//! Three sender processes share a campaign of 20 numbers and one of them is killed with
//! SIGKILL five times in the middle of it (issue #4, acceptance 2 and 3): nothing is lost,
//! nothing is sent twice (the receipts arrive within the reconciliation window), no number is
//! ever sent for by two owners at once (the simulator checks each send's fencing token), and
//! the dead sender's numbers send again within seconds.

use herald::fixtures;
use std::time::{Duration, Instant};

use herald::stack::{Roles, Stack};
use herald_shared::domain::{MessageStatus, NumberId};
use herald_shared::stream::Keys;
use herald_tests::{TestContext, assert_counters_match, eventually};
use redis::AsyncCommands;
use tokio::process::Child;

const NUMBERS: usize = 20;
const RECIPIENTS: usize = 50_000;
const KILLS: usize = 5;
const SENDERS: usize = 3;

fn phone(i: usize) -> String {
    format!("8000000000{i:02}")
}

/// A `herald sender` process named `consumer`, sending to `cloud_api`.
fn spawn_sender(ctx: &TestContext, consumer: &str, cloud_api: &str) -> Child {
    ctx.herald_command(env!("CARGO_BIN_EXE_herald"), "sender")
        .env("HERALD__WHATSAPP__BASE_URL", cloud_api)
        .env("HERALD__SENDER__CONSUMER", consumer)
        .env("HERALD__SENDER__IN_FLIGHT", "16")
        .env("HERALD__SENDER__RECONCILIATION_WINDOW_MS", "15000")
        .spawn()
        .expect("the herald binary starts")
}

/// Entries of `number`'s stream no sender has read.
async fn unread(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    number: NumberId,
) -> u64 {
    let stream = keys.stream(number);
    let length: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(redis)
        .await
        .unwrap();
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(herald_shared::stream::SENDER_GROUP)
        .query_async(redis)
        .await
        .unwrap();
    length.saturating_sub(pending.count() as u64)
}

/// Each number's lease holder.
async fn holders(
    redis: &mut herald_shared::stream::Connection,
    keys: &Keys,
    numbers: &[NumberId],
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for n in numbers {
        let value: Option<String> = redis.get(keys.lease(*n)).await.unwrap();
        out.push(value.and_then(|v| v.rsplit_once(':').map(|(o, _)| o.to_owned())));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kills_among_three_senders_of_20_numbers_lose_nothing_and_send_nothing_twice() {
    let ctx = TestContext::new().await;
    let roles = Roles {
        ingest: true,
        sender: false,
        webhook: true,
        simulator: true,
    };
    let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
    // A little latency, so that sends are in flight when a sender dies.
    herald_tests::configure_simulator(
        &stack,
        serde_json::json!({"latency": {"kind": "fixed", "ms": 10}}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..NUMBERS {
        numbers.push(api.create_number(&phone(i), "t", 250).await.unwrap().id);
    }
    let campaign = fixtures::campaign(&api, "kill -9", &numbers, RECIPIENTS)
        .await
        .unwrap();

    let mut senders: Vec<(String, usize, Child)> = (0..SENDERS)
        .map(|i| {
            let name = format!("s{i}");
            let child = spawn_sender(&ctx, &format!("{name}-0"), &stack.simulator_url);
            (name, 0, child)
        })
        .collect();
    api.start(campaign.id).await.unwrap();

    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    let mut resumed = Vec::new();
    for kill in 0..KILLS {
        let progress = (kill + 1) * RECIPIENTS / (KILLS + 2);
        eventually(
            "progress before the kill",
            Duration::from_secs(120),
            || async {
                let c = api.campaign(campaign.id).await.unwrap().counters;
                (c.total - c.pending - c.queued >= progress as i64).then_some(())
            },
        )
        .await;
        let (name, generation, child) = &mut senders[kill % SENDERS];
        let dead = format!("{name}-{generation}");
        let held = holders(&mut redis.clone(), &keys, &numbers).await;
        let held_by_dead: Vec<usize> = (0..NUMBERS)
            .filter(|i| held[*i].as_deref() == Some(dead.as_str()))
            .collect();
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let killed_at = Instant::now();
        // A number whose stream holds nothing but what the dead sender had read can only send
        // those again after the reconciliation window: the ones with unread entries must send
        // at once.
        let mut victims = Vec::new();
        for i in &held_by_dead {
            if unread(&mut redis.clone(), &keys, numbers[*i]).await > 0 {
                victims.push(phone(*i));
            }
        }
        let before = herald_tests::simulator_stats(&stack.simulator_url)
            .await
            .accepted;
        *generation += 1;
        *child = spawn_sender(&ctx, &format!("{name}-{generation}"), &stack.simulator_url);
        // Each of the dead sender's numbers sends again, for a live sender.
        eventually(
            "the dead sender's numbers sending again",
            Duration::from_secs(20),
            || {
                let (victims, before, url) = (&victims, &before, &stack.simulator_url);
                async move {
                    let now = herald_tests::simulator_stats(url).await.accepted;
                    victims
                        .iter()
                        .all(|p| now.get(p) > before.get(p))
                        .then_some(())
                }
            },
        )
        .await;
        resumed.push((held_by_dead.len(), victims.len(), killed_at.elapsed()));
    }

    eventually("every message read", Duration::from_secs(300), || async {
        (api.campaign(campaign.id).await.unwrap().counters.read == RECIPIENTS as i64).then_some(())
    })
    .await;
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
        .await
        .unwrap();
    assert_eq!(statuses, vec![(MessageStatus::Read, RECIPIENTS as i64)]);
    assert_counters_match(&ctx.pool, campaign.id).await;
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    assert_eq!(stats.duplicate_recipients, 0, "sent twice: {stats:?}");
    assert_eq!(stats.accepted_total, RECIPIENTS as u64);
    assert_eq!(stats.fence_violations, 0, "a number had two owners at once");
    assert!(
        stats.fences.values().all(|f| *f > 1),
        "every number changed hands at least once: {:?}",
        stats.fences
    );
    eprintln!(
        "(numbers of the dead sender, those with unread entries, time until they all sent again) \
         per kill: {resumed:?}"
    );
    for (held, _, t) in &resumed {
        assert!(*held > 0, "each killed sender held numbers: {resumed:?}");
        assert!(*t < Duration::from_secs(5), "resumed: {resumed:?}");
    }
    for (_, _, child) in &mut senders {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
