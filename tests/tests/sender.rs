//! The sender against a mocked Cloud API: each class of outcome takes its action.

use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, assert_counters_match, eventually, recipients};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INGEST_AND_SENDER: Roles = Roles {
    ingest: true,
    sender: true,
    webhook: false,
    simulator: false,
};

const MESSAGES: &str = "/v24.0/300000000001/messages";

fn graph_error(status: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {
        "message": format!("(#{code}) test"), "type": "OAuthException", "code": code,
        "fbtrace_id": "T"}}))
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp",
        "contacts": [{"input": "+447400000000", "wa_id": "447400000000"}],
        "messages": [{"id": "wamid.OK", "message_status": "accepted"}]}))
}

/// Runs a one-recipient campaign against `api` and returns the message's final row once it is
/// no longer queued.
async fn send_one(cloud_api: &MockServer) -> (MessageStatus, i32, Option<i32>, Option<String>) {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    let stack = Stack::start(settings, INGEST_AND_SENDER).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_number("300000000001", "the-token", 50)
        .await
        .unwrap();
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    api.upload(campaign.id, &recipients(1)).await.unwrap();
    api.start(campaign.id).await.unwrap();
    let row = eventually("the message leaves the queue", Duration::from_secs(20), || async {
        let row: (MessageStatus, i32, Option<i32>, Option<String>) = sqlx::query_as(
            "SELECT status, attempts, error_code, wa_message_id FROM messages WHERE campaign_id = $1",
        )
        .bind(campaign.id)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
        (row.0 != MessageStatus::Queued && row.0 != MessageStatus::Pending).then_some(row)
    })
    .await;
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
    row
}

#[tokio::test]
async fn a_send_carries_the_token_and_the_message_id_and_records_the_wamid() {
    let cloud_api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", "Bearer the-token"))
        .respond_with(accepted())
        .expect(1)
        .mount(&cloud_api)
        .await;
    let (status, attempts, code, wamid) = send_one(&cloud_api).await;
    assert_eq!((status, attempts, code), (MessageStatus::Sent, 1, None));
    assert_eq!(wamid.as_deref(), Some("wamid.OK"));
    let request = &cloud_api.received_requests().await.unwrap()[0];
    let body: serde_json::Value = request.body_json().unwrap();
    assert_eq!(body["to"], "+447400000000");
    assert_eq!(body["template"]["name"], "spring_sale_2026");
    assert_eq!(
        body["template"]["components"][0]["parameters"][0]["text"],
        "Customer 0"
    );
    assert!(
        body["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
}

#[tokio::test]
async fn a_transient_error_is_retried_and_then_sent() {
    let cloud_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(graph_error(500, 131000))
        .up_to_n_times(2)
        .mount(&cloud_api)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    let (status, attempts, _, _) = send_one(&cloud_api).await;
    assert_eq!((status, attempts), (MessageStatus::Sent, 3));
}

#[tokio::test]
async fn a_transient_error_that_persists_fails_after_the_last_attempt() {
    let cloud_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream gone"))
        .expect(3)
        .mount(&cloud_api)
        .await;
    let (status, attempts, _, _) = send_one(&cloud_api).await;
    assert_eq!((status, attempts), (MessageStatus::Failed, 3));
}

#[tokio::test]
async fn throttling_is_retried_without_using_up_attempts() {
    let cloud_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(graph_error(400, 130429))
        .up_to_n_times(4)
        .mount(&cloud_api)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    let (status, attempts, _, _) = send_one(&cloud_api).await;
    assert_eq!((status, attempts), (MessageStatus::Sent, 1));
}

#[tokio::test]
async fn a_permanent_recipient_error_fails_at_once_with_its_code() {
    let cloud_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(graph_error(400, 131026))
        .expect(1)
        .mount(&cloud_api)
        .await;
    let (status, attempts, code, _) = send_one(&cloud_api).await;
    assert_eq!(
        (status, attempts, code),
        (MessageStatus::Failed, 1, Some(131026))
    );
}
