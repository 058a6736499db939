//! Scheduled campaigns (#12): started at their time by one of several ingest replicas, once;
//! scheduled and unscheduled by the API; started late or expired when Herald was down.

use std::time::Duration;

use chrono::SubsecRound;

use herald::client::ApiClient;
use herald::fixtures;
use herald::stack::{Roles, Stack};
use herald_ingest::views::CampaignView;
use herald_shared::domain::{CampaignState, NumberId};
use herald_tests::{TestContext, eventually, refusal};
use serde_json::json;

/// A campaign of `n` recipients on `number`, scheduled `at` with `overdue` when given.
async fn scheduled(
    api: &ApiClient,
    number: NumberId,
    n: usize,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> CampaignView {
    let mut body = json!({"name": "later", "sender_numbers": [number],
        "template": {"name": fixtures::TEMPLATE, "language": fixtures::LANGUAGE}});
    if let Some(at) = at {
        body["scheduled_at"] = json!(at);
    }
    let campaign: CampaignView = api.post("/v1/campaigns", &body).await.unwrap();
    fixtures::upload_recipients(api, campaign.id, n)
        .await
        .unwrap();
    campaign
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_campaign_starts_within_a_second_of_its_time_once_with_two_ingest_replicas() {
    let ctx = TestContext::new().await;
    let first = ctx.start_stack().await;
    let mut settings = first.settings.clone();
    settings.whatsapp.base_url = first.simulator_url.clone();
    let second = Stack::start(settings, Roles::INGEST).await.unwrap();
    let api = ctx.tenant(&first.ingest_url).await;
    let number = api
        .create_number("650000000001", "t", 200)
        .await
        .unwrap()
        .id;
    // Postgres keeps microseconds.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(6);
    let campaign = scheduled(&api, number, 20, Some(at)).await;
    assert_eq!(campaign.state, CampaignState::Scheduled);
    assert_eq!(campaign.scheduled_at, Some(at));

    let started = eventually("the campaign started", Duration::from_secs(15), || async {
        let view = api.campaign(campaign.id).await.unwrap();
        view.started_at.map(|_| view)
    })
    .await;
    let late = started.started_at.unwrap() - at;
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
        "started {late} after its time"
    );
    let done = eventually("every message sent", Duration::from_secs(30), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.pending + c.queued == 0).then_some(c)
    })
    .await;
    assert_eq!(done.failed, 0);
    let stats = herald_tests::simulator_stats(&first.simulator_url).await;
    assert_eq!(
        stats.accepted_total, 20,
        "each message sent once: {stats:?}"
    );
    assert_eq!(stats.duplicate_callbacks, 0, "{stats:?}");
    second.stop().await.unwrap();
    first.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn campaigns_are_scheduled_and_unscheduled_and_a_missed_time_starts_or_expires() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api
        .create_number("650000000002", "t", 200)
        .await
        .unwrap()
        .id;
    let expiring = scheduled(&api, number, 3, None).await;
    let late = scheduled(&api, number, 3, None).await;
    let path = |c: &CampaignView, action: &str| format!("/v1/campaigns/{}/{action}", c.id);
    let hour = chrono::Utc::now() + chrono::Duration::hours(1);

    let past = refusal(
        api.post::<CampaignView>(
            &path(&late, "schedule"),
            &json!({"scheduled_at": chrono::Utc::now() - chrono::Duration::minutes(5)}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(past.status, 422);
    assert_eq!(past.body["error"]["fields"][0]["field"], "scheduled_at");
    let not_scheduled = refusal(
        api.post::<CampaignView>(&path(&late, "unschedule"), &json!({}))
            .await
            .unwrap_err(),
    );
    assert_eq!(not_scheduled.status, 409);
    let view: CampaignView = api
        .post(
            &path(&expiring, "schedule"),
            &json!({"scheduled_at": hour, "overdue": "expire"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (view.state, view.overdue.as_str()),
        (CampaignState::Scheduled, "expire")
    );
    let view: CampaignView = api
        .post(&path(&expiring, "unschedule"), &json!({}))
        .await
        .unwrap();
    assert_eq!(view.state, CampaignState::Draft);
    for (c, overdue) in [(&expiring, "expire"), (&late, "start")] {
        api.post::<CampaignView>(
            &path(c, "schedule"),
            &json!({"scheduled_at": hour, "overdue": overdue}),
        )
        .await
        .unwrap();
    }

    // Herald is down when their time comes; it comes back an hour later.
    stack.stop().await.unwrap();
    sqlx::query("UPDATE campaigns SET scheduled_at = now() - interval '1 hour'")
        .execute(&ctx.pool)
        .await
        .unwrap();
    let stack = ctx.start_stack().await;
    let api = ApiClient::new(stack.ingest_url.clone(), api.key());
    let expired = eventually("the first expired", Duration::from_secs(10), || async {
        let v = api.campaign(expiring.id).await.unwrap();
        (v.state == CampaignState::Cancelled && v.counters.cancelled == 3).then_some(v)
    })
    .await;
    assert!(
        expired
            .state_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("expired")),
        "{expired:?}"
    );
    let started = eventually(
        "the second started late",
        Duration::from_secs(10),
        || async {
            let v = api.campaign(late.id).await.unwrap();
            v.started_at.map(|_| v)
        },
    )
    .await;
    assert_ne!(started.state, CampaignState::Scheduled);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
