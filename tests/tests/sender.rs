//! The sender against a mocked Cloud API: each class of outcome takes its action.

use herald::fixtures;
use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::db::transitions::{self, MessageRef, Transition};
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, accepted, assert_counters_match, eventually};
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

/// A Cloud API that answers `refusal` `times` times, then accepts every send.
async fn refusing_then_accepting(refusal: ResponseTemplate, times: u64) -> MockServer {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(refusal)
        .up_to_n_times(times)
        .mount(&cloud_api)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    cloud_api
}

/// A test's world with ingest and a sender sending to `cloud_api`, its settings adjusted by
/// `adjust`.
async fn against(
    cloud_api: &MockServer,
    adjust: impl FnOnce(&mut herald_shared::settings::Settings),
) -> (TestContext, Stack) {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    adjust(&mut settings);
    let stack = Stack::start(settings, INGEST_AND_SENDER).await.unwrap();
    (ctx, stack)
}

/// A test's world sending to `cloud_api`, with a started campaign of `recipients` from one
/// number whose token is `the-token`.
async fn started_against(
    cloud_api: &MockServer,
    recipients: usize,
) -> (TestContext, Stack, herald_shared::domain::CampaignId) {
    let (ctx, stack) = against(cloud_api, |_| {}).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_untested_number("300000000001", "the-token", 50)
        .await
        .unwrap();
    let campaign = fixtures::campaign(&api, "c", &[number.id], recipients)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    (ctx, stack, campaign.id)
}

/// Runs a one-recipient campaign against `api` and returns the message's final row once it is
/// no longer queued.
async fn send_one(cloud_api: &MockServer) -> (MessageStatus, i32, Option<i32>, Option<String>) {
    let (ctx, stack, campaign) = started_against(cloud_api, 1).await;
    let row = eventually(
        "the message leaves the queue",
        Duration::from_secs(20),
        || async {
            let row: (MessageStatus, i32, Option<i32>, Option<String>) = sqlx::query_as(
                "SELECT status, attempts, error_code,
                    (SELECT min(wa_message_id) FROM message_wamids WHERE message_id = m.id)
             FROM messages m WHERE campaign_id = $1",
            )
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
            (row.0 != MessageStatus::Queued && row.0 != MessageStatus::Pending).then_some(row)
        },
    )
    .await;
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
    row
}

#[tokio::test]
async fn a_send_carries_the_token_and_the_message_id_and_records_the_wamid() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", "Bearer the-token"))
        .respond_with(accepted())
        .expect(1)
        .mount(&cloud_api)
        .await;
    let (status, attempts, code, wamid) = send_one(&cloud_api).await;
    assert_eq!((status, attempts, code), (MessageStatus::Sent, 1, None));
    assert_eq!(wamid.as_deref(), Some("wamid.OK1"));
    let request = &herald_tests::sends(&cloud_api).await[0];
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
    let cloud_api = refusing_then_accepting(graph_error(500, 131000), 2).await;
    let (status, attempts, _, _) = send_one(&cloud_api).await;
    assert_eq!((status, attempts), (MessageStatus::Sent, 3));
}

#[tokio::test]
async fn a_transient_error_that_persists_fails_after_the_last_attempt() {
    let cloud_api = herald_tests::cloud_api().await;
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
    let cloud_api = refusing_then_accepting(graph_error(400, 130429), 4).await;
    let (status, attempts, _, _) = send_one(&cloud_api).await;
    assert_eq!((status, attempts), (MessageStatus::Sent, 1));
}

#[tokio::test]
async fn a_permanent_recipient_error_fails_at_once_with_its_code() {
    let cloud_api = herald_tests::cloud_api().await;
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

/// A campaign of `n` on one number with `token`, started; returns the API, the campaign and
/// the number.
async fn started(
    ctx: &TestContext,
    stack: &Stack,
    token: &str,
    n: usize,
) -> (
    herald::client::ApiClient,
    herald_shared::domain::CampaignId,
    herald_shared::domain::NumberId,
) {
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_untested_number("300000000001", token, 50)
        .await
        .unwrap();
    let campaign = fixtures::campaign(&api, "c", &[number.id], n)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    (api, campaign.id, number.id)
}

#[tokio::test]
async fn an_expired_token_pauses_the_number_keeps_its_messages_and_a_new_token_sends_them() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer expired"))
        .respond_with(graph_error(401, 190))
        .mount(&cloud_api)
        .await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer fresh"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    let (ctx, stack) = against(&cloud_api, |_| {}).await;
    let (api, campaign, number) = started(&ctx, &stack, "expired", 3).await;

    let state = || async {
        sqlx::query_scalar::<_, herald_shared::domain::NumberState>(
            "SELECT state FROM sender_numbers WHERE id = $1",
        )
        .bind(number)
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
    };
    eventually("the number paused", Duration::from_secs(20), || async {
        (state().await == herald_shared::domain::NumberState::PausedAuth).then_some(())
    })
    .await;
    // Fan-out marks messages `queued` beside its appends, so wait for that too.
    let c = eventually("all marked queued", Duration::from_secs(10), || async {
        let c = api.campaign(campaign).await.unwrap().counters;
        (c.pending == 0).then_some(c)
    })
    .await;
    assert_eq!((c.queued, c.failed), (3, 0), "nothing failed, nothing lost");

    api.put(
        &format!("/v1/numbers/{number}/token"),
        &json!({"access_token": "fresh"}),
    )
    .await
    .unwrap();
    eventually("all three sent", Duration::from_secs(20), || async {
        (api.campaign(campaign).await.unwrap().counters.sent == 3).then_some(())
    })
    .await;
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_template_error_pauses_the_campaign_with_its_reason_and_fails_nothing() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(graph_error(404, 132001))
        .mount(&cloud_api)
        .await;
    let (ctx, stack) = against(&cloud_api, |_| {}).await;
    let (api, campaign, _) = started(&ctx, &stack, "t", 3).await;
    let view = eventually("the campaign paused", Duration::from_secs(20), || async {
        let view = api.campaign(campaign).await.unwrap();
        // Fan-out marks messages `queued` beside its appends, so wait for that too.
        (view.state == herald_shared::domain::CampaignState::Paused && view.counters.pending == 0)
            .then_some(view)
    })
    .await;
    assert!(view.state_reason.unwrap().contains("132001"));
    assert_eq!((view.counters.queued, view.counters.failed), (3, 0));
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_shutdown_gives_up_on_stuck_sends_after_the_drain_time_and_keeps_them_pending() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(accepted_after(Duration::from_secs(30)))
        .mount(&cloud_api)
        .await;
    let (ctx, stack) = against(&cloud_api, |s| {
        s.whatsapp.request_timeout_ms = 60_000;
        s.sender.drain_ms = 300;
    })
    .await;
    let (_api, campaign, _) = started(&ctx, &stack, "t", 2).await;
    eventually("the sends under way", Duration::from_secs(10), || async {
        (herald_tests::sends(&cloud_api).await.len() == 2).then_some(())
    })
    .await;
    let stopping = std::time::Instant::now();
    stack.stop().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    // Nothing was recorded or lost: both stay queued, for the next owner to settle.
    assert_eq!(queued_and_sent(&ctx, campaign).await, (2, 0));
    ctx.cleanup().await;
}

/// (queued, sent) of a campaign, from Postgres.
async fn queued_and_sent(
    ctx: &TestContext,
    campaign: herald_shared::domain::CampaignId,
) -> (i64, i64) {
    sqlx::query_as("SELECT queued, sent FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

fn accepted_after(delay: Duration) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"messaging_product": "whatsapp",
            "messages": [{"id": "wamid.late"}]}))
        .set_delay(delay)
}

#[tokio::test]
async fn sends_answered_with_a_wamid_another_message_holds_are_still_recorded() {
    // Meta's ids are unique; a stand-in that repeats one must not hold up the recorder's batch.
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "messages": [{"id": "wamid.SAME"}]})))
        .mount(&cloud_api)
        .await;
    let (ctx, stack, campaign) = started_against(&cloud_api, 3).await;
    eventually("all three sent", Duration::from_secs(20), || async {
        (queued_and_sent(&ctx, campaign).await == (0, 3)).then_some(())
    })
    .await;
    // Each message keeps the wamid it was answered with; a receipt naming it moves one of
    // them, the lowest id.
    let receipt = Transition {
        message: MessageRef::WaId("wamid.SAME".into()),
        status: MessageStatus::Delivered,
        wa_message_id: None,
        at: chrono::Utc::now(),
        error_code: None,
        error_title: None,
        attempts: 0,
        number: None,
    };
    let applied = transitions::apply(&ctx.pool, &[receipt]).await.unwrap();
    assert_eq!(applied.changed, 1, "one message moved by the receipt");
    let delivered: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE campaign_id = $1 AND status = 'delivered'",
    )
    .bind(campaign)
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    let lowest: i64 = sqlx::query_scalar("SELECT min(id) FROM messages WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(delivered, vec![lowest]);
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// An idle number reads its stream ever less often (up to `block_ms` apart); fan-out rings its
/// doorbell when it appends, and the number reads at once.
#[tokio::test]
async fn an_idle_number_sends_as_soon_as_fan_out_appends_not_at_its_next_read() {
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    // Pauses up to 10 s (a third of the lease's TTL bounds them).
    let (ctx, stack) = against(&cloud_api, |s| {
        s.sender.block_ms = 10_000;
        s.sender.lease_ttl_ms = 30_000;
    })
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_untested_number("300000000001", "the-token", 50)
        .await
        .unwrap();
    let first = fixtures::campaign(&api, "first", &[number.id], 1)
        .await
        .unwrap();
    let second = fixtures::campaign(&api, "second", &[number.id], 1)
        .await
        .unwrap();
    // A first send makes the number's consumer, whose idle time Redis then reports.
    api.start(first.id).await.unwrap();
    eventually(
        "the first message sent",
        Duration::from_secs(20),
        || async { (queued_and_sent(&ctx, first.id).await == (0, 1)).then_some(()) },
    )
    .await;
    // Idle for 3 s (Redis counts from the last delivery, or from the last read since 7.2): its
    // pauses have doubled from 5 ms past 2.56 s, so without the bell its next read is at least
    // 2 s away.
    let stream =
        herald_shared::stream::Keys::new(ctx.settings.redis.key_prefix.clone()).stream(number.id);
    let redis = ctx.redis().await;
    eventually("the number idle for 3 s", Duration::from_secs(20), || {
        let (mut redis, stream) = (redis.clone(), stream.clone());
        async move {
            let info: redis::streams::StreamInfoConsumersReply =
                redis::AsyncCommands::xinfo_consumers(&mut redis, &stream, "senders")
                    .await
                    .ok()?;
            info.consumers.iter().any(|c| c.idle >= 3_000).then_some(())
        }
    })
    .await;
    api.start(second.id).await.unwrap();
    eventually(
        "the second message sent",
        Duration::from_millis(1_500),
        || async { (queued_and_sent(&ctx, second.id).await == (0, 1)).then_some(()) },
    )
    .await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
