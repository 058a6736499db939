//! Hostile and broken input (issue #15): the corpus in `tests/fixtures/bad/` (truncated, wrong
//! types, huge numbers, invalid UTF-8, NULs) and generated extremes (deep nesting, 10 MB
//! fields) against the API, the CSV upload and the webhook. Every API case is a clear 4xx (a
//! CSV may instead be answered with every row refused), never a 5xx, and stores nothing; every
//! signed webhook body is answered 200 (Meta would send it again otherwise), kept as
//! `malformed` and applied to nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_ingest::views::UploadReport;
use herald_tests::{TestContext, eventually, post_webhook};
use secrecy::ExposeSecret;

/// The corpus files of `kind`, with their bytes.
fn corpus(kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/bad")
        .join(kind);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// JSON nested `depth` arrays deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

/// Rows in `table` (one of this file's constants).
async fn count(ctx: &TestContext, table: &'static str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_get_a_clear_4xx_and_store_nothing() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_AND_WEBHOOK)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let key = api.key();
    let http = reqwest::Client::new();
    let number = api.create_number("770000000001", "t", 80).await.unwrap();
    let campaign = api
        .create_campaign("target", "spring_sale_2026", "en_GB", &[number.id])
        .await
        .unwrap();
    let (campaigns, messages) = (
        count(&ctx, "campaigns").await,
        count(&ctx, "messages").await,
    );

    // API bodies.
    let mut cases = corpus("api");
    let ten_mb = format!("{{\"name\": \"{}\"}}", "x".repeat(10 << 20));
    cases.push(("generated: a 10 MB name".into(), ten_mb.into_bytes()));
    cases.push(("generated: 100,000 levels deep".into(), nested(100_000)));
    for (name, body) in cases {
        let response = http
            .post(format!("{}/v1/campaigns", stack.ingest_url))
            .bearer_auth(key.expose_secret())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(
            (400..500).contains(&status) && answer["error"]["code"].is_string(),
            "{}: {status} {answer}",
            name.display()
        );
    }

    // CSV uploads: refused whole, or every row refused.
    let url = format!(
        "{}/v1/campaigns/{}/recipients",
        stack.ingest_url, campaign.id
    );
    let mut cases = corpus("csv");
    let long = format!(
        "phone,body.1,body.2\n+447400000001,{},1\n",
        "x".repeat(10 << 20)
    );
    cases.push(("generated: a 10 MB field".into(), long.into_bytes()));
    for (name, body) in cases {
        let response = http
            .post(&url)
            .bearer_auth(key.expose_secret())
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        match status {
            400..500 => {}
            200 => {
                let report: UploadReport = serde_json::from_str(&text).unwrap();
                assert!(
                    report.accepted == 0 && report.rejected_count == report.rows,
                    "{}: {text}",
                    name.display()
                );
            }
            _ => panic!("{}: {status} {text}", name.display()),
        }
    }
    assert_eq!(count(&ctx, "campaigns").await, campaigns);
    assert_eq!(count(&ctx, "messages").await, messages, "nothing stored");

    // Webhook bodies, signed: answered 200, kept as malformed, applied to nothing.
    let mut cases = corpus("webhook");
    cases.push(("generated: 100,000 levels deep".into(), nested(100_000)));
    let sent = cases.len() as i64;
    for (_, body) in &cases {
        post_webhook(&ctx, &stack, body).await;
    }
    eventually(
        "every body kept as malformed",
        Duration::from_secs(20),
        || async {
            let malformed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM webhook_events WHERE outcome = 'malformed'",
            )
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
            (malformed == sent).then_some(())
        },
    )
    .await;
    assert_eq!(count(&ctx, "webhook_events").await, sent);
    assert_eq!(count(&ctx, "messages").await, messages);
    // A body past the webhook's limit is refused before it is kept.
    let huge = vec![b' '; ctx.settings.webhook.max_body_bytes + 1];
    let response = http
        .post(format!("{}/webhook", stack.webhook_url))
        .header(
            "x-hub-signature-256",
            herald_tests::signed(&ctx.settings, &huge),
        )
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
