//! Sender processes killed with SIGKILL in the middle of a campaign: nothing is lost, nothing
//! is sent twice (the receipts arrive within the reconciliation window), and the dead
//! sender's numbers are taken over within seconds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald::stack::{Roles, Stack};
use herald_shared::domain::{MessageStatus, NumberId};
use herald_shared::stream::Keys;
use herald_tests::{TestContext, assert_counters_match, eventually, recipients};
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

const NUMBERS: usize = 4;
const RECIPIENTS: usize = 4000;
const KILLS: usize = 3;

/// A `herald sender` process named `consumer`, sending to `cloud_api`.
fn spawn_sender(ctx: &TestContext, consumer: &str, cloud_api: &str) -> Child {
    let s = &ctx.settings;
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("sender")
        .env(
            "HERALD_CONFIG_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config"),
        )
        .env("HERALD_ENV", "test")
        .env("HERALD__DATABASE__URL", s.database.url.expose_secret())
        .env("HERALD__REDIS__URL", s.redis.url.expose_secret())
        .env("HERALD__REDIS__KEY_PREFIX", &s.redis.key_prefix)
        .env("HERALD__WHATSAPP__BASE_URL", cloud_api)
        .env("HERALD__SENDER__CONSUMER", consumer)
        .env("HERALD__SENDER__IN_FLIGHT", "16")
        .env("HERALD__SENDER__RECONCILIATION_WINDOW_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary starts")
}

/// Each number's lease holder.
async fn holders(
    redis: &mut redis::aio::ConnectionManager,
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
async fn killing_senders_mid_campaign_loses_nothing_and_sends_nothing_twice() {
    let ctx = TestContext::new().await;
    let roles = Roles {
        ingest: true,
        sender: false,
        webhook: true,
        simulator: true,
    };
    let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
    // A little latency, so that sends are in flight when a sender dies.
    reqwest::Client::new()
        .post(format!("{}/sim/config", stack.simulator_url))
        .json(&serde_json::json!({"latency": {"kind": "fixed", "ms": 10}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..NUMBERS {
        numbers.push(
            api.create_number(&format!("80000000000{i}"), "t", 250)
                .await
                .unwrap()
                .id,
        );
    }
    let campaign = api
        .create_campaign("kill -9", "spring_sale_2026", "en_GB", &numbers)
        .await
        .unwrap();
    api.upload(campaign.id, &recipients(RECIPIENTS))
        .await
        .unwrap();

    let mut senders = [
        (
            "a".to_owned(),
            0,
            spawn_sender(&ctx, "a-0", &stack.simulator_url),
        ),
        (
            "b".to_owned(),
            0,
            spawn_sender(&ctx, "b-0", &stack.simulator_url),
        ),
    ];
    api.start(campaign.id).await.unwrap();

    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let redis = ctx.redis().await;
    let mut takeovers = Vec::new();
    for kill in 0..KILLS {
        let progress = (kill + 1) * RECIPIENTS / (KILLS + 2);
        eventually(
            "progress before the kill",
            Duration::from_secs(60),
            || async {
                let c = api.campaign(campaign.id).await.unwrap().counters;
                (c.total - c.pending - c.queued >= progress as i64).then_some(())
            },
        )
        .await;
        let (name, generation, child) = &mut senders[kill % 2];
        let dead = format!("{name}-{generation}");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let killed_at = Instant::now();
        *generation += 1;
        *child = spawn_sender(&ctx, &format!("{name}-{generation}"), &stack.simulator_url);
        // Every number is held again, by a live sender.
        eventually(
            "the dead sender's numbers taken over",
            Duration::from_secs(10),
            || {
                let (mut redis, keys, numbers, dead) = (redis.clone(), &keys, &numbers, &dead);
                async move {
                    let h = holders(&mut redis, keys, numbers).await;
                    h.iter()
                        .all(|o| o.as_ref().is_some_and(|o| o != dead))
                        .then_some(())
                }
            },
        )
        .await;
        takeovers.push(killed_at.elapsed());
    }

    eventually("every message read", Duration::from_secs(120), || async {
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
    eprintln!("takeovers after each kill: {takeovers:?}");
    for t in &takeovers {
        assert!(*t < Duration::from_secs(5), "takeovers: {takeovers:?}");
    }
    for (_, _, child) in &mut senders {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
