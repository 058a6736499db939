//! Templates over HTTP (#12): sync every page, list with filters, the pre-flight's refusals,
//! every component kind sent in Meta's shape, several templates shared by weight. The
//! simulator's built-in catalogue has one template of each kind.

use std::time::Duration;

use herald::client::{ApiClient, ApiRefusal};
use herald::fixtures::Simulator;
use herald::stack::{Roles, Stack};
use herald_ingest::views::{CampaignView, Page, SyncReport, TemplateDetail};

type TemplateList = Page<TemplateDetail>;
use herald_shared::domain::{CampaignState, NumberId};
use herald_tests::{TestContext, configure_simulator, eventually, refusal};
use serde_json::{Value, json};

/// Templates in the simulator's catalogue, and those of them `APPROVED`.
const CATALOGUE: u64 = 12;
const APPROVED: usize = 10;

/// The first `(field, reason)` of a 422.
fn first_detail(r: &ApiRefusal) -> (String, String) {
    assert_eq!(r.status, 422, "{}", r.body);
    let d = &r.body["error"]["fields"][0];
    (
        d["field"].as_str().unwrap_or_default().to_owned(),
        d["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn number(api: &ApiClient, phone: &str) -> NumberId {
    api.create_number(phone, "t", 1000).await.unwrap().id
}

async fn create(api: &ApiClient, body: Value) -> anyhow::Result<CampaignView> {
    api.post("/v1/campaigns", &body).await
}

async fn upload(api: &ApiClient, campaign: &CampaignView, rows: Value) -> anyhow::Result<Value> {
    api.post(
        &format!("/v1/campaigns/{}/recipients", campaign.id),
        &json!({ "recipients": rows }),
    )
    .await
}

#[tokio::test]
async fn a_sync_reads_every_page_and_says_what_was_added_updated_and_removed() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    // Three templates a page: four pages.
    configure_simulator(&stack, json!({"template_page_size": 3})).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    number(&api, "630000000001").await;
    let report: SyncReport = api.post("/v1/templates/sync", &json!({})).await.unwrap();
    assert_eq!(
        (
            report.counts.added,
            report.counts.updated,
            report.counts.removed
        ),
        (CATALOGUE, 0, 0)
    );
    let all: TemplateList = api.get("/v1/templates").await.unwrap();
    assert_eq!(all.items.len() as u64, CATALOGUE);
    let approved: TemplateList = api.get("/v1/templates?status=APPROVED").await.unwrap();
    assert_eq!(approved.items.len(), APPROVED);
    let one: TemplateList = api
        .get("/v1/templates?name=order_dispatched&language=en_GB")
        .await
        .unwrap();
    let keys: Vec<(&str, bool)> = one.items[0]
        .parameters
        .iter()
        .map(|p| (p.key.as_str(), p.required))
        .collect();
    assert_eq!(
        keys,
        [
            ("body.first_name", true),
            ("body.order_id", true),
            ("button.0", true)
        ]
    );
    assert_eq!(one.items[0].parameter_format, "NAMED");
    let us: TemplateList = api.get("/v1/templates?language=en_US").await.unwrap();
    assert_eq!(us.items[0].name, "hello_world");

    // Meta paused one and deleted another.
    let simulator = Simulator::new(stack.simulator_url.clone());
    let mut catalogue: Value = simulator.config().await.unwrap()["templates"].clone();
    let list = catalogue.as_array_mut().unwrap();
    list.retain(|t| t["name"] != "hello_world");
    for t in list.iter_mut().filter(|t| t["name"] == "spring_sale_2026") {
        t["status"] = json!("PAUSED");
    }
    configure_simulator(&stack, json!({ "templates": catalogue })).await;
    let report: SyncReport = api.post("/v1/templates/sync", &json!({})).await.unwrap();
    assert_eq!(
        (
            report.counts.added,
            report.counts.updated,
            report.counts.removed
        ),
        (0, 1, 1)
    );
    let paused: TemplateList = api.get("/v1/templates?status=PAUSED").await.unwrap();
    let names: Vec<&str> = paused.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["spring_sale_2026", "summer_sale_2025"]);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn each_pre_flight_refusal_is_a_422_naming_the_field() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let n = number(&api, "630000000002").await;
    let with = |template: Value| json!({"name": "c", "template": template, "sender_numbers": [n]});

    // Not synced yet: creating a campaign syncs on demand, and then knows what is wrong.
    let cases = [
        (
            json!({"name": "no_such_template", "language": "en_GB"}),
            "template.name",
            "no template",
        ),
        (
            json!({"name": "autumn_preview", "language": "en_GB"}),
            "template.name",
            "PENDING",
        ),
        (
            json!({"name": "spring_sale_2026", "language": "fr"}),
            "template.language",
            "en_GB",
        ),
        (
            json!({"name": "store_location", "language": "en_GB"}),
            "template.name",
            "location header",
        ),
        (
            json!({"name": "spring_sale_banner", "language": "en_GB",
                   "values": {"header.media": "not a link"}}),
            "template.values",
            "https:// link",
        ),
        (
            json!({"name": "spring_sale_2026", "language": "en_GB", "values": {"body.9": "x"}}),
            "template.values",
            "not a parameter",
        ),
    ];
    for (template, field, says) in cases {
        let refused = refusal(create(&api, with(template.clone())).await.unwrap_err());
        let (got, reason) = first_detail(&refused);
        assert_eq!(got, field, "{template}: {reason}");
        assert!(reason.contains(says), "{template}: {reason}");
    }

    // Values that do not fit the template: the count, a missing media.
    let sale = create(
        &api,
        with(json!({"name": "spring_sale_2026", "language": "en_GB"})),
    )
    .await
    .unwrap();
    let short = refusal(
        upload(
            &api,
            &sale,
            json!([{"phone": "+447400000001", "variables": ["Ada"]}]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(first_detail(&short).0, "body.2");
    let banner = create(
        &api,
        with(json!({"name": "spring_sale_banner", "language": "en_GB"})),
    )
    .await
    .unwrap();
    let no_media = refusal(
        upload(
            &api,
            &banner,
            json!([{"phone": "+447400000001",
                    "variables": {"body.1": "Ada", "body.2": "5%", "button.1": "X"}}]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(first_detail(&no_media).0, "header.media");
    let c = api.campaign(banner.id).await.unwrap().counters;
    assert_eq!(c.total, 0, "a refused upload stores nothing");

    // And again at start: the template was paused by Meta since.
    upload(
        &api,
        &sale,
        json!([{"phone": "+447400000001", "variables": ["Ada", "5%"]}]),
    )
    .await
    .unwrap();
    let simulator = Simulator::new(stack.simulator_url.clone());
    let mut catalogue: Value = simulator.config().await.unwrap()["templates"].clone();
    for t in catalogue.as_array_mut().unwrap() {
        if t["name"] == "spring_sale_2026" {
            t["status"] = json!("PAUSED");
        }
    }
    configure_simulator(&stack, json!({ "templates": catalogue })).await;
    let paused = refusal(api.start(sale.id).await.unwrap_err());
    let (field, reason) = first_detail(&paused);
    assert_eq!(field, "template.name");
    assert!(reason.contains("PAUSED"), "{reason}");

    // Approved again, but edited to take a third value the recipient was never given: the
    // start is refused for as long as the template wants it, however often it is tried.
    let with_body_params = |n: usize| {
        let mut catalogue = catalogue.clone();
        for t in catalogue.as_array_mut().unwrap() {
            if t["name"] == "spring_sale_2026" {
                t["status"] = json!("APPROVED");
                t["body_params"] = json!(n);
            }
        }
        json!({ "templates": catalogue })
    };
    configure_simulator(&stack, with_body_params(3)).await;
    for attempt in 1..=2 {
        let lacking = refusal(api.start(sale.id).await.unwrap_err());
        let (field, reason) = first_detail(&lacking);
        assert_eq!(
            field, "body.1, body.2, body.3",
            "attempt {attempt}: {reason}"
        );
        assert!(
            reason.contains("1 recipients of template spring_sale_2026 lack a value"),
            "attempt {attempt}: {reason}"
        );
    }
    // Edited back to the values the recipient has: it starts.
    configure_simulator(&stack, with_body_params(2)).await;
    let started = api.start(sale.id).await.unwrap();
    assert_eq!(started.state, CampaignState::Running);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_template_of_each_component_kind_reaches_the_cloud_api_in_metas_shape() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    configure_simulator(
        &stack,
        json!({"capture": 100, "strict": true,
        "numbers": [{"phone_number_id": "630000000003"}]}),
    )
    .await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let n = number(&api, "630000000003").await;
    let cases = [
        (
            "spring_sale_banner",
            json!({"header.media": "https://cdn.example/spring.jpg", "button.0": "stop-promotions"}),
            json!({"body.1": "Priya", "body.2": "25%", "button.1": "SPRING26-PRIYA"}),
            include_str!("../fixtures/whatsapp/send-image-header-buttons.json"),
        ),
        (
            "order_dispatched",
            json!({}),
            json!({"body.first_name": "Priya", "body.order_id": "NW-48213", "button.0": "NW-48213"}),
            include_str!("../fixtures/whatsapp/send-named-body-url-button.json"),
        ),
        (
            "delivery_update",
            json!({}),
            json!({"header.1": "Priya", "body.1": "NW-48213", "body.2": "tomorrow"}),
            include_str!("../fixtures/whatsapp/send-text-header.json"),
        ),
        (
            "welcome_video",
            json!({"header.media": "1480539276543210"}),
            json!({"body.1": "Priya"}),
            include_str!("../fixtures/whatsapp/send-video-header-media-id.json"),
        ),
        (
            "invoice_ready",
            json!({}),
            json!({"header.media": "https://cdn.example/inv-7.pdf", "header.filename": "INV-7.pdf",
                   "body.1": "Priya", "body.2": "INV-7"}),
            include_str!("../fixtures/whatsapp/send-document-header.json"),
        ),
        (
            "flash_sale_code",
            json!({}),
            json!({"body.1": "Priya", "button.0": "FLASH20-PRIYA"}),
            include_str!("../fixtures/whatsapp/send-copy-code-button.json"),
        ),
    ];
    for (i, (name, fixed, values, _)) in cases.iter().enumerate() {
        let campaign = create(
            &api,
            json!({"name": name, "sender_numbers": [n],
                   "template": {"name": name, "language": "en_GB", "values": fixed}}),
        )
        .await
        .unwrap();
        let phone = format!("+4474000001{:02}", i + 1);
        let report = upload(
            &api,
            &campaign,
            json!([{"phone": phone, "variables": values}]),
        )
        .await
        .unwrap();
        assert_eq!(report["accepted"], 1, "{name}: {report}");
        api.start(campaign.id).await.unwrap();
        eventually(&format!("{name} sent"), Duration::from_secs(20), || async {
            let c = api.campaign(campaign.id).await.unwrap().counters;
            (c.sent + c.delivered + c.read + c.failed == 1).then_some(())
        })
        .await;
        let c = api.campaign(campaign.id).await.unwrap().counters;
        assert_eq!(c.failed, 0, "{name}: the simulator refused it");
    }
    let sent = Simulator::new(stack.simulator_url.clone())
        .sent()
        .await
        .unwrap();
    assert_eq!(sent.len(), cases.len());
    for ((name, _, _, fixture), mut body) in cases.iter().zip(sent) {
        // The message id Herald tags each send with differs per run.
        body.as_object_mut()
            .unwrap()
            .remove("biz_opaque_callback_data");
        let expected: Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(body, expected, "{name}");
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_three_templates_shares_its_recipients_by_weight() {
    let ctx = TestContext::new().await;
    let stack = ctx.start_stack().await;
    configure_simulator(&stack, json!({"capture": 10_000})).await;
    let api = ctx.tenant(&stack.ingest_url).await;
    let n = number(&api, "630000000004").await;
    let campaign = create(
        &api,
        json!({"name": "mix", "sender_numbers": [n], "templates": [
            {"name": "spring_sale_2026", "language": "en_GB", "weight": 50},
            {"name": "delivery_update", "language": "en_GB", "weight": 30},
            {"name": "flash_sale_code", "language": "en_GB", "weight": 20,
             "values": {"button.0": "FLASH20"}}
        ]}),
    )
    .await
    .unwrap();
    const N: usize = 10_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(5_000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"phone": format!("+4475{i:08}"),
                       "variables": {"header.1": format!("C{i}"), "body.1": format!("C{i}"),
                                     "body.2": "25%"}})
            })
            .collect();
        let report = upload(&api, &campaign, json!(rows)).await.unwrap();
        assert_eq!(report["accepted"], chunk.len(), "{report}");
    }
    api.start(campaign.id).await.unwrap();
    let view = eventually("every message sent", Duration::from_secs(60), || async {
        let view = api.campaign(campaign.id).await.unwrap();
        (view.counters.pending + view.counters.queued == 0).then_some(view)
    })
    .await;
    let shares: Vec<(&str, i64)> = view
        .templates
        .iter()
        .map(|t| (t.name.as_str(), t.counters.total))
        .collect();
    for ((name, total), share) in shares.iter().zip([0.5, 0.3, 0.2]) {
        let got = *total as f64 / N as f64;
        assert!(
            (got - share).abs() <= 0.02,
            "{name}: {got} of the recipients"
        );
    }
    assert_eq!(shares.iter().map(|s| s.1).sum::<i64>(), N as i64);
    let sent = Simulator::new(stack.simulator_url.clone())
        .sent()
        .await
        .unwrap();
    for (name, total) in &shares {
        let received = sent
            .iter()
            .filter(|b| b["template"]["name"] == *name)
            .count();
        assert_eq!(received as i64, *total, "{name}");
    }
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_template_that_cannot_be_synced_says_why() {
    let ctx = TestContext::new().await;
    // No Cloud API where Herald looks for one.
    let mut settings = ctx.settings.clone();
    settings.whatsapp.base_url = "http://127.0.0.1:9".into();
    let stack = Stack::start(settings, Roles::INGEST).await.unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let n = api
        .create_untested_number("630000000009", "t", 80)
        .await
        .unwrap()
        .id;
    let refused = refusal(
        create(
            &api,
            json!({"name": "c", "sender_numbers": [n],
                   "template": {"name": "spring_sale_2026", "language": "en_GB"}}),
        )
        .await
        .unwrap_err(),
    );
    let (field, reason) = first_detail(&refused);
    assert_eq!(field, "template.name");
    assert!(
        reason.contains("could not be read") && reason.contains("could not be reached"),
        "{reason}"
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
