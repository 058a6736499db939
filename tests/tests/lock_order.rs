//! Issue #11, acceptance 2: the sender's recorder and two webhook processors on one campaign
//! of 50,000 messages, with every receipt sent twice, shuffled, some before the send is
//! recorded and some after: Postgres counts no deadlock in the test's database, every message
//! ends where the simulator meant, the counters equal a `GROUP BY status`, and no message
//! stays `sent` for more than 2 s (its `delivered` left the simulator within 300 ms of the
//! send, so a longer stay is a receipt held back by a failed batch).
//!
//! The test's database commits without waiting for its WAL to reach the disk: what is measured
//! is lock order and retries, and on a machine whose disk is busy (CI's, flushing the build) a
//! commit's flush alone has taken seconds, which no order of locks can shorten. Durability
//! through crashes is the kill tests' (`faults.rs`, `kill_senders.rs`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use herald_shared::domain::CampaignId;
use herald_tests::{TestContext, assert_counters_match, recipients};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;

const MESSAGES: usize = 50_000;
const NUMBERS: usize = 4;
const LONGEST_IN_SENT: Duration = Duration::from_secs(2);

async fn deadlocks(db: impl sqlx::PgExecutor<'_>) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(db)
        .await
        .unwrap()
}

/// Watches which messages are `sent`, and for how long each has been.
struct SentWatch {
    since: HashMap<i64, Instant>,
    longest: Duration,
}

impl SentWatch {
    async fn look(&mut self, pool: &PgPool, campaign: CampaignId) {
        let now = Instant::now();
        let sent: HashSet<i64> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE campaign_id = $1 AND status = 'sent'",
        )
        .bind(campaign)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        self.since.retain(|id, _| sent.contains(id));
        for id in sent {
            let since = *self.since.entry(id).or_insert(now);
            self.longest = self.longest.max(now - since);
        }
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

    let mut watch = SentWatch {
        since: HashMap::new(),
        longest: Duration::ZERO,
    };
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
    assert!(
        watch.longest <= LONGEST_IN_SENT,
        "a message stayed sent for {:?}",
        watch.longest
    );
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
    ctx.cleanup().await;
}
