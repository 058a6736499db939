//! The `herald` binary as an operator runs it (issue #13): started with `HERALD_ENV` unset and
//! the public development secrets, every role refuses to start and names the setting; `herald
//! migrate` needs nothing but a database URL; `/readyz` goes false when Redis stops and from
//! the moment SIGTERM arrives, while the process still serves.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use herald_tests::{PrivateRedis, TestContext, eventually};
use secrecy::ExposeSecret;
use sqlx::Connection;
use tokio::process::Command;

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
    let s = &ctx.settings;
    let (ingest, webhook, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("all")
        .env(
            "HERALD_CONFIG_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config"),
        )
        .env("HERALD_ENV", "test")
        .env("HERALD__DATABASE__URL", s.database.url.expose_secret())
        .env("HERALD__REDIS__URL", redis.url())
        .env("HERALD__REDIS__KEY_PREFIX", &s.redis.key_prefix)
        .env("HERALD__INGEST__PORT", ingest.to_string())
        .env("HERALD__WEBHOOK__PORT", webhook.to_string())
        .env("HERALD__SENDER__METRICS__PORT", metrics.to_string())
        .env("HERALD__SHUTDOWN__DELAY_MS", "4000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
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
