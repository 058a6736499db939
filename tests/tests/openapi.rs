//! `GET /v1/openapi.json` (issue #14): the document validates (openapi-spec-validator, through
//! scripts/python-tools.sh), lists exactly the routes ingest serves with exactly their
//! methods, matches the README's API table, and describes the refusals as they are answered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use herald::stack::{Roles, Stack};
use herald_tests::TestContext;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(method, path)` of every operation in the document, the method in upper case.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.insert((method.to_uppercase(), path.clone()), op.clone());
            }
        }
    }
    out
}

/// `(method, path)` of every route the README's API table lists.
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let mut routes = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split(" | ").next().unwrap_or_default();
        for call in first_cell.split('`').skip(1).step_by(2) {
            if let Some((method, path)) = call.split_once(' ')
                && METHODS.contains(&method.to_lowercase().as_str())
                && path.starts_with('/')
            {
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

/// A request path for a documented path template.
fn concrete(path: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    path.replace("{id}", &id)
        .replace("{upload_id}", &id)
        .replace("{phone}", "%2B14155550100")
        .replace("{delivery}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_describes_every_route_served() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", stack.ingest_url);

    // Public, like the probes: a client reads it before it has a key.
    let response = http.get(url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let bytes = response.bytes().await.unwrap();
    let doc: Value = serde_json::from_slice(&bytes).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");

    // An OpenAPI validator nobody here wrote.
    let file = std::env::temp_dir().join(format!("herald-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, &bytes).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-tools.sh");
    let validated = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("openapi-spec-validator")
        .arg(&file)
        .output()
        .await
        .expect("scripts/python-tools.sh runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let documented = operations(&doc);
    assert!(documented.len() >= 30, "{} operations", documented.len());

    // The README's table lists exactly the documented routes.
    let listed = readme_routes();
    let documented_routes: BTreeSet<_> = documented.keys().cloned().collect();
    assert_eq!(
        listed.difference(&documented_routes).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the README's table but not in the document"
    );
    assert_eq!(
        documented_routes.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the document but not in the README's table"
    );

    // Each documented operation is served: without a key, /v1 answers 401 (an unknown route
    // would be a 404, a wrong method a 405); the public ones answer 200.
    for ((method, path), op) in &documented {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http
            .request(method.clone(), url(&concrete(path)))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let secured = op.get("security").is_some();
        assert_eq!(
            secured,
            path.starts_with("/v1/") && path != "/v1/openapi.json",
            "{method} {path}: security"
        );
        if secured {
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} without a key: {body}"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        } else {
            assert_eq!(status, 200, "{method} {path}");
        }
    }

    // …and only with its documented methods: the others are the router's 405.
    let paths: BTreeSet<&String> = documented.keys().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS.map(str::to_uppercase) {
            if documented.contains_key(&(method.clone(), path.clone())) {
                continue;
            }
            let response = http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    url(&concrete(path)),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status().as_u16(),
                405,
                "{method} {path} is served but not documented"
            );
        }
    }

    // Every refusal is documented with the one error shape, and that shape is what is answered.
    let error_ref = "#/components/schemas/ErrorBody";
    for ((method, path), op) in &documented {
        for (status, response) in op["responses"].as_object().unwrap() {
            if status == "default" || status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                let plain_text_probe = path == "/readyz";
                assert!(
                    schema == error_ref || plain_text_probe,
                    "{method} {path} {status}: {response}"
                );
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    let detail = &schemas["ErrorDetail"];
    let refusal: Value = http
        .get(url("/v1/no-such-route"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answered: BTreeSet<&str> = refusal["error"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let properties: BTreeSet<&str> = detail["properties"]
        .as_object()
        .expect("ErrorDetail has properties")
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = detail["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        answered.is_subset(&properties),
        "{answered:?} ⊄ {properties:?}"
    );
    assert!(required.is_subset(&answered), "{required:?} ⊄ {answered:?}");

    // The lists are documented as pages.
    let list = &documented[&("GET".to_owned(), "/v1/campaigns".to_owned())];
    let page = list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("the list answers a schema");
    let page = &schemas[page.trim_start_matches("#/components/schemas/")];
    assert!(page["properties"]["items"].is_object(), "{page}");
    assert!(page["properties"]["next_cursor"].is_object(), "{page}");

    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
