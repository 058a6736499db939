//! Secrets never reach the logs (issue #15): a campaign through every role at `trace` level,
//! with known access tokens, app secret, verify token, token encryption key and API key, and
//! none of them anywhere in what every crate logged. Its own test binary: the log subscriber
//! is the process's.

use std::time::Duration;

use herald_tests::{TestContext, eventually, recipients};
use secrecy::{ExposeSecret, SecretString};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_at_trace_level_logs_none_of_its_secrets() {
    let log = std::env::temp_dir().join(format!("herald-trace-{}.log", uuid::Uuid::new_v4()));
    // Installed first (the test context's own logging then leaves it in place), at `trace`
    // for every crate whatever RUST_LOG says.
    let file = std::fs::File::create(&log).unwrap();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .expect("the first subscriber of this test binary");
    let mut ctx = TestContext::new().await;
    let app_secret = "app-secret-7f3a9c1e";
    let verify_token = "verify-token-5e1d0b";
    // 32 bytes, base64.
    let encryption_key = "dHJhY2UtdGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieSE=".to_owned();
    ctx.settings.webhook.app_secrets = vec![SecretString::from(app_secret)];
    ctx.settings.simulator.app_secret = SecretString::from(app_secret);
    ctx.settings.webhook.verify_token = SecretString::from(verify_token);
    ctx.settings.security.token_encryption_key = SecretString::from(encryption_key.clone());
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let tokens = ["EAAG-token-4b2e8d61", "EAAG-token-93c07f2a"];
    let a = api
        .create_number("880000000001", tokens[0], 200)
        .await
        .unwrap();
    let b = api
        .create_number("880000000002", tokens[1], 200)
        .await
        .unwrap();
    let campaign = api
        .create_campaign("secrets", "spring_sale_2026", "en_GB", &[a.id, b.id])
        .await
        .unwrap();
    api.upload(campaign.id, &recipients(20)).await.unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message read", Duration::from_secs(60), || async {
        let c = api.campaign(campaign.id).await.ok()?;
        (c.counters.read == 20).then_some(())
    })
    .await;
    // The verification handshake, and refusals that name what was wrong.
    let http = reqwest::Client::new();
    for token in [verify_token, "wrong-token"] {
        http.get(format!(
            "{}/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42",
            stack.webhook_url
        ))
        .send()
        .await
        .unwrap();
    }
    let refused = http
        .get(format!("{}/v1/campaigns", stack.ingest_url))
        .bearer_auth(format!("{}x", api.key().expose_secret()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    stack.stop().await.unwrap();

    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let _ = std::fs::remove_file(&log);
    // The capture works: every layer logged at trace level.
    for seen in ["TRACE", "herald_sender", "herald_webhook", "herald_ingest"] {
        assert!(text.contains(seen), "the log has no {seen}");
    }
    let key = api.key();
    let secrets = [
        ("an access token", tokens[0]),
        ("an access token", tokens[1]),
        ("the app secret", app_secret),
        ("the verify token", verify_token),
        ("the token encryption key", encryption_key.as_str()),
        ("the API key", key.expose_secret()),
    ];
    for (what, secret) in secrets {
        if let Some(at) = text.find(secret) {
            let line = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("{what} is in the log:\n{}", &text[line..end]);
        }
    }
    ctx.cleanup().await;
}
