//! A portfolio's daily recipient limit: messages to recipients beyond it wait, unspent, until
//! the oldest reached recipient leaves the rolling window (2 s in the test configuration
//! instead of 24 h), then go; nothing fails.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::domain::CampaignId;
use herald_tests::{TestContext, assert_counters_match, eventually, recipients};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, Request, ResponseTemplate};

/// Accepts every send, noting when it came.
struct Recording(Mutex<Vec<Instant>>);

impl wiremock::Respond for &'static Recording {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.0.lock().unwrap();
        seen.push(Instant::now());
        ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp",
            "contacts": [{"input": "+447400000000", "wa_id": "447400000000"}],
            "messages": [{"id": format!("wamid.{}", seen.len())}]}))
    }
}

const INGEST_AND_SENDER: Roles = Roles {
    ingest: true,
    sender: true,
    webhook: false,
    simulator: false,
};

/// Registers number `phone` in portfolio `portfolio` (sending at 50 msg/s) and starts a
/// campaign of `n` recipients from it.
async fn capped_campaign(api: &ApiClient, portfolio: &str, phone: &str, n: usize) -> CampaignId {
    let number: serde_json::Value = api
        .post(
            "/v1/numbers",
            &json!({"phone_number_id": phone, "waba_id": "210000000000002",
                    "display_number": format!("+{phone}"), "access_token": "t", "verify": false,
                    "rate": 50, "portfolio_id": portfolio}),
        )
        .await
        .unwrap();
    assert_eq!(number["portfolio_id"], portfolio);
    let campaign = api
        .create_campaign(
            "capped",
            "spring_sale_2026",
            "en_GB",
            &[serde_json::from_value(number["id"].clone()).unwrap()],
        )
        .await
        .unwrap();
    api.upload(campaign.id, &recipients(n)).await.unwrap();
    api.start(campaign.id).await.unwrap();
    campaign.id
}

#[tokio::test]
async fn beyond_the_portfolio_limit_messages_wait_for_the_window_then_go() {
    let recording: &'static Recording = Box::leak(Box::new(Recording(Mutex::default())));
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(recording)
        .mount(&cloud_api)
        .await;
    let ctx = TestContext::new().await;
    let window = Duration::from_millis(ctx.settings.sender.daily_cap_window_ms);
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    let stack = Stack::start(settings, INGEST_AND_SENDER).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;

    let refused = api
        .put("/v1/portfolios/pf-1", &json!({"daily_recipient_limit": 0}))
        .await;
    assert!(refused.is_err(), "a limit of 0 is refused");
    api.put("/v1/portfolios/pf-1", &json!({"daily_recipient_limit": 3}))
        .await
        .unwrap();
    let campaign = capped_campaign(&api, "pf-1", "300000000001", 5).await;

    let c = eventually("every message sent", Duration::from_secs(30), || async {
        let c = api.campaign(campaign).await.unwrap().counters;
        (c.sent == 5).then_some(c)
    })
    .await;
    assert_eq!(c.failed, 0);
    let times = recording.0.lock().unwrap().clone();
    assert_eq!(times.len(), 5, "each message went once");
    // At 50 msg/s all five would go within 100 ms; the limit let three go, and the other two
    // only once the first recipients had left the window.
    let first = times[0];
    assert!(times[2] - first < window / 2, "three went at once");
    assert!(
        times[3] - first >= window - Duration::from_millis(500),
        "the fourth waited for the window: {:?}",
        times[3] - first
    );
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn messages_held_back_by_the_limit_count_against_the_fan_out_window() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(herald_tests::accepted())
        .mount(&cloud_api)
        .await;
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    settings.ingest.fanout_window = 20;
    settings.ingest.fanout_batch = 10;
    // A recipient stays counted for a minute: one goes, the rest wait all through the test.
    settings.sender.daily_cap_window_ms = 60_000;
    let (window, batch) = (20, 10);
    let stack = Stack::start(settings, INGEST_AND_SENDER).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    api.put("/v1/portfolios/pf-2", &json!({"daily_recipient_limit": 1}))
        .await
        .unwrap();
    let campaign = capped_campaign(&api, "pf-2", "300000000002", 300).await;

    // Fanned out (queued) but not sent: what Redis holds for the number. One recipient goes;
    // the rest wait in the retry set for the limit's window, and fan-out must not top the
    // stream up behind them (before, the whole campaign ended up in Redis within a second).
    let held = || async {
        let (queued, sent): (i64, i64) =
            sqlx::query_as("SELECT queued, sent FROM campaigns WHERE id = $1")
                .bind(campaign)
                .fetch_one(&ctx.pool)
                .await
                .unwrap();
        (queued, sent)
    };
    eventually("the window filled", Duration::from_secs(20), || async {
        let (queued, _) = held().await;
        (queued >= window as i64 - batch as i64).then_some(())
    })
    .await;
    // Fan-out tops streams up every 100 ms: watch it for two seconds, twenty rounds.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let (queued, sent) = held().await;
        assert!(sent <= 1, "only the limit's one recipient goes: {sent}");
        assert!(
            queued <= (window + batch) as i64,
            "{queued} messages fanned out behind a capped number (window {window})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
