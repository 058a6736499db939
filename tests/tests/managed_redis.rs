//! Redis as a managed service offers it (issue #13, acceptance 4): a campaign end to end over
//! TLS (`rediss://`, the server's certificate checked against `redis.ca_file`), and on a
//! three-master Redis Cluster, where every script and multi-key command must stay in one
//! number's hash slot.

use std::time::Duration;

use herald::fixtures;
use herald::stack::{Roles, Stack};
use herald_tests::{PrivateRedis, RedisCluster, TestContext, assert_counters_match, eventually};

/// Sends a campaign of `recipients` over `numbers` numbers through every role and waits until
/// every message is read.
async fn campaign_end_to_end(ctx: &TestContext, numbers: usize, recipients: usize) {
    let stack = Stack::start(ctx.settings.clone(), Roles::ALL_WITH_SIMULATOR)
        .await
        .expect("the stack starts");
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut ids = Vec::new();
    for i in 0..numbers {
        let number = api
            .create_number(&format!("70000000000{i}"), "token", 500)
            .await
            .unwrap();
        ids.push(number.id);
    }
    let campaign = fixtures::campaign(&api, "managed redis", &ids, recipients)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    eventually("every message read", Duration::from_secs(60), || async {
        let c = api.campaign(campaign.id).await.unwrap().counters;
        (c.read as usize == recipients).then_some(())
    })
    .await;
    assert_counters_match(&ctx.pool, campaign.id).await;
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_end_to_end_over_tls() {
    let mut ctx = TestContext::new().await;
    let redis = PrivateRedis::start_tls().await;
    redis.configure(&mut ctx.settings.redis);
    assert!(redis.url().starts_with("rediss://"));
    campaign_end_to_end(&ctx, 2, 300).await;
    // Without the CA the server's certificate is refused.
    let mut untrusted = ctx.settings.redis.clone();
    untrusted.ca_file.clear();
    assert!(
        herald_shared::stream::conn::connect(&untrusted, Some(Duration::from_secs(2)))
            .await
            .is_err()
    );
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_end_to_end_on_a_three_master_redis_cluster() {
    let mut ctx = TestContext::new().await;
    let cluster = RedisCluster::start().await;
    cluster.configure(&mut ctx.settings.redis);
    campaign_end_to_end(&ctx, 6, 600).await;
    // The numbers' keys are spread over the masters, not all on one.
    let per_node = cluster.keys_per_node().await;
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "keys per node: {per_node:?}"
    );
    ctx.cleanup().await;
}
