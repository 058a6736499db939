//! `herald lag` and `herald top` (#13) list every number and campaign of a running stack.

use std::time::Duration;

use herald::bench;
use herald::fixtures;
use herald::ops;
use herald::stack::{Roles, Stack};
use herald_shared::domain::CampaignState;
use herald_shared::stream::Keys;
use herald_tests::{TestContext, eventually};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_top_show_every_number_and_campaign_of_a_running_stack() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for phone in ["670000000001", "670000000002"] {
        numbers.push(api.create_number(phone, "t", 20).await.unwrap().id);
    }
    let campaign = fixtures::campaign(&api, "ops", &numbers, 400)
        .await
        .unwrap();
    api.start(campaign.id).await.unwrap();
    let redis = ctx.redis().await;
    let keys = Keys::new(ctx.settings.redis.key_prefix.clone());
    // Both numbers owned and their streams filled while the campaign runs at 40 msg/s.
    let rows = eventually(
        "both numbers queued and owned",
        Duration::from_secs(20),
        || async {
            let rows = ops::lag(&ctx.pool, &redis, &keys).await.unwrap();
            rows.iter()
                .all(|r| r.owner.is_some() && r.length > 0)
                .then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.rate == 20 && r.oldest_age_s.is_some())
    );
    let table = ops::lag_table(&rows);
    for phone in ["+670000000001", "+670000000002"] {
        assert!(table.contains(phone), "{table}");
    }

    let top = ops::top(&ctx.pool, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
    let row = &top[0];
    assert_eq!(
        (row.id, row.state, row.total),
        (campaign.id, CampaignState::Running, 400)
    );
    assert!(row.rate > 0.0 && row.eta_s.is_some(), "{row:?}");
    assert!(ops::top_table(&top).contains(&campaign.id.to_string()));
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// `herald bench`'s world: a database of its own, migrated, and its Redis keys, all gone once
/// it is dropped (a run must not leave its campaigns to slow the next), even with a session
/// still in the database.
#[tokio::test]
async fn a_bench_world_has_a_database_of_its_own_that_goes_with_it() {
    let ctx = TestContext::new().await;
    let world = fixtures::World::isolate_database(ctx.settings.clone(), "bench")
        .await
        .unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    let test_database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert!(
        name.starts_with(&format!("{test_database}_bench_")),
        "{name}"
    );
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&world.pool)
        .await
        .expect("migrated");
    assert_eq!(messages, 0);
    let mut redis = ctx.redis().await;
    let key = format!("{}:probe", world.settings.redis.key_prefix);
    redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    // A session its pool does not own does not keep it: Postgres ends it.
    let url = world.settings.database.url.expose_secret().to_owned();
    let mut straggler = PgConnection::connect(&url).await.unwrap();

    world.drop().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the run's database is dropped");
    assert!(straggler.ping().await.is_err(), "the session in it ended");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the run's keys are deleted");
    ctx.cleanup().await;
}

/// `herald bench b1-prototype`, B1's yardstick: every message of its load is sent once and
/// recorded with its wamid (a small load, against the lean simulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_prototype_sends_and_records_every_message_once() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::SIMULATOR)
        .await
        .unwrap();
    let simulator = fixtures::Simulator::new(stack.simulator_url.clone());
    simulator
        .configure(&serde_json::json!({"lean": true}))
        .await
        .unwrap();
    let figures = bench::run(
        ctx.settings.clone(),
        bench::Workload::B1Prototype,
        &stack.simulator_url,
        Some(3_000),
        None,
    )
    .await
    .expect("every message sent and recorded");
    assert_eq!(figures["messages"], 3_000);
    assert_eq!(figures["simulator"]["accepted_total"], 3_000, "{figures}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// `herald bench b2 --rate`: the paced numbers at another rate, which the simulator holds
/// them to; refused for a workload whose numbers are not paced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_bench_runs_at_the_rate_it_is_given() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::SIMULATOR)
        .await
        .unwrap();
    let refused = bench::run(
        ctx.settings.clone(),
        bench::Workload::B1,
        &stack.simulator_url,
        Some(100),
        Some(50),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("--rate"), "{refused:#}");
    // Ten numbers at 40 msg/s: 400 messages take a second.
    let figures = bench::run(
        ctx.settings.clone(),
        bench::Workload::B2,
        &stack.simulator_url,
        Some(400),
        Some(40),
    )
    .await
    .expect("every message sent");
    let simulator = &figures["simulator"];
    assert_eq!(simulator["accepted_total"], 400, "{figures}");
    let busiest = simulator["max_per_second"].as_object().unwrap();
    assert_eq!(busiest.len(), 10, "{figures}");
    assert!(
        busiest.values().all(|n| n.as_u64().unwrap() <= 40),
        "a second over the rate: {figures}"
    );
    assert!(
        simulator["rejected"].as_object().unwrap().is_empty(),
        "{figures}"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// `herald bench statements`: each hot statement runs over every message of its campaign (the
/// run checks each batch did all it should), then the view's reads (each checks its counts),
/// and the figures name every phase.
#[tokio::test]
async fn the_statements_bench_runs_each_statement_over_every_message() {
    let ctx = TestContext::new().await;
    let figures = bench::run(
        ctx.settings.clone(),
        bench::Workload::Statements,
        "none",
        Some(1_200),
        None,
    )
    .await
    .expect("every statement ran over every message");
    assert_eq!(figures["messages"], 1_200);
    let phases: Vec<&str> = figures["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "record_sent",
            "webhook_log",
            "receipts",
            "view_by_number",
            "view_by_number_group_by"
        ]
    );
    for phase in figures["phases"].as_array().unwrap() {
        // The statements' rows are the messages; the view's reads are calls.
        let rows = match phase["name"].as_str().unwrap() {
            "view_by_number" => 500,
            "view_by_number_group_by" => 20,
            _ => 1_200,
        };
        assert_eq!(phase["rows"], rows, "{phase}");
        assert!(phase["wall_us_per_row"].as_f64().unwrap() > 0.0, "{phase}");
    }
    ctx.cleanup().await;
}
