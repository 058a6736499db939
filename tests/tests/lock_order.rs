//! Issue #11, acceptance 2: the sender's recorder and two webhook processors on one campaign
//! of 50,000 messages, with every receipt sent twice, shuffled, some before the send is
//! recorded and some after: Postgres counts no deadlock in the test's database, every message
//! ends where the simulator meant, the counters equal a `GROUP BY status`, and no receipt
//! waits in Herald more than 2 s after its send is recorded: a message seen `sent` 2 s after
//! both its send was recorded and the body moving it on (`delivered`, `read`) reached Herald is
//! a receipt held back, by a failed batch or a lock. The wait counts from the body's arrival,
//! not from when the simulator meant to send it, so a POST the simulator had to retry (its
//! backoff reaches seconds) is not taken for Herald's; times are read from Postgres's clock, on
//! which the arrivals are recorded too.
//!
//! The test's database commits without waiting for its WAL to reach the disk: what is measured
//! is lock order and retries, and on a machine whose disk is busy (CI's, flushing the build) a
//! commit's flush alone has taken seconds, which no order of locks can shorten. Durability
//! through crashes is the kill tests' (`faults.rs`, `kill_senders.rs`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_shared::domain::CampaignId;
use herald_tests::{TestContext, assert_counters_match, recipients};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;

const MESSAGES: usize = 50_000;
const NUMBERS: usize = 4;
const LONGEST_WAIT: Duration = Duration::from_secs(2);

async fn deadlocks(db: impl sqlx::PgExecutor<'_>) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(db)
        .await
        .unwrap()
}

/// When each message was first and last seen `sent`, by Postgres's clock.
#[derive(Default)]
struct SentWatch {
    seen: HashMap<i64, (DateTime<Utc>, DateTime<Utc>)>,
}

impl SentWatch {
    async fn look(&mut self, pool: &PgPool, campaign: CampaignId) {
        let sent: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT now(), id FROM messages WHERE campaign_id = $1 AND status = 'sent'",
        )
        .bind(campaign)
        .fetch_all(pool)
        .await
        .unwrap();
        for (now, id) in sent {
            self.seen.entry(id).or_insert((now, now)).1 = now;
        }
    }

    /// The messages whose receipt waited in Herald longer than `longest`, each with how long,
    /// the bounds of its stay in `sent` and when the receipt moving it on arrived.
    async fn waited(&self, pool: &PgPool, longest: Duration) -> Vec<String> {
        let longest = chrono::Duration::from_std(longest).unwrap();
        let stayed: HashMap<String, _> = self
            .seen
            .iter()
            .filter(|(_, (first, last))| *last - *first > longest)
            .map(|(id, stay)| (id.to_string(), *stay))
            .collect();
        if stayed.is_empty() {
            return Vec::new();
        }
        let ids: Vec<&String> = stayed.keys().collect();
        let arrivals: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as::<_, (String, DateTime<Utc>, DateTime<Utc>)>(
                "SELECT DISTINCT ON (1) s->>'biz_opaque_callback_data', e.received_at,
                        e.processed_at
                 FROM webhook_events e,
                      jsonb_array_elements(convert_from(e.body, 'UTF8')::jsonb -> 'entry') en,
                      jsonb_array_elements(en -> 'changes') ch,
                      jsonb_array_elements(ch -> 'value' -> 'statuses') s
                 WHERE s->>'status' IN ('delivered', 'read')
                   AND s->>'biz_opaque_callback_data' = ANY($1)
                 ORDER BY 1, e.received_at",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, received, processed)| (id, (received, processed)))
            .collect();
        let mut waited = Vec::new();
        for (id, (first, last)) in stayed {
            let receipt = arrivals.get(&id).copied();
            let from = receipt.map_or(first, |(arrived, _)| arrived.max(first));
            if last - from > longest {
                waited.push(format!(
                    "message {id}: {} ms (sent from {first} to at least {last}; \
                     its receipt's body arrived, and the batch applying it began, at {receipt:?})",
                    (last - from).num_milliseconds()
                ));
            }
        }
        waited
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_and_two_processors_never_deadlock_and_no_receipt_waits() {
    let mut ctx = TestContext::new().await;
    ctx.settings.webhook.processors = 2;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let unflushed = format!("ALTER DATABASE \"{database}\" SET synchronous_commit = off");
    sqlx::query(sqlx::AssertSqlSafe(unflushed))
        .execute(&ctx.pool)
        .await
        .unwrap();
    let stack = ctx.start_stack().await;
    herald_tests::configure_simulator(
        &stack,
        json!({
            "seed": 17,
            "webhooks": {"delivered": 1.0, "read": 0.5, "duplicate": 1.0, "shuffle": true,
                         "batch": 50,
                         "delivered_delay": {"kind": "uniform", "min_ms": 0, "max_ms": 300},
                         "read_delay": {"kind": "uniform", "min_ms": 0, "max_ms": 300}}
        }),
    )
    .await;
    let before = deadlocks(&ctx.pool).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..NUMBERS {
        let phone = format!("60000000010{i}");
        numbers.push(api.create_number(&phone, "t", 1000).await.unwrap().id);
    }
    let campaign = api
        .create_campaign("lock order", "spring_sale_2026", "en_GB", &numbers)
        .await
        .unwrap();
    for chunk in recipients(MESSAGES).chunks(10_000) {
        api.upload(campaign.id, chunk).await.unwrap();
    }
    api.start(campaign.id).await.unwrap();

    let mut watch = SentWatch::default();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        watch.look(&ctx.pool, campaign.id).await;
        let url = &stack.simulator_url;
        let done = herald_tests::at_intended_statuses(&ctx.pool, url, campaign.id, MESSAGES);
        if done.await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every message at its intended status in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = watch.waited(&ctx.pool, LONGEST_WAIT).await;
    let retried = herald_tests::simulator_stats(&stack.simulator_url)
        .await
        .webhooks_retried;
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    // A backend has reported its statistics by the time it exits: wait for every other
    // connection to the test's database to go.
    ctx.pool.close().await;
    let mut db = PgConnection::connect(ctx.settings.database.url.expose_secret())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{others} connections still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deadlocks(&mut db).await - before, 0, "deadlocks detected");
    db.close().await.unwrap();
    assert!(
        waited.is_empty(),
        "receipts waited in Herald more than {LONGEST_WAIT:?} after their send was recorded \
         ({retried} webhook POSTs retried by the simulator); {} such, the first:\n{}",
        waited.len(),
        waited
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    ctx.cleanup().await;
}
