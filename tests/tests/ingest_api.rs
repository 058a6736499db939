//! The HTTP API: authentication, tenancy, validation, and what it never shows.

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_ingest::views::{CampaignView, UploadReport};
use herald_shared::domain::MessageStatus;
use herald_tests::{TestContext, assert_counters_match, recipients, refusal};
use serde_json::json;

async fn campaign_with_number(api: &ApiClient, phone_number_id: &str) -> CampaignView {
    let number = api
        .create_number(phone_number_id, "secret-token", 80)
        .await
        .unwrap();
    api.create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_key_get_a_json_401() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let nobody = ApiClient::new(stack.ingest_url.clone(), "hk_guessed_key".to_owned().into());
    let e = refusal(
        nobody
            .get::<serde_json::Value>("/v1/campaigns/01a20d5a-8569-700a-a4f3-e55d38a0c449")
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 401);
    assert_eq!(e.body["error"]["code"], "unauthorized");
    let anonymous = reqwest::get(format!("{}/v1/campaigns/x", stack.ingest_url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn another_tenants_campaign_and_numbers_are_invisible() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let alice = ctx.tenant(&stack.ingest_url).await;
    let mallory = ctx.tenant(&stack.ingest_url).await;
    let campaign = campaign_with_number(&alice, "200000000001").await;
    let e = refusal(mallory.campaign(campaign.id).await.unwrap_err());
    assert_eq!(e.status, 404);
    let e = refusal(mallory.start(campaign.id).await.unwrap_err());
    assert_eq!(e.status, 404);
    // Alice's number cannot be put in Mallory's campaign.
    let alices_number = alice.create_number("200000000002", "t", 80).await.unwrap();
    let e = refusal(
        mallory
            .create_campaign("m", "t", "en", &[alices_number.id])
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 422);
    assert!(
        e.body["error"]["fields"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not one of your numbers")
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn invalid_phones_are_reported_by_row_and_the_valid_rows_are_stored_once() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let campaign = campaign_with_number(&api, "200000000003").await;
    let mut rows = recipients(3);
    rows.insert(1, ("07400 000001".into(), vec![]));
    rows.push(("+44 7400 000000".into(), vec!["again".into(), "10%".into()]));
    rows.push(("not a phone".into(), vec![]));
    rows.push((
        "+447400000009".into(),
        vec!["two\nlines".into(), "10%".into()],
    ));
    rows.push(("+447400000010".into(), vec!["one value".into()]));
    let report: UploadReport = api.upload(campaign.id, &rows).await.unwrap();
    assert_eq!(report.accepted, 3);
    assert_eq!(report.duplicates, 1);
    let rejected: Vec<(usize, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.row, r.field.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![(2, "phone"), (6, "phone"), (7, "body.1"), (8, "body.2")]
    );
    assert!(
        report.rejected[0].reason.contains("country code"),
        "{:?}",
        report.rejected[0]
    );

    // Uploading the same rows again adds nothing.
    let again = api.upload(campaign.id, &rows).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 4));
    let view = api.campaign(campaign.id).await.unwrap();
    assert_eq!((view.counters.total, view.counters.pending), (3, 3));
    assert_counters_match(&ctx.pool, campaign.id).await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT recipient FROM messages ORDER BY recipient")
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        vec!["+447400000000", "+447400000001", "+447400000002"]
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_number_access_token_is_stored_encrypted_and_never_returned() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let answer: serde_json::Value = api
        .post(
            "/v1/numbers",
            &json!({"phone_number_id": "200000000004", "waba_id": "210000000000002",
                    "display_number": "+44 7400 000004", "access_token": "EAAG-very-secret"}),
        )
        .await
        .unwrap();
    assert!(!answer.to_string().contains("EAAG-very-secret"));
    assert_eq!(answer["rate"], 80);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT access_token FROM sender_numbers")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert!(!stored.windows(4).any(|w| w == b"EAAG"));
    // Registering the same phone_number_id again is a conflict.
    let e = refusal(
        api.create_number("200000000004", "x", 80)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 409);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_campaign_starts_once_and_only_with_recipients() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let campaign = campaign_with_number(&api, "200000000005").await;
    assert_eq!(
        refusal(api.start(campaign.id).await.unwrap_err()).status,
        409
    );
    api.upload(campaign.id, &recipients(2)).await.unwrap();
    api.start(campaign.id).await.unwrap();
    assert_eq!(
        refusal(api.start(campaign.id).await.unwrap_err()).status,
        409
    );
    // After the start, the list is closed.
    let e = refusal(api.upload(campaign.id, &recipients(3)).await.unwrap_err());
    assert_eq!(e.status, 409);
    // Fan-out queues both messages in the number's stream.
    herald_tests::eventually(
        "both queued",
        std::time::Duration::from_secs(10),
        || async {
            let c = herald_shared::db::campaigns::count_by_status(&ctx.pool, campaign.id)
                .await
                .unwrap();
            (c == vec![(MessageStatus::Queued, 2)]).then_some(())
        },
    )
    .await;
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_and_a_malformed_id_a_400() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let e = refusal(
        api.post::<serde_json::Value>("/v1/campaigns", &json!({"name": 3}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 422);
    assert_eq!(e.body["error"]["code"], "invalid");
    let e = refusal(
        api.get::<serde_json::Value>("/v1/campaigns/not-a-uuid")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.status.as_u16(), e.body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
