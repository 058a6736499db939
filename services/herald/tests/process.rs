//! The `herald` binary as an operator runs it (issue #13): started with `HERALD_ENV` unset and
//! the public development secrets, every role refuses to start and names the setting; `herald
//! migrate` needs nothing but a database URL; `/readyz` goes false when Redis stops and from
//! the moment SIGTERM arrives, while the process still serves; after a number moves from one
//! sender process to another, the lag summed over both senders' `/metrics` is the true lag.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use herald::fixtures;
use herald::stack::{Roles, Stack};
use herald_shared::domain::NumberId;
use herald_tests::{PrivateRedis, TestContext, accepted, eventually};
use secrecy::ExposeSecret;
use sqlx::Connection;
use tokio::process::{Child, Command};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

/// `herald <args>` with nothing in its environment but `vars` and where to find `config/`.
async fn herald(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_clear()
        .env(
            "HERALD_CONFIG_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config"),
        )
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary starts");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("herald {args:?} should have exited"))
        .expect("herald's output")
}

#[tokio::test]
async fn every_role_refuses_the_development_secrets_when_herald_env_is_unset() {
    let ctx = TestContext::new().await;
    let s = &ctx.settings;
    let local = [
        ("HERALD__DATABASE__URL", s.database.url.expose_secret()),
        ("HERALD__REDIS__URL", s.redis.url.expose_secret()),
        (
            "HERALD__SECURITY__TOKEN_ENCRYPTION_KEY",
            "aGVyYWxkLWxvY2FsLWRldmVsb3BtZW50LWtleS0zMiE=",
        ),
        ("HERALD__WEBHOOK__VERIFY_TOKEN", "herald-local-verify-token"),
        ("HERALD__WEBHOOK__APP_SECRETS", "herald-local-app-secret"),
    ];
    for (role, setting) in [
        ("ingest", "security.token_encryption_key"),
        ("sender", "security.token_encryption_key"),
        ("webhook", "webhook.verify_token"),
        ("all", "security.token_encryption_key"),
    ] {
        let out = herald(&[role], &local).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "herald {role}: {stderr}");
        assert!(
            stderr.contains(&format!("{setting} is a public development secret"))
                && stderr.contains("HERALD_ENV=production"),
            "herald {role}: {stderr}"
        );
        assert!(!stderr.contains("herald-local"), "{stderr}");
    }
    // An empty one is named too.
    let out = herald(&["webhook"], &local[..2]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("webhook.verify_token is empty: set HERALD__WEBHOOK__VERIFY_TOKEN"),
        "{stderr}"
    );
    let out = herald(&["sender"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database.url is empty: set HERALD__DATABASE__URL"),
        "{stderr}"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn migrate_needs_only_the_database_url() {
    let ctx = TestContext::new().await;
    // A database that does not exist yet: migrate creates it.
    let url = ctx.settings.database.url.expose_secret().replacen(
        "herald_test_",
        "herald_test_migrate_",
        1,
    );
    let out = herald(&["migrate"], &[("HERALD__DATABASE__URL", &url)]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "migrations applied\n");
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(applied >= 14, "{applied} migrations applied");
    db.close().await.unwrap();
    let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{database}\" WITH (FORCE)"
    )))
    .execute(&ctx.pool)
    .await
    .unwrap();
    ctx.cleanup().await;
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Each `/readyz` answer: status and body.
async fn readiness(urls: &[String]) -> Vec<(u16, String)> {
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for url in urls {
        let answer = match client.get(url).timeout(Duration::from_secs(3)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_false_when_redis_stops_and_from_sigterm_on() {
    let ctx = TestContext::new().await;
    let mut redis = PrivateRedis::start().await;
    let (ingest, webhook, metrics) = (free_port(), free_port(), free_port());
    let child = ctx
        .herald_command(env!("CARGO_BIN_EXE_herald"), "all")
        .env("HERALD__REDIS__URL", redis.url())
        .env("HERALD__INGEST__PORT", ingest.to_string())
        .env("HERALD__WEBHOOK__PORT", webhook.to_string())
        .env("HERALD__SENDER__METRICS__PORT", metrics.to_string())
        .env("HERALD__SHUTDOWN__DELAY_MS", "4000")
        .spawn()
        .expect("the herald binary starts");
    let urls: Vec<String> = [ingest, webhook, metrics]
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/readyz"))
        .collect();
    let all = |answers: &[(u16, String)], status: u16, why: &str| {
        answers
            .iter()
            .all(|(s, body)| *s == status && body.starts_with(why))
    };
    eventually("every role ready", Duration::from_secs(30), || async {
        all(&readiness(&urls).await, 200, "ready").then_some(())
    })
    .await;

    redis.stop();
    eventually(
        "not ready without Redis",
        Duration::from_secs(10),
        || async { all(&readiness(&urls).await, 503, "Redis does not answer").then_some(()) },
    )
    .await;
    redis.restart().await;
    eventually(
        "ready again with Redis back",
        Duration::from_secs(20),
        || async { all(&readiness(&urls).await, 200, "ready").then_some(()) },
    )
    .await;

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    // Still serving, and answering 503 on every role until the delay is over.
    eventually(
        "not ready from SIGTERM on",
        Duration::from_secs(3),
        || async { all(&readiness(&urls).await, 503, "draining").then_some(()) },
    )
    .await;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("herald stops after the delay")
        .unwrap();
    assert!(exit.status.success(), "{:?}", exit.status);
    ctx.cleanup().await;
}

/// A `herald sender` process named `consumer`, sending to `cloud_api`, serving `/metrics` on
/// `port`.
fn spawn_sender(ctx: &TestContext, consumer: &str, cloud_api: &str, port: u16) -> Child {
    ctx.herald_command(env!("CARGO_BIN_EXE_herald"), "sender")
        .env("HERALD__WHATSAPP__BASE_URL", cloud_api)
        .env("HERALD__WHATSAPP__REQUEST_TIMEOUT_MS", "300000")
        .env("HERALD__SENDER__CONSUMER", consumer)
        .env("HERALD__SENDER__IN_FLIGHT", "8")
        .env("HERALD__SENDER__METRICS__PORT", port.to_string())
        .spawn()
        .expect("the herald binary starts")
}

/// The value of the series `name{labels}` in a Prometheus text page (0 when absent).
fn series(page: &str, name_and_labels: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// The sender's `/metrics` page, once it serves it.
async fn scrape(port: u16) -> Option<String> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await;
    response.ok()?.error_for_status().ok()?.text().await.ok()
}

/// Entries of `number`'s stream no sender has read: its length less what is pending.
async fn true_lag(ctx: &TestContext, number: NumberId) -> u64 {
    let keys = herald_shared::stream::Keys::new(ctx.settings.redis.key_prefix.clone());
    let stream = keys.stream(number);
    let mut redis = ctx.redis().await;
    let length: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(herald_shared::stream::SENDER_GROUP)
        .query_async(&mut redis)
        .await
        .unwrap();
    length - pending.count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_number_moves_the_lag_summed_over_both_senders_is_the_true_lag() {
    let ctx = TestContext::new().await;
    let cloud_api = herald_tests::cloud_api().await;
    Mock::given(method("POST"))
        .and(path_regex("/messages$"))
        .respond_with(accepted())
        .mount(&cloud_api)
        .await;
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = cloud_api.uri();
    let stack = Stack::start(settings, Roles::INGEST).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..2 {
        let number = api
            .create_untested_number(&format!("60000000000{i}"), "token", 20)
            .await
            .unwrap();
        numbers.push(number.id);
    }
    let campaign = fixtures::campaign(&api, "moving", &numbers, 2000)
        .await
        .unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let _a = spawn_sender(&ctx, "sender-a", &cloud_api.uri(), port_a);
    api.start(campaign.id).await.unwrap();
    // A alone sends for both numbers.
    let lag = |n: NumberId| format!("herald_stream_lag{{number=\"{n}\"}}");
    eventually(
        "sender A reports both numbers",
        Duration::from_secs(30),
        || async {
            let page = scrape(port_a).await?;
            numbers
                .iter()
                .all(|n| series(&page, &lag(*n)) > 0)
                .then_some(())
        },
    )
    .await;
    // B joins: A hands one number over (the sends are quick, so it can).
    let _b = spawn_sender(&ctx, "sender-b", &cloud_api.uri(), port_b);
    let moved = eventually("one number moves to B", Duration::from_secs(30), || async {
        let page = scrape(port_b).await?;
        numbers
            .iter()
            .copied()
            .find(|n| series(&page, &lag(*n)) > 0)
    })
    .await;
    // From now on the Cloud API takes sends and never answers: each owner fills its window of
    // 8 and reads no more, so every stream's lag holds still.
    Mock::given(method("POST"))
        .and(path_regex("/messages$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .with_priority(1)
        .mount(&cloud_api)
        .await;
    eventually(
        "the lag summed over both senders equals each stream's true lag",
        Duration::from_secs(30),
        || async {
            let (a, b) = (scrape(port_a).await?, scrape(port_b).await?);
            let mut total = 0;
            for n in &numbers {
                let truth = true_lag(&ctx, *n).await;
                if series(&a, &lag(*n)) + series(&b, &lag(*n)) != truth {
                    return None;
                }
                total += truth;
            }
            let summed = series(&a, "herald_sender_lag") + series(&b, "herald_sender_lag");
            (summed == total && total > 0).then_some(())
        },
    )
    .await;
    // A no longer counts the number it handed over.
    assert_eq!(series(&scrape(port_a).await.unwrap(), &lag(moved)), 0);

    // The operator's view of the running stack, from the CLI: every number with its owner and
    // lag, and the campaign.
    let s = &ctx.settings;
    let stores = [
        ("HERALD_ENV", "test"),
        ("HERALD__DATABASE__URL", s.database.url.expose_secret()),
        ("HERALD__REDIS__URL", s.redis.url.expose_secret()),
        ("HERALD__REDIS__KEY_PREFIX", &s.redis.key_prefix),
    ];
    // Until the CLI and the stream agree: a send the window let through before the Cloud API
    // stopped answering may still move a lag by a read or two.
    let rows = eventually(
        "herald lag shows each number's true lag",
        Duration::from_secs(30),
        || async {
            let out = herald(&["lag", "--json"], &stores).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            let mut ours = Vec::new();
            for n in &numbers {
                let row = rows
                    .iter()
                    .find(|r| r["id"] == n.to_string())
                    .unwrap_or_else(|| panic!("{n} missing from herald lag: {rows:?}"));
                if row["lag"] != true_lag(&ctx, *n).await {
                    return None;
                }
                ours.push(row.clone());
            }
            Some(ours)
        },
    )
    .await;
    for row in &rows {
        assert!(
            row["owner"].as_str().unwrap().starts_with("sender-"),
            "{row}"
        );
    }
    let out = herald(&["top"], &stores).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains(&campaign.id.to_string()),
        "{table}"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// `herald repair` as an operator runs it, against the test's database and Redis.
async fn repair(ctx: &TestContext, args: &[&str]) -> String {
    let output = ctx
        .herald_command(env!("CARGO_BIN_EXE_herald"), "repair")
        .args(args)
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "herald repair {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn herald_repair_appends_again_what_redis_lost_and_nothing_sent() {
    let ctx = TestContext::new().await;
    let (campaign, numbers) = herald_tests::seed_campaign_over(&ctx, 1, 5).await;
    // Fanned out, then Redis lost it all: Postgres says queued and appended, Redis has nothing.
    for statement in [
        "UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1",
        "UPDATE messages SET status = 'queued' WHERE campaign_id = $1",
        "UPDATE campaign_numbers SET fanout_cursor = m.last, fanout_appended = m.last
         FROM (SELECT max(id) AS last FROM messages WHERE campaign_id = $1) m
         WHERE campaign_id = $1",
    ] {
        sqlx::query(statement)
            .bind(campaign)
            .execute(&ctx.pool)
            .await
            .unwrap();
    }
    // One was sent and recorded meanwhile: it is not sent again.
    let first: i64 = sqlx::query_scalar("SELECT min(id) FROM messages WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    herald_tests::set_status(
        &ctx.pool,
        herald_shared::domain::MessageId(first),
        herald_shared::domain::MessageStatus::Sent,
        Some("wamid.S"),
    )
    .await;

    let found = repair(&ctx, &[]).await;
    assert!(
        found.contains("found to have lost entries: 1") && found.contains("waiting"),
        "{found}"
    );
    let done = repair(&ctx, &["--now"]).await;
    assert!(done.contains("4 unsent messages appended again"), "{done}");
    let keys = herald_shared::stream::Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = ctx.redis().await;
    let queued: usize = redis::AsyncCommands::xlen(&mut redis, keys.stream(numbers[0]))
        .await
        .unwrap();
    assert_eq!(queued, 4);
    let again = repair(&ctx, &["--now"]).await;
    assert!(again.contains("every stream holds"), "{again}");
    ctx.cleanup().await;
}
