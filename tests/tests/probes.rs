//! `/livez` and `/readyz` on every role (#13): ready only while Postgres and Redis answer,
//! and not from the moment a shutdown begins.

use herald_shared::health::Probes;
use herald_tests::TestContext;
use secrecy::SecretString;

async fn answer(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn every_role_is_live_and_ready_while_postgres_and_redis_answer() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let sender = stack
        .sender_metrics_url
        .trim_end_matches("/metrics")
        .to_owned();
    for base in [&stack.ingest_url, &stack.webhook_url, &sender] {
        assert_eq!(answer(&format!("{base}/livez")).await.0, 200, "{base}");
        assert_eq!(
            answer(&format!("{base}/readyz")).await,
            (200, "ready".to_owned()),
            "{base}"
        );
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_role_is_not_ready_without_postgres_nor_once_it_drains() {
    let ctx = TestContext::new().await;
    let redis = ctx.redis().await;
    let probes = Probes::new(ctx.pool.clone(), redis.clone());
    assert_eq!(probes.ready().await, Ok(()));
    let shutdown = tokio_util::sync::CancellationToken::new();
    probes.drain_on(shutdown.clone());
    shutdown.cancel();
    herald_tests::eventually("draining", std::time::Duration::from_secs(5), || async {
        probes.ready().await.err()
    })
    .await;
    let (status, why) = probes.readiness().await;
    assert_eq!(status.as_u16(), 503);
    assert!(why.starts_with("draining"), "{why}");

    // A database nobody listens on.
    let mut settings = ctx.settings.database.clone();
    settings.url = SecretString::from("postgres://postgres@127.0.0.1:9/nothing".to_owned());
    let unreachable = herald_shared::db::pool(&settings).unwrap();
    let why = Probes::new(unreachable, redis).ready().await.unwrap_err();
    assert!(why.starts_with("Postgres does not answer"), "{why}");
    ctx.cleanup().await;
}
