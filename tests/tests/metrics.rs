//! `/metrics` on every role's own metrics listener (never a public port), in Prometheus's text
//! format: sends by outcome and code, and each number's stream gauges (what operators and
//! autoscalers watch).

use herald::fixtures;
use std::time::Duration;

use herald_tests::{TestContext, eventually};

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_sends_by_outcome_and_each_numbers_stream_gauges() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("500000000001", "t", 200).await.unwrap();
    let campaign = fixtures::campaign(&api, "metrics", &[number.id], 20)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message sent", Duration::from_secs(20), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.pending + c.queued == 0).then_some(())
    })
    .await;

    let gauge = format!("herald_stream_lag{{number=\"{}\"}}", number.id);
    let text = eventually("the number's gauges", Duration::from_secs(20), || async {
        let text = scrape(&stack.sender_metrics_url).await;
        text.contains(&gauge).then_some(text)
    })
    .await;
    for family in [
        "herald_stream_length",
        "herald_stream_pending",
        "herald_stream_oldest_entry_age_seconds",
        "herald_retry_set_size",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    let sent = text
        .lines()
        .find(|l| {
            l.starts_with("herald_sends_total")
                && l.contains("outcome=\"sent\"")
                && l.contains("code=\"none\"")
        })
        .unwrap_or_else(|| panic!("no sends counted:\n{text}"));
    let count: f64 = sent.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 20.0, "{sent}");
    // HELP on every series; latency histograms for the Cloud API and the HTTP API; the rate
    // from the number's start.
    for series in [
        "herald_stream_lag",
        "herald_sends_total",
        "herald_sender_rate",
        "herald_cloud_api_request_seconds",
        "herald_http_request_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {series} ")),
            "{series}:\n{text}"
        );
    }
    assert!(
        text.contains("herald_cloud_api_request_seconds_bucket{outcome=\"accepted\""),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_http_request_seconds_bucket")
                && l.contains("role=\"ingest\"")
                && l.contains("route=\"/v1/campaigns/{id}/start\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "herald_sender_rate{{number=\"{}\"}} 200",
            number.id
        )),
        "{text}"
    );
    // Receipts: each message moved forward (its `delivered` and `read` in one batch or two).
    eventually("every message read", Duration::from_secs(20), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.read == 20).then_some(())
    })
    .await;
    let text = scrape(&stack.webhook_metrics_url).await;
    let applied = text
        .lines()
        .find(|l| l.starts_with("herald_webhook_receipts_total{result=\"applied\"}"))
        .unwrap_or_else(|| panic!("no receipts counted:\n{text}"));
    let count: f64 = applied.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 20.0, "{applied}");
    // Every series any role exported has its HELP text.
    for page in [
        scrape(&stack.webhook_metrics_url).await,
        scrape(&stack.sender_metrics_url).await,
    ] {
        for line in page.lines().filter(|l| l.starts_with("herald_")) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|f| page.contains(&format!("# TYPE {f} histogram")))
                .unwrap_or(name);
            assert!(
                page.contains(&format!("# HELP {family} ")),
                "{family} has no HELP:\n{page}"
            );
        }
    }
    // The same registry on the other roles' metrics listeners, and never on a public port.
    for url in [&stack.ingest_metrics_url, &stack.webhook_metrics_url] {
        assert!(scrape(url).await.contains("herald_sends_total"));
    }
    for public in [&stack.ingest_url, &stack.webhook_url] {
        let response = reqwest::get(format!("{public}/metrics")).await.unwrap();
        assert_eq!(response.status(), 404, "{public}/metrics");
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
