//! The Cloud API simulator over HTTP.

use herald::stack::{Roles, Stack};
use herald_simulator::StatsReport;
use herald_tests::TestContext;
use serde_json::{Value, json};

const SIMULATOR_ONLY: Roles = Roles {
    ingest: false,
    sender: false,
    webhook: false,
    simulator: true,
};

fn message(to: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": to, "type": "template",
           "biz_opaque_callback_data": "1",
           "template": {"name": "spring_sale_2026", "language": {"code": "en_GB"}}})
}

async fn send(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v24.0/109876543210987/messages"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn stats(url: &str) -> StatsReport {
    reqwest::get(format!("{url}/sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn it_answers_like_the_cloud_api_and_counts_repeated_recipients() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.simulator.webhook_url = String::new();
    let stack = Stack::start(settings, SIMULATOR_ONLY).await.unwrap();
    let url = &stack.simulator_url;
    let (status, first) = send(url, Some("t"), &message("+447400000001")).await;
    assert_eq!(status, 200);
    let wamid = first["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid."));
    assert_eq!(first["contacts"][0]["wa_id"], "447400000001");
    let (_, second) = send(url, Some("t"), &message("+447400000001")).await;
    assert_ne!(second["messages"][0]["id"], first["messages"][0]["id"]);
    let (status, refused) = send(url, None, &message("+447400000002")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_i64()),
        (401, Some(190))
    );
    let (status, refused) = send(url, Some("t"), &json!({"to": 5})).await;
    assert_eq!(
        (status, refused["error"]["code"].as_i64()),
        (400, Some(100))
    );
    let s = stats(url).await;
    assert_eq!(s.accepted_total, 2);
    assert_eq!(s.duplicate_recipients, 1);
    assert_eq!(s.rejected.get(&190), Some(&1));
    assert_eq!(s.rejected.get(&100), Some(&1));
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn over_its_cap_a_number_is_refused_with_130429() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.simulator.webhook_url = String::new();
    settings.simulator.cap_per_number = 5;
    let stack = Stack::start(settings, SIMULATOR_ONLY).await.unwrap();
    let sends = (0..20).map(|i| {
        let url = stack.simulator_url.clone();
        async move { send(&url, Some("t"), &message(&format!("+4474000001{i:02}"))).await }
    });
    let started = std::time::Instant::now();
    let results = futures::future::join_all(sends).await;
    // At most 5 in any one second: however slowly the 20 arrived, no more than this.
    let most = 5 * (started.elapsed().as_secs() + 1);
    let throttled = results
        .iter()
        .filter(|(status, body)| *status == 400 && body["error"]["code"] == 130429)
        .count();
    let s = stats(&stack.simulator_url).await;
    assert!(s.accepted_total >= 1 && s.accepted_total <= most, "{s:?}");
    assert_eq!(throttled as u64, 20 - s.accepted_total);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
