//! Issue #5, acceptance 2: a 5,000-message campaign through every role while the simulator
//! sends every receipt twice, shuffled within each POST, with delays that interleave them and
//! some asynchronous failures: each message ends at the status the simulator meant it to, and
//! the counters equal a `GROUP BY status`.

use herald::fixtures;
use std::time::Duration;

use herald_tests::{TestContext, assert_counters_match, eventually};
use serde_json::json;

const MESSAGES: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_sent_twice_and_out_of_order_end_where_the_simulator_meant() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    herald_tests::configure_simulator(
        &stack,
        json!({
            "seed": 11,
            "faults": [{"kind": "async_failure", "code": 131026, "probability": 0.05}],
            "webhooks": {"delivered": 0.9, "read": 0.5, "duplicate": 1.0, "shuffle": true,
                         "batch": 50,
                         "delivered_delay": {"kind": "uniform", "min_ms": 0, "max_ms": 300},
                         "read_delay": {"kind": "uniform", "min_ms": 0, "max_ms": 300}}
        }),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for phone in ["600000000001", "600000000002"] {
        numbers.push(api.create_number(phone, "t", 1000).await.unwrap().id);
    }
    let campaign = fixtures::campaign(&api, "receipts", &numbers, MESSAGES)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();

    let (stats, statuses) = eventually(
        "every message at its intended status",
        Duration::from_secs(120),
        || {
            let url = &stack.simulator_url;
            herald_tests::at_intended_statuses(&ctx.pool, url, campaign.id, MESSAGES)
        },
    )
    .await;
    // Every kind of ending happened, and every receipt came twice.
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert!(stats.statuses_posted >= 2 * MESSAGES as u64, "{stats:?}");
    assert_eq!(stats.duplicate_recipients, 0);
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
