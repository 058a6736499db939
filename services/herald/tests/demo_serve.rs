//! Issue #17: `herald demo --serve` prints the console's address and a key to sign in with,
//! and keeps the console running after the campaign until Ctrl-C (SIGINT).

use std::time::Duration;

use herald_tests::TestContext;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_console_until_interrupted() {
    let ctx = TestContext::new().await;
    let mut demo = ctx
        .herald_command(env!("CARGO_BIN_EXE_herald"), "demo")
        .arg("--serve")
        .env("HERALD__DEMO__RECIPIENTS", "200")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the herald binary starts");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut console = None;
    let serving = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Console: ") {
                let (url, key) = rest.split_once("/  (sign in with the API key ").unwrap();
                console = Some((url.to_owned(), key.trim_end_matches(')').to_owned()));
            }
            if line.starts_with("Serving the console at ") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the demo finishes its campaign in time");
    assert!(serving, "the demo said it serves the console");
    let (url, key) = console.expect("the demo printed the console's address and a key");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = http
        .post(format!("{url}/sign-in"))
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = signed.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(format!("{url}/"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Spring sale (demo)") && page.contains("completed"),
        "{page}"
    );

    let pid = demo.id().unwrap().to_string();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait())
        .await
        .expect("the demo stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        http.get(format!("{url}/sign-in")).send().await.is_err(),
        "nothing serves the console any more"
    );
    ctx.cleanup().await;
}
