//! Issue #18, an audience from the inbound side: a follow-up campaign to everyone who replied
//! to an earlier one, or to everyone who wrote in since a time, drawn from the messages users
//! sent (`GET /v1/inbound`) and deduplicated like any upload.

use std::time::Duration;

use herald::fixtures::Simulator;
use herald_tests::{TestContext, configure_simulator, eventually, recipients};
use serde_json::{Value, json};

#[tokio::test]
async fn a_follow_up_reaches_exactly_who_replied_or_wrote_in() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    // The simulator keeps what it is sent, to be compared with who should get it.
    configure_simulator(&stack, json!({"capture": 1000})).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("310000000051", "t", 500).await.unwrap();
    let first = api
        .create_campaign("first", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    api.upload(first.id, &recipients(5)).await.unwrap();
    api.start(first.id).await.unwrap();
    eventually(
        "the first campaign sent",
        Duration::from_secs(20),
        || async {
            let c = api.campaign(first.id).await.unwrap().counters;
            (c.sent + c.delivered + c.read == 5).then_some(())
        },
    )
    .await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(60);
    // Three of the five answer (one twice); someone never sent to writes in.
    let http = reqwest::Client::new();
    for (from, body) in [
        ("447400000000", "yes please"),
        ("447400000002", "how much?"),
        ("447400000002", "still waiting"),
        ("447400000004", "STOP"),
        ("447499999999", "hello, who is this?"),
    ] {
        http.post(format!("{}/sim/inbound", stack.simulator_url))
            .json(&json!({"phone_number_id": "310000000051", "from": from,
                          "type": "text", "body": body}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
    eventually(
        "every message in the inbox",
        Duration::from_secs(20),
        || async {
            let page: Value = api.get("/v1/inbound").await.unwrap();
            (page["items"].as_array().unwrap().len() == 5).then_some(())
        },
    )
    .await;

    let follow_up = api
        .create_campaign("follow-up", "hello_world", "en_US", &[number.id])
        .await
        .unwrap();
    let report: Value = api
        .post(
            &format!("/v1/campaigns/{}/recipients", follow_up.id),
            &json!({"from": "replied_to", "campaign_id": first.id}),
        )
        .await
        .unwrap();
    // The one who said STOP is kept, suppressed, like in any upload.
    assert_eq!(
        (&report["rows"], &report["accepted"], &report["suppressed"]),
        (&json!(3), &json!(2), &json!(1)),
        "{report}"
    );
    let listed: Value = api
        .get(&format!("/v1/campaigns/{}/messages", follow_up.id))
        .await
        .unwrap();
    let mut phones: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["recipient"].as_str().unwrap())
        .collect();
    phones.sort_unstable();
    assert_eq!(phones, ["+447400000000", "+447400000002", "+447400000004"]);
    // Again: each recipient once per campaign.
    let again: Value = api
        .post(
            &format!("/v1/campaigns/{}/recipients", follow_up.id),
            &json!({"from": "replied_to", "campaign_id": first.id}),
        )
        .await
        .unwrap();
    assert_eq!(
        (&again["accepted"], &again["duplicates"]),
        (&json!(0), &json!(3))
    );

    let simulator = Simulator::new(stack.simulator_url.clone());
    let before = simulator.sent().await.unwrap().len();
    api.start(follow_up.id).await.unwrap();
    let sent = eventually("the follow-up sent", Duration::from_secs(20), || async {
        let sent = simulator.sent().await.unwrap();
        (sent.len() == before + 2).then_some(sent)
    })
    .await;
    let mut to: Vec<&str> = sent[before..]
        .iter()
        .map(|b| b["to"].as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["+447400000000", "+447400000002"]);

    // Everyone who wrote in since: the outsider too.
    let since_campaign = api
        .create_campaign("since", "hello_world", "en_US", &[number.id])
        .await
        .unwrap();
    let report: Value = api
        .post(
            &format!("/v1/campaigns/{}/recipients", since_campaign.id),
            &json!({"from": "inbound_since", "since": since}),
        )
        .await
        .unwrap();
    assert_eq!(
        (&report["rows"], &report["accepted"]),
        (&json!(4), &json!(3)),
        "{report}"
    );
    let later: Value = api
        .post(
            &format!("/v1/campaigns/{}/recipients", since_campaign.id),
            &json!({"from": "inbound_since", "since": chrono::Utc::now() + chrono::Duration::hours(1)}),
        )
        .await
        .unwrap();
    assert_eq!(later["rows"], 0);

    // Refused: another tenant's campaign, a shape that is no audience.
    let other = ctx.tenant(&stack.ingest_url).await;
    let theirs = other
        .create_campaign(
            "theirs",
            "hello_world",
            "en_US",
            &[other
                .create_number("310000000052", "t", 50)
                .await
                .unwrap()
                .id],
        )
        .await
        .unwrap();
    let refused = other
        .post::<Value>(
            &format!("/v1/campaigns/{}/recipients", theirs.id),
            &json!({"from": "replied_to", "campaign_id": first.id}),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("campaign_id"), "{refused}");
    let bad = api
        .post::<Value>(
            &format!("/v1/campaigns/{}/recipients", since_campaign.id),
            &json!({"from": "everyone"}),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("422"), "{bad}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
