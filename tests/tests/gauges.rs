//! A sender reports a number's queue only while it sends for it (#13): once it stops, its
//! gauges for the number read 0, so a sum over every sender's `/metrics` counts each number
//! once, also while numbers move between senders. (A file of its own: the process has one
//! metrics registry.)

use std::time::Duration;

use herald::fixtures;
use herald_tests::{TestContext, eventually};

/// The value of `name` for `number` in this process's metrics, if reported.
fn gauge(name: &str, number: &str) -> Option<f64> {
    let prefix = format!("{name}{{number=\"{number}\"}} ");
    herald_shared::telemetry::render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stops_sending_for_a_number_stops_counting_its_queue() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("680000000001", "t", 5).await.unwrap().id;
    let campaign = fixtures::campaign(&api, "slow", &[number], 200)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    let id = number.to_string();
    eventually("the queue reported", Duration::from_secs(20), || async {
        gauge("herald_stream_length", &id)
            .filter(|n| *n > 0.0)
            .map(|_| ())
    })
    .await;
    stack.stop().await.unwrap();
    for name in [
        "herald_stream_length",
        "herald_stream_lag",
        "herald_stream_pending",
        "herald_stream_oldest_entry_age_seconds",
    ] {
        assert_eq!(gauge(name, &id), Some(0.0), "{name}");
    }
    ctx.cleanup().await;
}
