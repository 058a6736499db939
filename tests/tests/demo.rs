//! `herald demo`'s campaign, small.

use herald_tests::TestContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_campaign_ends_with_every_message_final_and_exact_counters() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.demo.recipients = 300;
    let summary = herald::demo::run(settings, false).await.unwrap();
    assert!(summary.all_final());
    assert!(summary.counters_match);
    assert_eq!(summary.campaign.counters.read, 300);
    assert_eq!(summary.simulator.accepted_total, 300);
    assert_eq!(summary.simulator.duplicate_recipients, 0);
    assert_eq!(summary.deadlocks, 0, "Postgres counted no deadlock");
    ctx.cleanup().await;
}
