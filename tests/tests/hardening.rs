//! Hardening (issue #15), over HTTP: a campaign with nothing to send completes instead of
//! running for ever; every stored text is bounded and free of NUL, refused with a 422 naming
//! the field (or, in an upload, its row) instead of a 500 that loses the upload; a statement
//! stuck on a lock answers 503 after `ingest.statement_timeout_ms` instead of holding its
//! client.

use std::time::Duration;

use herald::stack::{Roles, Stack};
use herald_ingest::views::UploadReport;
use herald_shared::domain::{CampaignState, MessageId, MessageStatus};
use herald_tests::{TestContext, refusal, set_status};
use serde_json::{Value, json};

const TEMPLATE: &str = "spring_sale_2026";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_nothing_left_to_send_completes_when_it_starts_or_resumes() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("700000000001", "t", 80).await.unwrap();

    // Every recipient opted out.
    let phones = ["+447400000001", "+447400000002"];
    let _: Value = api
        .post("/v1/suppressions", &json!({"phones": phones}))
        .await
        .unwrap();
    let campaign = api
        .create_campaign("all opted out", TEMPLATE, "en_GB", &[number.id])
        .await
        .unwrap();
    let rows: Vec<(String, Vec<String>)> = phones
        .iter()
        .map(|p| (p.to_string(), vec!["A".into(), "1".into()]))
        .collect();
    let report = api.upload(campaign.id, &rows).await.unwrap();
    assert_eq!((report.accepted, report.suppressed), (0, 2));
    let started = api.start(campaign.id).await.unwrap();
    assert_eq!(started.state, CampaignState::Completed, "{started:?}");
    assert!(started.completed_at.is_some());

    // Paused, and its one message settled meanwhile: resumed, it has nothing to send.
    let campaign = api
        .create_campaign("settled while paused", TEMPLATE, "en_GB", &[number.id])
        .await
        .unwrap();
    let rows = [("+447400000003".to_owned(), vec!["B".into(), "2".into()])];
    api.upload(campaign.id, &rows).await.unwrap();
    api.start(campaign.id).await.unwrap();
    api.pause(campaign.id).await.unwrap();
    let message: MessageId = sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1")
        .bind(campaign.id)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    set_status(&ctx.pool, message, MessageStatus::Failed, None).await;
    let resumed = api.resume(campaign.id).await.unwrap();
    assert_eq!(resumed.state, CampaignState::Completed, "{resumed:?}");

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// The 422's fields, as `field` strings.
fn fields(e: anyhow::Error) -> (u16, Vec<String>) {
    let r = refusal(e);
    let fields = r.body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (r.status.as_u16(), fields)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_text_is_bounded_and_free_of_nul() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("700000000002", "t", 80).await.unwrap();
    let long = |n: usize| "x".repeat(n);
    let campaign = |name: String, template: String, language: &str, value: String| {
        json!({"name": name, "sender_numbers": [number.id],
               "template": {"name": template, "language": language,
                            "values": {"body.1": value}}})
    };
    let cases = [
        (
            campaign(long(201), TEMPLATE.into(), "en_GB", "v".into()),
            "name",
        ),
        (
            campaign("c".into(), long(513), "en_GB", "v".into()),
            "template.name",
        ),
        (
            campaign("c".into(), TEMPLATE.into(), &long(16), "v".into()),
            "template.language",
        ),
        (
            campaign("c".into(), TEMPLATE.into(), "en_GB", long(1025)),
            "template.values.body.1",
        ),
        (
            campaign("c\u{0}".into(), TEMPLATE.into(), "en_GB", "v".into()),
            "name",
        ),
        (
            campaign("c".into(), TEMPLATE.into(), "en_GB", "a\u{0}b".into()),
            "template.values.body.1",
        ),
    ];
    for (body, field) in cases {
        let e = api.post::<Value>("/v1/campaigns", &body).await.unwrap_err();
        assert_eq!(fields(e), (422, vec![field.to_owned()]), "{field}");
    }
    let number_cases = [
        (
            json!({"phone_number_id": "1234", "waba_id": "w1", "access_token": "t"}),
            "waba_id",
        ),
        (
            json!({"phone_number_id": "1".repeat(21), "waba_id": "1", "access_token": "t"}),
            "phone_number_id",
        ),
        (
            json!({"phone_number_id": "1", "waba_id": "1", "access_token": "t",
                   "display_number": long(201), "verify": false}),
            "display_number",
        ),
        (
            json!({"phone_number_id": "1", "waba_id": "1", "access_token": long(4097)}),
            "access_token",
        ),
    ];
    for (body, field) in number_cases {
        let e = api.post::<Value>("/v1/numbers", &body).await.unwrap_err();
        assert_eq!(fields(e), (422, vec![field.to_owned()]), "{field}");
    }
    let e = api
        .post::<Value>("/v1/api-keys", &json!({"name": "ci\u{0}"}))
        .await
        .unwrap_err();
    assert_eq!(fields(e), (422, vec!["name".to_owned()]));
    let e = api
        .post::<Value>(
            "/v1/suppressions",
            &json!({"phones": ["+447400000001"], "reason": long(1001)}),
        )
        .await
        .unwrap_err();
    assert_eq!(fields(e), (422, vec!["reason".to_owned()]));
    let e = api
        .get::<Value>("/v1/templates?name=a%00b")
        .await
        .unwrap_err();
    assert_eq!(fields(e), (422, vec!["name".to_owned()]));
    let e = api
        .put(
            &format!("/v1/portfolios/{}", long(65)),
            &json!({"daily_recipient_limit": 10}),
        )
        .await
        .unwrap_err();
    assert_eq!(fields(e), (422, vec!["id".to_owned()]));

    // Uploads: a row with a NUL or an over-long value is refused by its row; the rest stored.
    let c = api
        .create_campaign("uploads", TEMPLATE, "en_GB", &[number.id])
        .await
        .unwrap();
    let csv = format!(
        "phone,body.1,body.2\n+447400000011,Ann,1\n+447400000012,B\0b,2\n+447400000013,{},3\n+447400000014,Dee,4\n",
        long(1025)
    );
    let report = api.upload_csv(c.id, csv, None).await.unwrap();
    assert_eq!(
        (report.accepted, report.rejected_count),
        (2, 2),
        "{report:?}"
    );
    let refused: Vec<(usize, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.row, r.field.as_str()))
        .collect();
    assert_eq!(refused, [(3, "body.1"), (4, "body.1")]);
    let json_rows = json!({"recipients": [
        {"phone": "+447400000021", "variables": {"body.1": "Eve", "body.2": "5"}},
        {"phone": "+447400000022", "variables": {"body.1": "F\u{0}", "body.2": "6"}},
    ]});
    let report: UploadReport = api
        .post(&format!("/v1/campaigns/{}/recipients", c.id), &json_rows)
        .await
        .unwrap();
    assert_eq!(
        (report.accepted, report.rejected_count),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.rejected[0].row, 2);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE campaign_id = $1")
        .bind(c.id)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3);

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_on_a_lock_answers_503_after_the_statement_timeout() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.ingest.statement_timeout_ms = 300;
    let stack = Stack::start(settings, Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("700000000003", "t", 80).await.unwrap();
    let campaign = api
        .create_campaign("locked", TEMPLATE, "en_GB", &[number.id])
        .await
        .unwrap();
    // Another client holds the campaign's row.
    let mut holder = ctx.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM campaigns WHERE id = $1 FOR UPDATE")
        .bind(campaign.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(20), api.cancel(campaign.id))
        .await
        .expect("the request answers instead of waiting for the lock");
    let r = refusal(cancelled.unwrap_err());
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["code"].as_str()),
        (503, Some("timeout"))
    );
    holder.rollback().await.unwrap();
    // Once the lock is gone the same request goes through.
    let done = api.cancel(campaign.id).await.unwrap();
    assert_eq!(done.state, CampaignState::Cancelled);

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

/// Everything the server sends until it closes the connection.
async fn read_all(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// What a raw TCP client gets back within `deadline`: the server's bytes until it closed the
/// connection. Panics if the server holds the connection open that long.
async fn answer_within(stream: &mut tokio::net::TcpStream, deadline: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    match tokio::time::timeout(deadline, stream.read_to_end(&mut answer)).await {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(_) => panic!("the server still held the connection after {deadline:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_slowly_is_cut_off_on_every_listener() {
    use tokio::io::AsyncWriteExt;
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.http.header_read_ms = 300;
    settings.http.body_idle_ms = 300;
    let stack = Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    let sender = stack.sender_metrics_url.trim_end_matches("/metrics");
    for base in [
        stack.ingest_url.as_str(),
        &stack.webhook_url,
        sender,
        &stack.ingest_metrics_url,
        &stack.webhook_metrics_url,
    ] {
        let address = base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        // Headers that never end.
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET /livez HTTP/1.1\r\nHost: herald\r\n")
            .await
            .unwrap();
        answer_within(&mut slow, Duration::from_secs(5)).await;
        // A connection that never sends a byte.
        let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
        answer_within(&mut silent, Duration::from_secs(5)).await;
    }
    // A body that stops half-way: refused, and the connection closed.
    let address = stack.ingest_url.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/campaigns HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    let answer = answer_within(&mut stalled, Duration::from_secs(5)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    // A client that keeps sending is never cut off, however long it takes in all.
    let api = ctx.tenant(&stack.ingest_url).await;
    let number = api.create_number("100000000001", "t", 80).await.unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&api.key()).to_owned();
    let body = json!({"name": "slow but steady", "template": {"name": "spring_sale_2026",
        "language": "en_GB"}, "sender_numbers": [number.id]})
    .to_string();
    let mut steady = tokio::net::TcpStream::connect(address).await.unwrap();
    steady
        .write_all(
            format!(
                "POST /v1/campaigns HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for chunk in body.as_bytes().chunks(body.len() / 5 + 1) {
        // Each pause under the idle timeout, all of them over it.
        tokio::time::sleep(Duration::from_millis(150)).await;
        steady.write_all(chunk).await.unwrap();
    }
    let answer = answer_within(&mut steady, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_a_replica_for_itself() {
    use tokio::io::AsyncWriteExt;
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.ingest.requests_per_key_per_s = 1;
    settings.ingest.request_burst = 5;
    let stack = Stack::start(settings, Roles::INGEST).await.unwrap();
    let http = reqwest::Client::new();

    // A key's burst, then 429s saying when to come back; another key is not held back.
    let greedy = ctx.tenant(&stack.ingest_url).await;
    let get = |key: secrecy::SecretString| {
        let request = http
            .get(format!("{}/v1/campaigns", stack.ingest_url))
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&key).to_owned());
        async move { request.send().await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(get(greedy.key()).await.status(), 200);
    }
    let refused = get(greedy.key()).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let patient = ctx.tenant(&stack.ingest_url).await;
    assert_eq!(get(patient.key()).await.status(), 200);
    stack.stop().await.unwrap();

    let mut settings = ctx.settings.clone();
    settings.ingest.max_uploads_per_tenant = 1;
    settings.ingest.max_numbers_per_tenant = 2;
    let stack = Stack::start(settings, Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    let patient = ctx.tenant(&stack.ingest_url).await;

    // One upload of a tenant at a time: a second one while the first is still arriving is
    // refused, and its place frees when the first ends.
    let numbers = {
        let a = patient
            .create_number("100000000001", "t", 80)
            .await
            .unwrap();
        let b = patient
            .create_number("100000000002", "t", 80)
            .await
            .unwrap();
        [a.id, b.id]
    };
    let campaign = patient
        .create_campaign("limits", "spring_sale_2026", "en_GB", &numbers)
        .await
        .unwrap();
    let upload = |body: &'static str| {
        http.post(format!(
            "{}/v1/campaigns/{}/recipients",
            stack.ingest_url, campaign.id
        ))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&patient.key()).to_owned())
        .header("content-type", "text/csv")
        .body(body)
        .send()
    };
    // Two uploads arriving slowly, each with only its first half sent: whichever the server
    // takes second is refused at once, the other waits for the rest of its body.
    let csv = "phone,body.1,body.2\n+447400000001,Ann,10%\n";
    let (head, rest) = csv.split_at(25);
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream =
            tokio::net::TcpStream::connect(stack.ingest_url.trim_start_matches("http://"))
                .await
                .unwrap();
        stream
            .write_all(
                format!(
                    "POST /v1/campaigns/{}/recipients HTTP/1.1\r\nHost: herald\r\n\
                     Authorization: Bearer {}\r\nContent-Type: text/csv\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{head}",
                    campaign.id,
                    secrecy::ExposeSecret::expose_secret(&patient.key()),
                    csv.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    let (mut a, mut b) = (slow.remove(0), slow.remove(0));
    let (refused, mut held) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            answer = read_all(&mut a) => (answer, b),
            answer = read_all(&mut b) => (answer, a),
        }
    })
    .await
    .expect("one of the two uploads refused");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after:"),
        "{refused}"
    );
    held.write_all(rest.as_bytes()).await.unwrap();
    let answer = answer_within(&mut held, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Its place is free again.
    let third = upload("phone,body.1,body.2\n+447400000003,Bo,5%\n")
        .await
        .unwrap();
    assert_eq!(third.status(), 200);

    // Two numbers, the most this tenant may register; another tenant still may.
    let refusal = refusal(
        patient
            .create_number("100000000003", "t", 80)
            .await
            .unwrap_err(),
    );
    assert_eq!(refusal.status, 409);
    assert!(
        refusal.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_numbers_per_tenant"),
        "{}",
        refusal.body
    );
    let other = ctx.tenant(&stack.ingest_url).await;
    other.create_number("100000000003", "t", 80).await.unwrap();
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_owning_many_numbers_holds_a_few_redis_connections() {
    const NUMBERS: usize = 40;
    let redis = herald_tests::PrivateRedis::start().await;
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    redis.configure(&mut settings.redis);
    let stack = Stack::start(settings.clone(), Roles::ALL_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let mut numbers = Vec::new();
    for i in 0..NUMBERS {
        let phone = format!("1000000001{i:02}");
        numbers.push(api.create_number(&phone, "t", 80).await.unwrap().id);
    }
    let keys = herald_shared::stream::Keys::new(settings.redis.key_prefix.clone());
    let mut conn = herald_shared::stream::conn::connect(&settings.redis, None)
        .await
        .unwrap();
    herald_tests::eventually(
        "the sender owns every number",
        Duration::from_secs(30),
        || {
            let (keys, numbers, mut conn) = (keys.clone(), numbers.clone(), conn.clone());
            async move {
                for number in numbers {
                    herald_shared::stream::lease::holder(&mut conn, &keys.lease(number))
                        .await
                        .ok()??;
                }
                Some(())
            }
        },
    )
    .await;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let connections = clients.lines().count();
    // Every role's shared connections, the webhook processors' blocking reads and this test's:
    // none per number.
    assert!(
        connections < 20,
        "{connections} connections for {NUMBERS} numbers:\n{clients}"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
