//! Safe production defaults, as an operator meets them (issue #13, acceptance 3): started with
//! `HERALD_ENV` unset and the public development secrets, every role refuses to start and names
//! the setting; `herald migrate` needs nothing but a database URL.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use herald_tests::TestContext;
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
