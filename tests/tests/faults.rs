//! The fault suite: a campaign under way through every role, a fault in the middle of it, and
//! then, for each fault: every message at a final status, the counters equal to a `GROUP BY`,
//! the campaign completed, and no recipient sent twice beyond the sends in flight when the
//! fault came (the simulator counts them; each test reports what it saw, and the test command
//! prints the report).

use std::collections::HashSet;
use std::time::Duration;

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::domain::{CampaignId, CampaignState, MessageStatus};
use herald_shared::stream::Keys;
use herald_tests::{
    PrivatePostgres, PrivateRedis, TestContext, assert_counters_match, configure_simulator,
    eventually, recipients,
};
use serde_json::json;

/// Recipients per campaign, and the number's rate: about ten seconds of sending.
const RECIPIENTS: usize = 1_000;
const RATE: u32 = 100;

/// A running campaign of `RECIPIENTS` on one number.
async fn under_way(ctx: &TestContext, stack: &Stack) -> (ApiClient, CampaignId) {
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_number("100000000001", "token", RATE)
        .await
        .unwrap();
    changed_hands(stack, number.id).await;
    let campaign = api
        .create_campaign("faults", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    let report = api
        .upload(campaign.id, &recipients(RECIPIENTS))
        .await
        .unwrap();
    assert_eq!(report.accepted, RECIPIENTS as i64);
    api.start(campaign.id).await.unwrap();
    (api, campaign.id)
}

/// A connection to the stack's Redis, and its deployment's keys.
async fn redis_of(stack: &Stack) -> (herald_shared::stream::Connection, Keys) {
    let settings = &stack.settings.redis;
    let conn = herald_shared::stream::conn::connect(settings, None)
        .await
        .unwrap();
    (conn, Keys::new(settings.key_prefix.clone()))
}

/// Makes the number's lease change hands as if 41 owners had held it: its sends then carry
/// fencing token 42, and a token that started again from 1 after Redis lost its data would
/// show as a send by an owner that had lost the number.
async fn changed_hands(stack: &Stack, number: herald_shared::domain::NumberId) {
    use redis::AsyncCommands;
    let (conn, keys) = redis_of(stack).await;
    let keys = keys.number(number);
    let held_with = |fence: Option<&'static str>| {
        let (mut conn, lease) = (conn.clone(), keys.lease.clone());
        async move {
            let value: Option<String> = conn.get(lease).await.ok()?;
            value.filter(|v| fence.is_none_or(|f| v.ends_with(f)))
        }
    };
    eventually(
        "the sender holds the number",
        Duration::from_secs(10),
        || held_with(None),
    )
    .await;
    let mut c = conn.clone();
    let _: () = redis::pipe()
        .set(&keys.fence, 41)
        .del(&keys.lease)
        .query_async(&mut c)
        .await
        .unwrap();
    eventually(
        "the sender holds the number again",
        Duration::from_secs(10),
        || held_with(Some(":42")),
    )
    .await;
}

/// Waits until `n` of the campaign's messages were sent (or went further).
async fn sent_at_least(ctx: &TestContext, campaign: CampaignId, n: i64) {
    eventually(
        "the campaign under way",
        Duration::from_secs(30),
        || async {
            let sent: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM messages WHERE campaign_id = $1
               AND status IN ('sent', 'delivered', 'read', 'failed')",
            )
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .ok()?;
            (sent >= n).then_some(())
        },
    )
    .await;
}

/// Every role and the simulator, on the private `redis`.
async fn stack_on(ctx: &TestContext, redis: &PrivateRedis) -> Stack {
    let mut settings = ctx.settings.clone();
    redis.configure(&mut settings.redis);
    Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap()
}

/// The campaign's lanes under repair (Redis lost their entries and they are not yet appended
/// again).
async fn open_repairs(ctx: &TestContext, campaign: CampaignId) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM campaign_numbers WHERE campaign_id = $1 AND repair_since IS NOT NULL",
    )
    .bind(campaign)
    .fetch_one(&ctx.pool)
    .await
    .unwrap()
}

/// Adds a line to the fault report, which `scripts/test.sh` prints once every test has run
/// (a passing test's own output is not shown).
fn report(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-report.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("the fault report opens");
    writeln!(file, "{line}").expect("the fault report is written");
}

/// Waits until every role's `/readyz` answers `status` (the sender's is on its metrics port).
async fn every_role_ready(stack: &Stack, ready: bool) {
    let want = if ready { 200 } else { 503 };
    let client = reqwest::Client::new();
    let sender = stack.sender_metrics_url.trim_end_matches("/metrics");
    eventually("readiness as expected", Duration::from_secs(30), || async {
        for base in [&stack.ingest_url, &stack.webhook_url, sender] {
            let status = client
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?
                .status();
            if status != want {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// The receipts in the webhook bodies Redis was holding (buffered, not yet acknowledged) when
/// it lost its data. Meta does not send an acknowledged body again, so these statuses never
/// arrive: their messages may stay `sent` or `delivered` (see the README's Failure modes).
#[derive(Debug, Default)]
struct Unheard {
    /// Message ids, from `biz_opaque_callback_data`.
    messages: HashSet<i64>,
    wamids: HashSet<String>,
    receipts: usize,
}

impl Unheard {
    fn of(bodies: &[Vec<u8>]) -> Self {
        let mut unheard = Self::default();
        for body in bodies {
            let notification: herald_shared::whatsapp::webhook::Notification =
                serde_json::from_slice(body).expect("the simulator's webhook bodies parse");
            for (_, status) in notification.statuses() {
                unheard.receipts += 1;
                unheard.wamids.insert(status.id.clone());
                let id = status.biz_opaque_callback_data.as_deref();
                unheard
                    .messages
                    .extend(id.and_then(|id| id.parse::<i64>().ok()));
            }
        }
        unheard
    }

    /// Whether a receipt for the message (its id, or one of its wamids) was among them.
    fn names(&self, message: i64, wamids: &[String]) -> bool {
        self.messages.contains(&message) || wamids.iter().any(|w| self.wamids.contains(w))
    }
}

/// Deletes every key of the deployment in one step, as a `FLUSHALL` would, and returns the
/// receipts lost with the webhook buffer.
async fn lose_everything(stack: &Stack) -> Unheard {
    let (mut conn, keys) = redis_of(stack).await;
    let script = redis::Script::new(
        r"
        local bodies = {}
        for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
            local fields = entry[2]
            for i = 1, #fields, 2 do
                if fields[i] == ARGV[2] then table.insert(bodies, fields[i + 1]) end
            end
        end
        local cursor = '0'
        repeat
            local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
            cursor = page[1]
            for _, key in ipairs(page[2]) do redis.call('DEL', key) end
        until cursor == '0'
        return bodies
        ",
    );
    let bodies: Vec<Vec<u8>> = script
        .key(keys.webhooks())
        .arg(format!("{}:*", stack.settings.redis.key_prefix))
        .arg(herald_shared::stream::ENTRY_FIELD)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    Unheard::of(&bodies)
}

/// Stops every write to the private `redis` (`CLIENT PAUSE WRITE`, until it is killed) and
/// returns the receipts in its webhook buffer, which a restart without persistence loses.
async fn pause_writes(stack: &Stack) -> Unheard {
    let (mut conn, keys) = redis_of(stack).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(600_000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let buffered: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(&mut conn, keys.webhooks())
            .await
            .unwrap();
    let bodies: Vec<Vec<u8>> = buffered
        .ids
        .iter()
        .filter_map(|entry| entry.get(herald_shared::stream::ENTRY_FIELD))
        .collect();
    Unheard::of(&bodies)
}

/// What a campaign that does not complete shows, for the failure to say where it stopped:
/// its counters against its messages, its lanes, each number's keys in Redis, and the
/// database's sessions that are not idle (a wait for a lock shows there).
async fn where_it_stands(ctx: &TestContext, stack: &Stack, campaign: CampaignId) -> String {
    use redis::AsyncCommands;
    use std::fmt::Write;
    let mut out = String::new();
    let row: Option<herald_shared::db::campaigns::CampaignRow> =
        sqlx::query_as("SELECT * FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_optional(&ctx.pool)
            .await
            .ok()
            .flatten();
    if let Some(row) = row {
        let _ = writeln!(out, "campaign {:?}, counters {:?}", row.state, row.counters);
    }
    let counts = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign).await;
    let _ = writeln!(out, "messages by status {counts:?}");
    // Described by Postgres, which prints NULLs and timestamps as they are.
    let lanes: Vec<(herald_shared::domain::NumberId, String)> = sqlx::query_as(
        "SELECT sender_number_id, format('cursor %s, appended %s, %s', fanout_cursor,
                fanout_appended, CASE WHEN repair_since IS NULL THEN 'no repair open'
                ELSE format('repair from %s since %s', repair_from, repair_since) END)
         FROM campaign_numbers WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_all(&ctx.pool)
    .await
    .unwrap_or_default();
    let (mut conn, keys) = redis_of(stack).await;
    for (number, lane) in lanes {
        let _ = writeln!(out, "lane of number {number}: {lane}");
        let k = keys.number(number);
        let listed: redis::RedisResult<bool> =
            conn.sismember(keys.numbers(), number.to_string()).await;
        let lease: redis::RedisResult<Option<String>> = conn.get(&k.lease).await;
        let fence: redis::RedisResult<Option<i64>> = conn.get(&k.fence).await;
        let length: redis::RedisResult<usize> = conn.xlen(&k.stream).await;
        let groups: redis::RedisResult<Vec<_>> = conn
            .xinfo_groups::<_, redis::streams::StreamInfoGroupsReply>(&k.stream)
            .await
            .map(|reply| {
                let group = |g: redis::streams::StreamInfoGroup| {
                    format!(
                        "{}: {} pending, read to {}",
                        g.name, g.pending, g.last_delivered_id
                    )
                };
                reply.groups.into_iter().map(group).collect()
            });
        let retries: redis::RedisResult<usize> = conn.zcard(&k.retry).await;
        let parked: redis::RedisResult<usize> = conn.zcard(&k.parked).await;
        let handback: redis::RedisResult<usize> = conn.scard(&k.handback).await;
        let fanout: redis::RedisResult<Vec<(String, i64)>> = conn.hgetall(&k.fanout).await;
        let _ = writeln!(
            out,
            "  Redis: listed {listed:?}, lease {lease:?}, fence counter {fence:?}, stream \
             length {length:?}, groups {groups:?}, retries {retries:?}, parked {parked:?}, \
             handed back {handback:?}, fan-out record {fanout:?}"
        );
    }
    let sessions: Vec<String> = sqlx::query_scalar(
        "SELECT format('session %s waiting %s, %s into its transaction: %s', state,
                       wait_event_type || ':' || wait_event, now() - xact_start,
                       left(query, 160))
         FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state IS DISTINCT FROM 'idle'",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap_or_default();
    for session in sessions {
        let _ = writeln!(out, "  {session}");
    }
    out
}

/// The campaign's messages not at a final status whose receipts were not `unheard`: (id,
/// status).
async fn unsettled(
    ctx: &TestContext,
    campaign: CampaignId,
    unheard: &Unheard,
) -> sqlx::Result<(Vec<(i64, MessageStatus)>, usize)> {
    let open: Vec<(i64, MessageStatus, Vec<String>)> = sqlx::query_as(
        "SELECT m.id, m.status, array_remove(array_agg(w.wa_message_id), NULL)
         FROM messages m LEFT JOIN message_wamids w ON w.message_id = m.id
         WHERE m.campaign_id = $1 AND m.status NOT IN ('read', 'failed')
         GROUP BY m.id, m.status ORDER BY m.id",
    )
    .bind(campaign)
    .fetch_all(&ctx.pool)
    .await?;
    let mut explained = 0;
    let mut left = Vec::new();
    for (id, status, wamids) in open {
        let sent = matches!(status, MessageStatus::Sent | MessageStatus::Delivered);
        if sent && unheard.names(id, &wamids) {
            explained += 1;
        } else {
            left.push((id, status));
        }
    }
    Ok((left, explained))
}

/// Waits for the campaign to complete, then checks what every fault must leave behind: every
/// message at a final status, except sent ones whose receipts Redis lost (`unheard`).
async fn completes_whole(
    ctx: &TestContext,
    stack: &Stack,
    campaign: CampaignId,
    fault: &str,
    unheard: &Unheard,
) {
    let completed = herald::fixtures::wait_until(
        "the campaign completed",
        Duration::from_secs(120),
        Duration::from_millis(20),
        || async {
            let state: CampaignState =
                sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
                    .bind(campaign)
                    .fetch_one(&ctx.pool)
                    .await?;
            Ok((state == CampaignState::Completed).then_some(()))
        },
    )
    .await;
    if let Err(e) = completed {
        panic!(
            "{fault}: {e}\n{}",
            where_it_stands(ctx, stack, campaign).await
        );
    }
    // Completed: nothing left to send. The last receipts may still be on their way.
    let last = std::sync::Mutex::new(Vec::new());
    let settled = herald::fixtures::wait_until(
        "every message at a final status",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let (left, explained) = unsettled(ctx, campaign, unheard).await?;
            let done = left.is_empty();
            *last.lock().unwrap() = left;
            Ok(done.then_some(explained))
        },
    )
    .await;
    let unheard_sent = match settled {
        Ok(explained) => explained,
        Err(e) => {
            let left = last.lock().unwrap();
            panic!(
                "{fault}: {e}: {} messages are not, the first (id, status): {:?}; receipts lost \
                 with Redis: {unheard:?}",
                left.len(),
                &left[..left.len().min(20)]
            )
        }
    };
    let statuses = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign)
        .await
        .unwrap();
    assert_counters_match(&ctx.pool, campaign).await;
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    report(&format!(
        "{fault}: {statuses:?}; the simulator accepted {}, recipients sent twice {}, most \
         sends in flight {}, receipts Redis lost {}, sent messages left without \
         their last receipts by that {unheard_sent}",
        stats.accepted_total, stats.duplicate_recipients, stats.peak_in_flight, unheard.receipts
    ));
    assert_eq!(
        stats.fence_violations, 0,
        "{fault}: a send carried a lower fencing token than an earlier one of its number: {:?}",
        stats.fences
    );
    assert!(
        stats.duplicate_recipients <= stats.peak_in_flight,
        "{fault}: {} recipients sent twice, more than the {} sends in flight",
        stats.duplicate_recipients,
        stats.peak_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_mid_campaign_loses_no_message() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let (_api, campaign) = under_way(&ctx, &stack).await;
    sent_at_least(&ctx, campaign, 200).await;
    // Every key of this deployment goes, as in a FLUSHALL or a restart without persistence.
    let unheard = lose_everything(&stack).await;
    completes_whole(&ctx, &stack, campaign, "Redis lost its data", &unheard).await;
    assert_eq!(open_repairs(&ctx, campaign).await, 0, "the repair closed");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_mid_campaign_loses_no_message() {
    let mut redis = PrivateRedis::start().await;
    let ctx = TestContext::new().await;
    let stack = stack_on(&ctx, &redis).await;
    let (_api, campaign) = under_way(&ctx, &stack).await;
    sent_at_least(&ctx, campaign, 200).await;
    let unheard = pause_writes(&stack).await;
    redis.stop();
    every_role_ready(&stack, false).await;
    redis.restart().await;
    every_role_ready(&stack, true).await;
    completes_whole(&ctx, &stack, campaign, "Redis restarted empty", &unheard).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_appendonly_mid_campaign_loses_no_message() {
    let mut redis = PrivateRedis::start_with_aof().await;
    let ctx = TestContext::new().await;
    let stack = stack_on(&ctx, &redis).await;
    let (_api, campaign) = under_way(&ctx, &stack).await;
    sent_at_least(&ctx, campaign, 200).await;
    redis.shut_down();
    every_role_ready(&stack, false).await;
    redis.restart().await;
    every_role_ready(&stack, true).await;
    completes_whole(
        &ctx,
        &stack,
        campaign,
        "Redis restarted (appendonly)",
        &Unheard::default(),
    )
    .await;
    assert_eq!(
        open_repairs(&ctx, campaign).await,
        0,
        "Redis kept its data: nothing to repair"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_campaign_loses_no_message() {
    let postgres = PrivatePostgres::start().await;
    let ctx = TestContext::on_database_server(Some(&postgres.url())).await;
    let stack = ctx.start_stack().await;
    let (_api, campaign) = under_way(&ctx, &stack).await;
    sent_at_least(&ctx, campaign, 200).await;
    postgres.stop();
    every_role_ready(&stack, false).await;
    postgres.restart().await;
    every_role_ready(&stack, true).await;
    completes_whole(
        &ctx,
        &stack,
        campaign,
        "Postgres restarted",
        &Unheard::default(),
    )
    .await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_api_storm_loses_no_message() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    // A send unanswered for a second is given up (ambiguous), not fifteen.
    settings.whatsapp.request_timeout_ms = 1_000;
    let stack = Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    // For a minute (longer than the campaign takes), 30% of sends fail: 5xx without a Graph
    // body, timeouts and connection resets, some after Meta took the message.
    let storm = |kind: serde_json::Value, probability: f64| {
        let mut fault = kind;
        fault["probability"] = json!(probability);
        fault["for_s"] = json!(60.0);
        fault
    };
    configure_simulator(
        &stack,
        json!({"faults": [
            storm(json!({"kind": "http", "status": 503}), 0.10),
            storm(json!({"kind": "http", "status": 500}), 0.05),
            storm(json!({"kind": "timeout", "accepted": false}), 0.05),
            storm(json!({"kind": "reset", "accepted": false}), 0.05),
            storm(json!({"kind": "reset", "accepted": true}), 0.05),
        ]}),
    )
    .await;
    let (_api, campaign) = under_way(&ctx, &stack).await;
    completes_whole(
        &ctx,
        &stack,
        campaign,
        "Cloud API storm",
        &Unheard::default(),
    )
    .await;
    let stats = herald_tests::simulator_stats(&stack.simulator_url).await;
    assert!(
        stats.http_errors > 0 && stats.timeouts > 0 && stats.resets > 0,
        "the storm came: {stats:?}"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
