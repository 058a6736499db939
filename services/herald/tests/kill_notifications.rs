//! Issue #17, notifications: the ingest process delivering an event is killed with SIGKILL
//! while the receiver has the request; the event is not lost: another ingest process delivers
//! it, with the same `webhook-id`, once the dead one's lease ends.

use std::time::Duration;

use herald_shared::crypto::TokenCipher;
use herald_shared::db::notifications::{self, NewEndpoint};
use herald_shared::domain::TenantId;
use herald_shared::standard_webhooks;
use herald_tests::{TestContext, eventually, seed_campaign};
use tokio::process::Child;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn spawn_ingest(ctx: &TestContext) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ctx.herald_command(env!("CARGO_BIN_EXE_herald"), "ingest")
        .env("HERALD__INGEST__PORT", port.to_string())
        .spawn()
        .expect("the herald binary starts")
}

/// The `webhook-id`s of the requests `receiver` got.
async fn ids(receiver: &MockServer) -> Vec<String> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            r.headers[standard_webhooks::ID]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_delivery_was_cut_by_a_kill_is_delivered_by_the_next_process() {
    let ctx = TestContext::new().await;
    let receiver = MockServer::start().await;
    // The first request is held (the process delivering it is killed meanwhile), then 204s.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(600)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (campaign, _) = seed_campaign(&ctx, 1).await;
    let tenant: TenantId = sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let cipher = TokenCipher::from_base64(&ctx.settings.security.token_encryption_key).unwrap();
    let id = uuid::Uuid::now_v7();
    let events = ["campaign.paused".to_owned()];
    notifications::insert_endpoint(
        &ctx.pool,
        &NewEndpoint {
            id,
            tenant,
            url: &format!("{}/hook", receiver.uri()),
            events: &events,
            description: None,
            secret: &cipher.encrypt(&standard_webhooks::new_secret(), id.as_bytes()),
        },
    )
    .await
    .unwrap();

    let mut first = spawn_ingest(&ctx);
    sqlx::query("UPDATE campaigns SET state = 'paused', state_reason = 'test' WHERE id = $1")
        .bind(campaign)
        .execute(&ctx.pool)
        .await
        .unwrap();
    let held = eventually(
        "the receiver holds the delivery",
        Duration::from_secs(30),
        || async { ids(&receiver).await.first().cloned() },
    )
    .await;
    first.kill().await.unwrap();

    let mut second = spawn_ingest(&ctx);
    let state: (String, i32) = eventually(
        "the event delivered by the next process",
        Duration::from_secs(30),
        || async {
            let row: (String, i32) =
                sqlx::query_as("SELECT state::text, attempts FROM event_deliveries")
                    .fetch_one(&ctx.pool)
                    .await
                    .unwrap();
            (row.0 == "delivered").then_some(row)
        },
    )
    .await;
    assert_eq!(state.1, 2, "taken again once");
    assert_eq!(
        ids(&receiver).await,
        vec![held.clone(), held],
        "the same event, twice"
    );
    second.kill().await.unwrap();
    ctx.cleanup().await;
}
