//! Issue #18, `POST /v1/media`: a file uploaded to a sender number's WhatsApp Business Account
//! through the Cloud API (here the simulator), its media id answered; files Meta would refuse
//! are refused with the field named, and a refusal by the Cloud API is told in plain words.

use herald::client::ApiClient;
use herald_tests::TestContext;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// POSTs `form` to `/v1/media` with `api`'s key: the status and the JSON answer.
async fn upload(base: &str, key: &str, form: Form) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/media"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn file(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

#[tokio::test]
async fn a_file_is_uploaded_to_the_number_s_account_and_its_media_id_answered() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    let (_, secret) = herald::tenant::create(&ctx.pool, "media").await.unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&secret).to_owned();
    let api = ApiClient::new(&stack.ingest_url, secret);
    let number = api
        .create_number("310000000061", "t", 80)
        .await
        .unwrap()
        .id
        .to_string();
    let base = stack.ingest_url.as_str();
    let png = b"\x89PNG\r\n\x1a\n a small picture".to_vec();

    let form = Form::new()
        .text("number_id", number.clone())
        .part("file", file(png.clone(), "logo.png", "image/png"));
    let (status, uploaded) = upload(base, &key, form).await;
    assert_eq!(status, 200, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap().to_owned();
    assert!(
        id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty(),
        "{uploaded}"
    );
    assert_eq!(
        (
            &uploaded["kind"],
            &uploaded["mime_type"],
            &uploaded["bytes"]
        ),
        (&json!("image"), &json!("image/png"), &json!(png.len()))
    );
    // What the Cloud API was given.
    let media: Value = reqwest::get(format!("{}/sim/media", stack.simulator_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        media["media"][0],
        json!({"id": id, "phone_number_id": "310000000061", "mime_type": "image/png",
               "file_name": "logo.png", "bytes": png.len()})
    );
    // A PDF named so, sent as an unknown type, is read by its extension.
    let form = Form::new().text("number_id", number.clone()).part(
        "file",
        file(
            b"%PDF-1.4 a menu".to_vec(),
            "menu.pdf",
            "application/octet-stream",
        ),
    );
    let (status, pdf) = upload(base, &key, form).await;
    assert_eq!((status, &pdf["kind"]), (200, &json!("document")), "{pdf}");

    // Refused before the Cloud API is asked.
    let refusals = [
        (
            Form::new().text("number_id", number.clone()).part(
                "file",
                file(b"MZ".to_vec(), "setup.exe", "application/x-msdownload"),
            ),
            422,
            "type",
        ),
        (
            Form::new().text("number_id", number.clone()).part(
                "file",
                file(vec![0; 5 * 1024 * 1024 + 1], "huge.jpg", "image/jpeg"),
            ),
            422,
            "larger",
        ),
        (
            Form::new()
                .text("number_id", number.clone())
                .part("file", file(Vec::new(), "empty.png", "image/png")),
            422,
            "empty",
        ),
        (
            Form::new().part("file", file(png.clone(), "logo.png", "image/png")),
            422,
            "number_id",
        ),
        (Form::new().text("number_id", number.clone()), 422, "file"),
        (
            Form::new()
                .text("number_id", "not-an-id")
                .part("file", file(png.clone(), "logo.png", "image/png")),
            422,
            "number_id",
        ),
        (
            Form::new()
                .text("number_id", uuid::Uuid::now_v7().to_string())
                .part("file", file(png.clone(), "logo.png", "image/png")),
            404,
            "number",
        ),
    ];
    for (form, expected, says) in refusals {
        let (status, answer) = upload(base, &key, form).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer.to_string().contains(says), "{says}: {answer}");
    }
    // Another tenant cannot use this number.
    let (_, other) = herald::tenant::create(&ctx.pool, "other").await.unwrap();
    let form = Form::new()
        .text("number_id", number.clone())
        .part("file", file(png.clone(), "logo.png", "image/png"));
    let (status, _) = upload(base, secrecy::ExposeSecret::expose_secret(&other), form).await;
    assert_eq!(status, 404);
    // The Cloud API refuses the number's token: said in plain words, the token never shown.
    reqwest::Client::new()
        .put(format!("{}/sim/numbers/310000000062", stack.simulator_url))
        .json(&json!({"phone_number_id": "310000000062", "token": "the-right-token"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let stale = api
        .create_untested_number("310000000062", "a-stale-token", 80)
        .await
        .unwrap()
        .id
        .to_string();
    let form = Form::new()
        .text("number_id", stale)
        .part("file", file(png, "logo.png", "image/png"));
    let (status, refused) = upload(base, &key, form).await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused.to_string().contains("access token"), "{refused}");
    assert!(!refused.to_string().contains("a-stale-token"));
    assert_eq!(
        reqwest::get(format!("{}/sim/media", stack.simulator_url))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["media"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing refused reached the Cloud API"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
