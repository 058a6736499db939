//! Number management over HTTP (#12): register after a connection test, list, read, change,
//! delete, test; against the simulator as the Cloud API.

use herald::client::{ApiClient, ApiRefusal};
use herald::stack::{Roles, Stack};
use herald_ingest::views::{NumberView, TestReport};
use herald_tests::{TestContext, refusal};
use serde_json::{Value, json};

/// The `details` of a 422, as `(field, reason)`.
fn details(r: &ApiRefusal) -> Vec<(String, String)> {
    r.body["error"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["field"].as_str().unwrap_or_default().to_owned(),
                d["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn register(api: &ApiClient, body: Value) -> anyhow::Result<NumberView> {
    api.post("/v1/numbers", &body).await
}

#[tokio::test]
async fn numbers_are_listed_read_changed_and_deleted_once_no_campaign_needs_them() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let phone = "620000000001";
    herald_tests::configure_simulator(
        &stack,
        json!({"numbers": [{"phone_number_id": phone, "cap": 1000, "quality_rating": "YELLOW",
                            "messaging_limit": "TIER_10K",
                            "display_phone_number": "+44 7400 620001"}]}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    // Tested on registration: what Meta says fills what the request left out.
    let number = register(
        &api,
        json!({"phone_number_id": phone, "waba_id": "210000000000001", "access_token": "t"}),
    )
    .await
    .unwrap();
    assert_eq!(number.display_number, "+44 7400 620001");
    assert_eq!(number.throughput_ceiling, 1000);
    assert_eq!(number.verified_name.as_deref(), Some("Simulated Business"));
    assert_eq!(number.quality_rating.as_deref(), Some("YELLOW"));
    assert_eq!(number.messaging_limit.as_deref(), Some("TIER_10K"));
    assert_eq!(number.throughput_level.as_deref(), Some("HIGH"));
    assert!(number.tested_at.is_some());

    let listed: Value = api.get("/v1/numbers").await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], json!(number.id));
    let path = format!("/v1/numbers/{}", number.id);
    let read: NumberView = api.get(&path).await.unwrap();
    assert_eq!(read.phone_number_id, phone);
    assert_eq!(read.state_reason, None);

    // Another tenant sees nothing of it.
    let other = ctx.tenant(&stack.ingest_url).await;
    assert_eq!(
        refusal(other.get::<Value>(&path).await.unwrap_err()).status,
        404
    );
    assert_eq!(refusal(other.delete(&path).await.unwrap_err()).status, 404);

    let changed: NumberView = api
        .patch(
            &path,
            &json!({"display_number": "Northwind UK", "throughput_ceiling": 50,
                    "portfolio_id": "pf-9"}),
        )
        .await
        .unwrap();
    assert_eq!(changed.display_number, "Northwind UK");
    assert_eq!(changed.throughput_ceiling, 50);
    assert!(changed.rate <= 50, "the rate follows a lower ceiling");
    assert_eq!(changed.portfolio_id.as_deref(), Some("pf-9"));
    let out: NumberView = api
        .patch(&path, &json!({"portfolio_id": null}))
        .await
        .unwrap();
    assert_eq!(out.portfolio_id, None);
    assert_eq!(
        out.display_number, "Northwind UK",
        "absent fields are left alone"
    );
    let bad = refusal(
        api.patch::<Value>(&path, &json!({"throughput_ceiling": 0}))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.status, 422);
    assert_eq!(details(&bad)[0].0, "throughput_ceiling");

    // A running campaign keeps its number.
    let campaign = api
        .create_campaign("c", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    api.upload(
        campaign.id,
        &[("+447400000001".into(), vec!["Ada".into(), "10%".into()])],
    )
    .await
    .unwrap();
    api.start(campaign.id).await.unwrap();
    let busy = refusal(api.delete(&path).await.unwrap_err());
    assert_eq!(busy.status, 409);
    assert!(
        busy.body.to_string().contains(&campaign.id.to_string()),
        "{}",
        busy.body
    );
    api.cancel(campaign.id).await.unwrap();
    api.delete(&path).await.unwrap();
    assert_eq!(
        refusal(api.get::<Value>(&path).await.unwrap_err()).status,
        404
    );
    let listed: Value = api.get("/v1/numbers").await.unwrap();
    assert_eq!(listed["items"], json!([]));
    // Its phone_number_id is free again.
    register(
        &api,
        json!({"phone_number_id": phone, "waba_id": "210000000000001", "access_token": "t"}),
    )
    .await
    .unwrap();

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_refused_token_is_named_in_plain_words_by_registration_and_by_the_test() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let phone = "620000000002";
    herald_tests::configure_simulator(
        &stack,
        json!({"numbers": [{"phone_number_id": phone, "token": "EAAG-right"}]}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let body = |token: &str, verify: bool| {
        json!({"phone_number_id": phone, "waba_id": "210000000000002", "display_number": "+620000000002",
               "access_token": token, "verify": verify})
    };
    let refused = refusal(register(&api, body("EAAG-old", true)).await.unwrap_err());
    assert_eq!(refused.status, 422);
    let (field, reason) = details(&refused).remove(0);
    assert_eq!(field, "access_token");
    assert!(
        reason.contains("invalid or expired") && reason.contains("190"),
        "{reason}"
    );
    assert!(
        !refused.body.to_string().contains("EAAG-old"),
        "the token is never echoed"
    );
    let listed: Value = api.get("/v1/numbers").await.unwrap();
    assert_eq!(listed["items"], json!([]), "a refused number is not stored");

    // Untested, it is stored; its test then says what is wrong.
    let number = register(&api, body("EAAG-old", false)).await.unwrap();
    assert_eq!(number.tested_at, None);
    let test = format!("/v1/numbers/{}/test", number.id);
    let report: TestReport = api.post(&test, &json!({})).await.unwrap();
    assert!(!report.ok);
    let error = report.error.expect("the Cloud API's refusal");
    assert_eq!(error.code, Some(190));
    assert!(
        error.reason.contains("invalid or expired"),
        "{}",
        error.reason
    );

    api.put(
        &format!("/v1/numbers/{}/token", number.id),
        &json!({"access_token": "EAAG-right"}),
    )
    .await
    .unwrap();
    let report: TestReport = api.post(&test, &json!({})).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.profile.verified_name.as_deref(),
        Some("Simulated Business")
    );
    assert_eq!(report.profile.quality_rating.as_deref(), Some("GREEN"));
    // The simulator caps no number unless told: Meta's 1,000-a-second level.
    assert_eq!(report.profile.throughput_level(), Some("HIGH"));
    assert_eq!(report.profile.messaging_limit(), Some("TIER_UNLIMITED"));
    let read: NumberView = api
        .get(&format!("/v1/numbers/{}", number.id))
        .await
        .unwrap();
    assert!(read.tested_at.is_some());
    assert_eq!(read.quality_rating.as_deref(), Some("GREEN"));

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_number_is_registered_only_with_the_waba_that_lists_it() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let phone = "630000000001";
    herald_tests::configure_simulator(
        &stack,
        json!({"numbers": [{"phone_number_id": phone, "waba_id": "310000000000001"}]}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    // Another WABA's id: 80007 would hold the wrong numbers, templates come from the wrong place.
    let wrong = refusal(
        register(
            &api,
            json!({"phone_number_id": phone, "waba_id": "310000000000009", "access_token": "t"}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(wrong.status, 422);
    let fields = details(&wrong);
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "waba_id");
    assert!(
        fields[0].1.contains("does not list this phone number"),
        "{fields:?}"
    );
    let listed: Value = api.get("/v1/numbers").await.unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );
    // Untested on purpose, it is the operator's word.
    register(
        &api,
        json!({"phone_number_id": phone, "waba_id": "310000000000009", "access_token": "t",
               "display_number": "+1", "verify": false}),
    )
    .await
    .unwrap();
    // Its own WABA, on another tenant.
    let other = ctx.tenant(&stack.ingest_url).await;
    let phone_b = "630000000002";
    herald_tests::configure_simulator(
        &stack,
        json!({"numbers": [{"phone_number_id": phone, "waba_id": "310000000000001"},
                           {"phone_number_id": phone_b, "waba_id": "310000000000001"}]}),
    )
    .await;
    register(
        &other,
        json!({"phone_number_id": phone_b, "waba_id": "310000000000001", "access_token": "t"}),
    )
    .await
    .unwrap();
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
