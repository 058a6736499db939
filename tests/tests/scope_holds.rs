//! App- and WABA-wide rate limits (codes 4 and 80007): every number of the scope holds its
//! sends, and no other number does. Checked from the times the mocked Cloud API saw each
//! number's requests (lower bounds only, so a slow machine cannot fail them).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::domain::CampaignId;
use herald_shared::stream::Keys;
use herald_tests::{TestContext, assert_counters_match, eventually, recipients};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const INGEST_AND_SENDER: Roles = Roles {
    ingest: true,
    sender: true,
    webhook: false,
    simulator: false,
};

/// Answers the first send of `refused` (a phone number id) with `code` and accepts the rest,
/// noting when each number's requests came, and to whom.
struct Recording {
    refused: Option<(&'static str, i64)>,
    seen: Mutex<Vec<(String, String, Instant)>>,
}

impl Recording {
    fn new(refused: Option<(&'static str, i64)>) -> Self {
        Self {
            refused,
            seen: Mutex::default(),
        }
    }

    /// When `phone_number_id`'s requests came.
    fn times(&self, phone_number_id: &str) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == phone_number_id)
            .map(|(_, _, t)| *t)
            .collect()
    }

    /// When the sends to the recipient of `phone_number_id`'s first send came (the refused
    /// one, for the refused number): its first attempt and its retries.
    fn attempts_of_first(&self, phone_number_id: &str) -> Vec<Instant> {
        let seen = self.seen.lock().unwrap();
        let Some((_, to, _)) = seen.iter().find(|(p, _, _)| p == phone_number_id) else {
            return Vec::new();
        };
        seen.iter()
            .filter(|(p, t, _)| p == phone_number_id && t == to)
            .map(|(_, _, at)| *at)
            .collect()
    }
}

impl wiremock::Respond for &'static Recording {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let phone = request
            .url
            .path()
            .split('/')
            .nth(2)
            .unwrap_or("")
            .to_owned();
        let to = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|b| b["to"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        let first = !seen.iter().any(|(p, _, _)| *p == phone);
        seen.push((phone.clone(), to, Instant::now()));
        if let Some((refused, code)) = self.refused
            && first
            && phone == refused
        {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {
                "message": format!("(#{code}) rate limit"), "type": "OAuthException",
                "code": code, "fbtrace_id": "T"}}));
        }
        ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp",
            "contacts": [{"input": "+447400000000", "wa_id": "447400000000"}],
            "messages": [{"id": format!("wamid.{}", seen.len())}]}))
    }
}

async fn world(recording: &'static Recording) -> (TestContext, Stack, MockServer) {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(recording)
        .mount(&cloud_api)
        .await;
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    let stack = Stack::start(settings, INGEST_AND_SENDER).await.unwrap();
    (ctx, stack, cloud_api)
}

/// A started campaign of `n` recipients on each of `numbers` (phone number id, WABA), each
/// number sending at `rate`.
async fn campaign(api: &ApiClient, numbers: &[(&str, &str)], n: usize, rate: u32) -> CampaignId {
    let mut ids = Vec::new();
    for (phone, waba) in numbers {
        let number: serde_json::Value = api
            .post(
                "/v1/numbers",
                &json!({"phone_number_id": phone, "waba_id": waba,
                        "display_number": format!("+{phone}"), "access_token": "t", "verify": false,
                        "rate": rate}),
            )
            .await
            .unwrap();
        ids.push(serde_json::from_value(number["id"].clone()).unwrap());
    }
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &ids)
        .await
        .unwrap();
    api.upload(campaign.id, &recipients(n * numbers.len()))
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    campaign.id
}

async fn all_sent(api: &ApiClient, campaign: CampaignId, total: i64) {
    eventually("every message sent", Duration::from_secs(30), || async {
        (api.campaign(campaign).await.unwrap().counters.sent == total).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_waba_rate_limit_holds_every_number_of_that_waba_and_no_other() {
    let recording: &'static Recording =
        Box::leak(Box::new(Recording::new(Some(("300000000001", 80007)))));
    let (ctx, stack, _cloud_api) = world(recording).await;
    let hold = Duration::from_millis(ctx.settings.sender.scope_throttle_ms);
    let api = ctx.tenant(&stack.ingest_url).await;
    // 20 each at 10 msg/s: every number is still sending when the limit is met.
    let numbers = [
        ("300000000001", "110000000000001"),
        ("300000000002", "110000000000001"),
        ("300000000003", "110000000000002"),
    ];
    let campaign = campaign(&api, &numbers, 20, 10).await;
    all_sent(&api, campaign, 60).await;

    let refused_at = recording.times("300000000001")[0];
    let quiet_until = refused_at + hold - Duration::from_millis(100);
    let grace = refused_at + Duration::from_millis(250);
    let held = |phone: &str| {
        recording
            .times(phone)
            .into_iter()
            .filter(|t| *t > grace && *t < quiet_until)
            .count()
    };
    assert_eq!(
        held("300000000001"),
        0,
        "the number that met the limit held"
    );
    assert_eq!(held("300000000002"), 0, "its WABA's other number held");
    assert!(held("300000000003") > 0, "another WABA's number went on");
    // Sends already under way when the refusal came may go at once (a burst of the pace);
    // the refused message itself waits out the hold.
    let refused = recording.attempts_of_first("300000000001");
    assert!(
        refused.len() == 2 && refused[1] >= refused_at + hold - Duration::from_millis(100),
        "the refused message went again, once, only after the hold: {refused:?}"
    );
    assert_counters_match(&ctx.pool, campaign).await;
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT m.attempts FROM messages m JOIN sender_numbers n ON n.id = m.sender_number_id
         WHERE n.phone_number_id = '300000000001' ORDER BY m.id LIMIT 1",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(attempts, vec![1], "the refusal did not use up an attempt");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_hold_set_by_another_sender_is_honoured() {
    let recording: &'static Recording = Box::leak(Box::new(Recording::new(None)));
    let (ctx, stack, _cloud_api) = world(recording).await;
    // Another sender process met code 4: the whole app holds for 2 s.
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = herald_shared::stream::conn::connect(&ctx.settings.redis, None)
        .await
        .unwrap();
    let length = Duration::from_secs(2);
    let set_at = Instant::now();
    let end = chrono::Utc::now().timestamp_millis() + length.as_millis() as i64;
    let api = ctx.tenant(&stack.ingest_url).await;
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(keys.scope_throttle(&format!("app:{tenant}")))
        .arg(end)
        .arg("PX")
        .arg(length.as_millis() as u64)
        .query_async(&mut redis)
        .await
        .unwrap();
    let campaign = campaign(&api, &[("300000000001", "110000000000001")], 3, 50).await;
    all_sent(&api, campaign, 3).await;
    let first = recording.times("300000000001")[0];
    assert!(
        first >= set_at + length - Duration::from_millis(100),
        "nothing was sent while the app was held ({:?} after the hold began)",
        first - set_at
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
