//! The webhook role: handshake, signatures, buffering and applying receipts.

use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_shared::domain::{MessageId, MessageStatus};
use herald_tests::{
    TestContext, assert_counters_match, eventually, phone_number_of, seed_campaign,
    seed_campaign_over, set_status, signed, status_of, waiting_for_a_lock,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

const WEBHOOK_ONLY: Roles = Roles {
    ingest: false,
    sender: false,
    webhook: true,
    simulator: false,
};

fn status(id: MessageId, wamid: &str, status: &str) -> Value {
    json!({"id": wamid, "status": status, "timestamp": "1778580002",
           "recipient_id": "447400000000", "biz_opaque_callback_data": id.to_string()})
}

/// A status notification for business number `number` (receipts apply only to the messages
/// it sent).
fn notification(number: &str, statuses: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "211987654321098", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "447700900100", "phone_number_id": number},
            "statuses": statuses}}]}]
    }))
    .unwrap()
}

async fn post(ctx: &TestContext, stack: &Stack, body: &[u8], signature: Option<String>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhook", stack.webhook_url))
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let _ = ctx;
    request.send().await.unwrap().status().as_u16()
}

async fn wait_for_status(ctx: &TestContext, id: MessageId, want: MessageStatus) {
    eventually(
        &format!("message {id} {want}"),
        Duration::from_secs(10),
        || async { (status_of(&ctx.pool, id).await == want).then_some(()) },
    )
    .await
}

#[tokio::test]
async fn the_handshake_answers_the_challenge_only_for_the_right_token() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    let url = |token: &str| {
        format!(
            "{}/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            stack.webhook_url
        )
    };
    let ok = reqwest::get(url("herald-test-verify-token")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(reqwest::get(url("wrong")).await.unwrap().status(), 403);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn missing_and_wrong_signatures_get_401_and_are_never_applied() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 2).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    for id in &ids {
        set_status(&ctx.pool, *id, MessageStatus::Queued, None).await;
    }
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    let forged = notification(&number, &[status(ids[0], "wamid.A", "read")]);
    assert_eq!(post(&ctx, &stack, &forged, None).await, 401);
    let other_secret = herald_shared::signature::sign(&"not-our-secret".to_owned().into(), &forged);
    assert_eq!(post(&ctx, &stack, &forged, Some(other_secret)).await, 401);
    // A correctly signed body sent after them is applied; the refused ones never were.
    let genuine = notification(&number, &[status(ids[1], "wamid.B", "read")]);
    assert_eq!(
        post(
            &ctx,
            &stack,
            &genuine,
            Some(signed(&ctx.settings, &genuine))
        )
        .await,
        200
    );
    wait_for_status(&ctx, ids[1], MessageStatus::Read).await;
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Queued);
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn shuffled_and_duplicated_receipts_end_at_the_furthest_status_with_exact_counters() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 30).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    for id in &ids {
        set_status(&ctx.pool, *id, MessageStatus::Queued, None).await;
    }
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    // Message i gets receipts up to: sent (i % 3 == 0), delivered (1), read (2); every receipt
    // twice, all shuffled, spread over several POSTs.
    let ladder = ["sent", "delivered", "read"];
    let mut receipts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for s in &ladder[..=(i % 3)] {
            for _ in 0..2 {
                receipts.push(status(*id, &format!("wamid.{id}"), s));
            }
        }
    }
    receipts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    for chunk in receipts.chunks(7) {
        let body = notification(&number, chunk);
        assert_eq!(
            post(&ctx, &stack, &body, Some(signed(&ctx.settings, &body))).await,
            200
        );
    }
    let want = |i: usize| {
        [
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read,
        ][i % 3]
    };
    for (i, id) in ids.iter().enumerate() {
        wait_for_status(&ctx, *id, want(i)).await;
    }
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_failed_receipt_records_its_code_and_a_later_read_does_not_revive_it() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 1).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    set_status(&ctx.pool, ids[0], MessageStatus::Sent, Some("wamid.D")).await;
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    // Matched by wamid: failed receipts may come without callback data.
    let failed = notification(
        &number,
        &[json!({"id": "wamid.D", "status": "failed",
        "timestamp": "1778580007", "recipient_id": "447400000000",
        "errors": [{"code": 131026, "title": "Message undeliverable"}]})],
    );
    assert_eq!(
        post(&ctx, &stack, &failed, Some(signed(&ctx.settings, &failed))).await,
        200
    );
    wait_for_status(&ctx, ids[0], MessageStatus::Failed).await;
    let read = notification(&number, &[status(ids[0], "wamid.D", "read")]);
    assert_eq!(
        post(&ctx, &stack, &read, Some(signed(&ctx.settings, &read))).await,
        200
    );
    eventually(
        "the read receipt applied",
        Duration::from_secs(10),
        || async {
            let read_at: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT read_at FROM messages WHERE id = $1")
                    .bind(ids[0])
                    .fetch_one(&ctx.pool)
                    .await
                    .unwrap();
            read_at.map(|_| ())
        },
    )
    .await;
    let (status, code, title): (MessageStatus, Option<i32>, Option<String>) =
        sqlx::query_as("SELECT status, error_code, error_title FROM messages WHERE id = $1")
            .bind(ids[0])
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(code, Some(131026));
    assert_eq!(title.as_deref(), Some("Message undeliverable"));
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_signed_but_malformed_body_is_skipped_without_blocking_the_ones_after_it() {
    let ctx = TestContext::new().await;
    let (_, ids) = seed_campaign(&ctx, 1).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    set_status(&ctx.pool, ids[0], MessageStatus::Queued, None).await;
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    let garbage = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    assert_eq!(
        post(
            &ctx,
            &stack,
            &garbage,
            Some(signed(&ctx.settings, &garbage))
        )
        .await,
        200
    );
    let good = notification(&number, &[status(ids[0], "wamid.E", "delivered")]);
    assert_eq!(
        post(&ctx, &stack, &good, Some(signed(&ctx.settings, &good))).await,
        200
    );
    wait_for_status(&ctx, ids[0], MessageStatus::Delivered).await;
    // Both are kept, in order, with what became of them.
    let events: Vec<(Vec<u8>, String, Option<String>)> =
        eventually("both bodies recorded", Duration::from_secs(10), || async {
            let rows: Vec<(Vec<u8>, String, Option<String>)> = sqlx::query_as(
                "SELECT body, outcome::text, error FROM webhook_events ORDER BY received_at, id",
            )
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
            (rows.len() == 2).then_some(rows)
        })
        .await;
    assert_eq!(
        (events[0].0.as_slice(), events[0].1.as_str()),
        (garbage.as_slice(), "malformed")
    );
    assert!(
        events[0].2.as_deref().is_some_and(|e| e.contains("EOF")),
        "{:?}",
        events[0].2
    );
    assert_eq!(
        (events[1].0.as_slice(), events[1].1.as_str(), &events[1].2),
        (good.as_slice(), "applied", &None)
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// A seeded number's `phone_number_id`, so that each body logged naming it is logged for its
/// tenant too.
async fn logged_number(ctx: &TestContext) -> String {
    seed_campaign_over(ctx, 1, 1).await;
    sqlx::query_scalar("SELECT phone_number_id FROM sender_numbers")
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

/// A body naming `number`, as the processor logs it.
fn logged(
    buffer_id: &'static str,
    number: &str,
    received_at: chrono::DateTime<chrono::Utc>,
) -> herald_shared::db::webhook_events::Event<'static> {
    herald_shared::db::webhook_events::Event {
        buffer_id,
        numbers: vec![number.to_owned()],
        wabas: Vec::new(),
        body: b"{}",
        received_at,
        outcome: herald_shared::db::webhook_events::Outcome::Applied,
        error: None,
    }
}

#[tokio::test]
async fn bodies_older_than_the_retention_are_pruned_with_their_tenants_rows() {
    use herald_shared::db::webhook_events::{self, Event};
    let ctx = TestContext::new().await;
    let number = logged_number(&ctx).await;
    let now = chrono::Utc::now();
    let event = |id, days: i64| logged(id, &number, now - chrono::Duration::days(days));
    let mut db = ctx.pool.acquire().await.unwrap();
    // And one naming only the number's WABA (a template's status, say).
    let by_waba = Event {
        numbers: Vec::new(),
        wabas: vec!["waba".to_owned()],
        ..event("4-0", 1)
    };
    webhook_events::record(
        &mut db,
        &[event("1-0", 40), event("2-0", 31), event("3-0", 2), by_waba],
    )
    .await
    .unwrap();
    // Recorded again after a crash: still one row.
    webhook_events::record(&mut db, &[event("3-0", 2)])
        .await
        .unwrap();
    drop(db);
    let tenants_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT arrival_ms FROM webhook_event_tenants ORDER BY 1")
            .fetch_all(&ctx.pool)
            .await
            .unwrap()
    };
    assert_eq!(tenants_rows().await, vec![1, 2, 3, 4]);
    let pruned = webhook_events::prune(&ctx.pool, now - chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let left: Vec<String> = sqlx::query_scalar("SELECT buffer_id FROM webhook_events ORDER BY 1")
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["3-0".to_owned(), "4-0".to_owned()]);
    // No foreign key cascades to them: the prune deletes them itself.
    assert_eq!(tenants_rows().await, vec![3, 4]);
    // Bodies go in the order they were logged: one received long ago but logged after younger
    // ones (claimed from a processor that died) waits for them.
    let mut db = ctx.pool.acquire().await.unwrap();
    webhook_events::record(&mut db, &[event("5-0", 35)])
        .await
        .unwrap();
    drop(db);
    let month_ago = now - chrono::Duration::days(30);
    assert_eq!(
        webhook_events::prune(&ctx.pool, month_ago).await.unwrap(),
        0
    );
    let week_later = now + chrono::Duration::days(7);
    assert_eq!(
        webhook_events::prune(&ctx.pool, week_later).await.unwrap(),
        3
    );
    assert_eq!(tenants_rows().await, Vec::<i64>::new());
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_body_two_processors_record_at_once_fails_the_second_batch_whose_retry_keeps_one_row() {
    use herald_shared::db::webhook_events;
    let ctx = TestContext::new().await;
    let number = logged_number(&ctx).await;
    let now = chrono::Utc::now();
    let event = || logged("7-0", &number, now);
    // One processor's batch holds the body, uncommitted...
    let mut first = ctx.pool.begin().await.unwrap();
    webhook_events::record(&mut first, &[event()])
        .await
        .unwrap();
    // ...while another, which claimed it, records it too: it waits for the first.
    let pool = ctx.pool.clone();
    let theirs = event();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        webhook_events::record(&mut tx, &[theirs]).await
    });
    waiting_for_a_lock(&ctx.pool, "%INSERT INTO webhook_events%").await;
    first.commit().await.unwrap();
    let error = second.await.unwrap().expect_err("the second batch fails");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505"),
        "a unique violation: {error}"
    );
    // Its retry finds the body recorded and adds nothing.
    let mut db = ctx.pool.acquire().await.unwrap();
    webhook_events::record(&mut db, &[event()]).await.unwrap();
    drop(db);
    let rows: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM webhook_event_tenants)",
    )
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(rows, (1, 1));
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_body_over_the_size_limit_gets_413() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.webhook.max_body_bytes = 1024;
    let stack = Stack::start(settings, WEBHOOK_ONLY).await.unwrap();
    let body = vec![b' '; 4096];
    assert_eq!(
        post(&ctx, &stack, &body, Some(signed(&ctx.settings, &body))).await,
        413
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// How many receipts wait for their wamid.
async fn held(ctx: &TestContext) -> usize {
    let keys = herald_shared::stream::Keys::new(ctx.settings.redis.key_prefix.clone());
    let mut redis = ctx.redis().await;
    redis::AsyncCommands::zcard(&mut redis, keys.webhooks_unmatched())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failed_receipt_before_the_send_record_is_held_until_the_wamid_is_known() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 1).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    set_status(&ctx.pool, ids[0], MessageStatus::Queued, None).await;
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    // `failed` may come without callback data, and before the sender has recorded the send.
    let now = chrono::Utc::now().timestamp().to_string();
    let failed = notification(
        &number,
        &[json!({"id": "wamid.early", "status": "failed",
        "timestamp": now, "recipient_id": "447400000000",
        "errors": [{"code": 131026, "title": "Message undeliverable"}]})],
    );
    assert_eq!(
        post(&ctx, &stack, &failed, Some(signed(&ctx.settings, &failed))).await,
        200
    );
    eventually("the receipt held", Duration::from_secs(10), || async {
        (held(&ctx).await == 1).then_some(())
    })
    .await;
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Queued);
    // The sender records the send.
    let rest = herald_shared::db::transitions::record_sent(
        &ctx.pool,
        &[herald_shared::db::transitions::Sent {
            message: ids[0],
            wa_message_id: "wamid.early".into(),
            at: chrono::Utc::now(),
        }],
    )
    .await
    .unwrap();
    assert!(rest.is_empty());
    wait_for_status(&ctx, ids[0], MessageStatus::Failed).await;
    let code: Option<i32> = sqlx::query_scalar("SELECT error_code FROM messages WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(code, Some(131026));
    assert_eq!(held(&ctx).await, 0);
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_receipt_whose_wamid_never_appears_is_dropped_as_an_orphan_after_the_hold() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), WEBHOOK_ONLY)
        .await
        .unwrap();
    // Stamped longer ago than the hold (`webhook.unmatched_hold_s`, 3 s in tests).
    let then = (chrono::Utc::now().timestamp() - 60).to_string();
    let body = notification(
        "109876543210987",
        &[json!({"id": "wamid.nobody", "status": "delivered",
        "timestamp": then, "recipient_id": "447400000000"})],
    );
    assert_eq!(
        post(&ctx, &stack, &body, Some(signed(&ctx.settings, &body))).await,
        200
    );
    eventually("the orphan dropped", Duration::from_secs(10), || async {
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        (recorded == 1 && held(&ctx).await == 0).then_some(())
    })
    .await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn with_redis_down_a_post_gets_503_and_meta_s_retry_is_applied_once() {
    let mut redis = herald_tests::PrivateRedis::start().await;
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 1).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    set_status(&ctx.pool, ids[0], MessageStatus::Sent, Some("wamid.R")).await;
    let mut settings = ctx.settings.clone();
    settings.redis.url = secrecy::SecretString::from(redis.url());
    let stack = Stack::start(settings, WEBHOOK_ONLY).await.unwrap();
    let body = notification(&number, &[status(ids[0], "wamid.R", "delivered")]);
    let signature = signed(&ctx.settings, &body);

    redis.stop();
    assert_eq!(
        post(&ctx, &stack, &body, Some(signature.clone())).await,
        503,
        "not buffered, so Meta must retry"
    );
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Sent);

    // Meta retries once Redis is back.
    redis.restart().await;
    let accepted = eventually("the retry accepted", Duration::from_secs(20), || async {
        (post(&ctx, &stack, &body, Some(signature.clone())).await == 200).then_some(())
    });
    accepted.await;
    wait_for_status(&ctx, ids[0], MessageStatus::Delivered).await;
    let recorded: i64 = eventually("the body recorded", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(recorded, 1, "applied once");
    assert_counters_match(&ctx.pool, campaign).await;
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
