//! Each class of Cloud API outcome (reference §2) takes its action, against the simulator with
//! the fault configured (issue #4, acceptance 1); counters equal a `GROUP BY status` after.

use std::time::{Duration, Instant};

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_shared::domain::{CampaignId, CampaignState, MessageStatus, NumberId, NumberState};
use herald_tests::{
    TestContext, assert_counters_match, configure_simulator, eventually, recipients,
};
use serde_json::{Value, json};

const PHONE: &str = "310000000001";

struct World {
    ctx: TestContext,
    stack: Stack,
    api: ApiClient,
    number: NumberId,
    campaign: CampaignId,
}

impl World {
    /// Ingest, a sender and the simulator configured with `simulator`; a campaign of `n`
    /// recipients on one number sending at `rate`, started.
    async fn start(simulator: Value, n: usize, rate: u32) -> Self {
        let ctx = TestContext::new().await;
        let roles = Roles {
            ingest: true,
            sender: true,
            webhook: false,
            simulator: true,
        };
        let stack = Stack::start(ctx.settings.clone(), roles).await.unwrap();
        configure_simulator(&stack, simulator).await;
        let api = ctx.tenant(&stack.ingest_url).await;
        let number = api.create_number(PHONE, "t", rate).await.unwrap().id;
        let campaign = api
            .create_campaign("classes", "spring_sale_2026", "en_GB", &[number])
            .await
            .unwrap()
            .id;
        api.upload(campaign, &recipients(n)).await.unwrap();
        api.start(campaign).await.unwrap();
        Self {
            ctx,
            stack,
            api,
            number,
            campaign,
        }
    }

    /// Each message's (status, attempts, error code), by id.
    async fn messages(&self) -> Vec<(MessageStatus, i32, Option<i32>)> {
        sqlx::query_as(
            "SELECT status, attempts, error_code FROM messages WHERE campaign_id = $1 ORDER BY id",
        )
        .bind(self.campaign)
        .fetch_all(&self.ctx.pool)
        .await
        .unwrap()
    }

    /// Waits until no message is pending or queued.
    async fn settled(&self, within: Duration) -> Vec<(MessageStatus, i32, Option<i32>)> {
        eventually("every message settled", within, || async {
            let c = self.api.campaign(self.campaign).await.unwrap().counters;
            (c.pending + c.queued == 0).then_some(())
        })
        .await;
        self.messages().await
    }

    async fn number_state(&self) -> NumberState {
        sqlx::query_scalar("SELECT state FROM sender_numbers WHERE id = $1")
            .bind(self.number)
            .fetch_one(&self.ctx.pool)
            .await
            .unwrap()
    }

    async fn finish(self) {
        assert_counters_match(&self.ctx.pool, self.campaign).await;
        self.stack.stop().await.unwrap();
        self.ctx.cleanup().await;
    }
}

fn fault(code: i64, probability: f64) -> Value {
    json!({"faults": [{"kind": "error", "code": code, "probability": probability}]})
}

#[tokio::test]
async fn transient_errors_are_retried_up_to_the_attempt_limit() {
    let w = World::start(fault(131000, 0.5), 40, 200).await;
    let messages = w.settled(Duration::from_secs(30)).await;
    let max_attempts = w.ctx.settings.sender.max_attempts;
    for (status, attempts, code) in &messages {
        match status {
            MessageStatus::Sent => assert!((1..=max_attempts).contains(attempts)),
            MessageStatus::Failed => {
                assert_eq!((*attempts, *code), (max_attempts, Some(131000)))
            }
            other => panic!("a transient error ends sent or failed, not {other:?}"),
        }
    }
    assert!(
        messages
            .iter()
            .any(|(s, a, _)| *s == MessageStatus::Sent && *a > 1),
        "some were sent on a retry: {messages:?}"
    );
    w.finish().await;
}

#[tokio::test]
async fn a_bare_503_is_transient_too() {
    let w = World::start(
        json!({"faults": [{"kind": "http", "status": 503, "probability": 1.0}]}),
        3,
        50,
    )
    .await;
    let messages = w.settled(Duration::from_secs(30)).await;
    let max_attempts = w.ctx.settings.sender.max_attempts;
    assert!(
        messages
            .iter()
            .all(|m| m.0 == MessageStatus::Failed && m.1 == max_attempts),
        "{messages:?}"
    );
    w.finish().await;
}

#[tokio::test]
async fn throttling_by_the_cap_slows_the_number_and_uses_no_attempt() {
    // Herald is told 100 msg/s; the simulator allows 5.
    let w = World::start(json!({"cap_per_number": 5}), 30, 100).await;
    let messages = w.settled(Duration::from_secs(60)).await;
    assert!(
        messages
            .iter()
            .all(|m| *m == (MessageStatus::Sent, 1, None)),
        "{messages:?}"
    );
    let stats = herald_tests::simulator_stats(&w.stack.simulator_url).await;
    assert!(stats.rejected.get(&130429).copied().unwrap_or(0) > 0);
    let rate: i32 = sqlx::query_scalar("SELECT current_rate FROM sender_numbers WHERE id = $1")
        .bind(w.number)
        .fetch_one(&w.ctx.pool)
        .await
        .unwrap();
    assert!(rate < 100, "the number's rate came down: {rate}");
    w.finish().await;
}

#[tokio::test]
async fn the_pair_rate_limit_retries_the_recipient_after_four_seconds() {
    let started = Instant::now();
    let w = World::start(fault(131056, 1.0), 1, 50).await;
    eventually("the refusal", Duration::from_secs(10), || async {
        let stats = herald_tests::simulator_stats(&w.stack.simulator_url).await;
        (stats.rejected.get(&131056).copied().unwrap_or(0) > 0).then_some(())
    })
    .await;
    configure_simulator(&w.stack, json!({"faults": []})).await;
    let messages = w.settled(Duration::from_secs(30)).await;
    assert_eq!(messages, vec![(MessageStatus::Sent, 2, None)]);
    assert!(started.elapsed() >= Duration::from_secs(4), "4^1 s between");
    w.finish().await;
}

#[tokio::test]
async fn a_permanent_recipient_error_fails_the_message_at_once_with_its_code() {
    let w = World::start(fault(131026, 1.0), 3, 50).await;
    let messages = w.settled(Duration::from_secs(20)).await;
    assert_eq!(messages, vec![(MessageStatus::Failed, 1, Some(131026)); 3]);
    w.finish().await;
}

#[tokio::test]
async fn a_user_who_stopped_marketing_messages_is_suppressed_for_the_tenant() {
    let w = World::start(fault(131050, 1.0), 2, 50).await;
    let messages = w.settled(Duration::from_secs(20)).await;
    assert_eq!(messages, vec![(MessageStatus::Failed, 1, Some(131050)); 2]);
    let listed = eventually("both suppressed", Duration::from_secs(10), || async {
        let list: herald_ingest::views::Page<herald_ingest::views::SuppressionRow> =
            w.api.get("/v1/suppressions").await.unwrap();
        (list.items.len() == 2).then_some(list)
    })
    .await;
    assert_eq!(listed.items[0].reason, "permanent_failure");
    w.finish().await;
}

#[tokio::test]
async fn a_token_or_policy_error_pauses_the_number_and_keeps_its_messages_until_resumed() {
    for (code, paused) in [
        (190, NumberState::PausedAuth),
        (368, NumberState::PausedQuality),
    ] {
        let w = World::start(fault(code, 1.0), 3, 50).await;
        eventually("the number paused", Duration::from_secs(20), || async {
            (w.number_state().await == paused).then_some(())
        })
        .await;
        let c = eventually("all queued", Duration::from_secs(10), || async {
            let c = w.api.campaign(w.campaign).await.unwrap().counters;
            (c.pending == 0).then_some(c)
        })
        .await;
        assert_eq!((c.queued, c.failed, c.sent), (3, 0, 0), "code {code}");
        let view: herald_ingest::views::NumberView = w
            .api
            .get(&format!("/v1/numbers/{}", w.number))
            .await
            .unwrap();
        let reason = view.state_reason.unwrap_or_default();
        assert!(reason.contains(&code.to_string()), "{reason}");
        // The operator fixed it.
        configure_simulator(&w.stack, json!({"faults": []})).await;
        w.api
            .act(&format!("/v1/numbers/{}/resume", w.number))
            .await
            .unwrap();
        let messages = w.settled(Duration::from_secs(20)).await;
        assert_eq!(
            messages,
            vec![(MessageStatus::Sent, 1, None); 3],
            "code {code}"
        );
        assert_eq!(w.number_state().await, NumberState::Active);
        w.finish().await;
    }
}

#[tokio::test]
async fn a_template_error_pauses_the_campaign_with_its_reason_until_resumed() {
    let w = World::start(fault(132001, 1.0), 3, 50).await;
    let view = eventually("the campaign paused", Duration::from_secs(20), || async {
        let view = w.api.campaign(w.campaign).await.unwrap();
        (view.state == CampaignState::Paused).then_some(view)
    })
    .await;
    assert!(
        view.state_reason
            .as_deref()
            .is_some_and(|r| r.contains("132001")),
        "{view:?}"
    );
    configure_simulator(&w.stack, json!({"faults": []})).await;
    w.api.resume(w.campaign).await.unwrap();
    let messages = w.settled(Duration::from_secs(20)).await;
    assert_eq!(messages, vec![(MessageStatus::Sent, 1, None); 3]);
    w.finish().await;
}
