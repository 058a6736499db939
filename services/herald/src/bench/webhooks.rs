//! B5: signed webhook POSTs under `wrk`, and how fast the processors apply what they buffered.

use std::time::{Duration, Instant};

use anyhow::Context;
use herald_shared::db::transitions::{self, Sent};
use herald_shared::db::{campaigns, messages};
use herald_shared::domain::{CampaignId, MessageId, NumberId};
use herald_shared::settings::Settings;
use herald_shared::stream::{Keys, conn, webhooks};
use serde::Serialize;
use serde_json::json;

use crate::fixtures::{self, World};
use crate::stack::{Roles, Stack};

/// B5's figures for one body size.
#[derive(Debug, Serialize)]
pub struct WebhookFigures {
    pub statuses_per_post: usize,
    pub requests_per_second: f64,
    pub statuses_per_second_accepted: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    /// Statuses the processor applied per second, from the first POST until the buffer was
    /// empty.
    pub statuses_per_second_applied: f64,
}

/// B5: `wrk` POSTs signed status bodies (`statuses_per_post` each, all `delivered` receipts
/// for messages Herald sent, by callback data) at the webhook role for `seconds`; then the
/// processor drains the buffer into Postgres.
pub async fn run(
    settings: Settings,
    statuses_per_post: usize,
    seconds: u64,
) -> anyhow::Result<WebhookFigures> {
    const MESSAGES: usize = 100_000;
    // Distinct bodies that wrk cycles through: every message once per cycle.
    let bodies_count = (MESSAGES / statuses_per_post).min(20_000);
    let world = World::isolate_database(settings, "bench").await?;
    let (ids, phone_number_id) = sent_messages(&world, MESSAGES).await?;
    let settings = &world.settings;

    // The bodies, signed, one per line for the wrk script.
    let secret = settings
        .webhook
        .app_secrets
        .first()
        .context("webhook.app_secrets is empty")?
        .clone();
    let dir = std::path::Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let mut lines = String::new();
    for body in 0..bodies_count {
        let statuses: Vec<serde_json::Value> = (0..statuses_per_post)
            .map(|i| {
                let id = ids[(body * statuses_per_post + i) % ids.len()];
                json!({"id": format!("wamid.b5-{}", id.0), "status": "delivered",
                       "timestamp": "1778580002", "recipient_id": "447400000000",
                       "biz_opaque_callback_data": id.0.to_string()})
            })
            .collect();
        let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account",
            "entry": [{"id": "bench", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "447400000000",
                             "phone_number_id": phone_number_id},
                "statuses": statuses}}]}]}))?;
        let signature = herald_shared::signature::sign(&secret, &body);
        lines.push_str(&format!("{signature}\t{}\n", String::from_utf8(body)?));
    }
    let bodies = dir.join(format!("b5-bodies-{statuses_per_post}.txt"));
    std::fs::write(&bodies, lines)?;
    let script = dir.join("b5.lua");
    std::fs::write(&script, WRK_SCRIPT)?;

    let roles = Roles {
        ingest: false,
        sender: false,
        webhook: true,
        simulator: false,
    };
    let stack = Stack::start(settings.clone(), roles).await?;
    let started = Instant::now();
    let output = tokio::process::Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(format!("{}/webhook", stack.webhook_url))
        .arg("--")
        .arg(&bodies)
        .output()
        .await
        .context("running wrk (apt-get install wrk)")?;
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    anyhow::ensure!(output.status.success(), "wrk failed: {report}");
    let requests_per_second = wrk_figure(&report, "Requests/sec:")?;
    let total_requests = wrk_total_requests(&report)?;
    let non_2xx = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let p99_ms = wrk_p99_ms(&report)?;

    // Until the processor has applied every buffered body.
    let mut redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
    let keys = Keys::new(settings.redis.key_prefix.clone());
    loop {
        let left = webhooks::buffered(&mut redis, &keys).await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the processor did not drain the buffer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed().as_secs_f64();
    stack.stop().await?;
    world.drop().await?;
    let accepted = (total_requests - non_2xx) * statuses_per_post as u64;
    Ok(WebhookFigures {
        statuses_per_post,
        requests_per_second,
        statuses_per_second_accepted: requests_per_second * statuses_per_post as f64,
        p99_ms,
        non_2xx,
        statuses_per_second_applied: accepted as f64 / drained,
    })
}

/// Cycles through the signed bodies in the file given after `--`.
const WRK_SCRIPT: &str = r#"
local requests = {}
local next = 0
function init(args)
  for line in io.lines(args[1]) do
    local signature, body = line:match("^([^\t]+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", nil,
      {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = signature}, body)
  end
end
function request()
  next = next % #requests + 1
  return requests[next]
end
"#;

/// `n` sent messages of one number, and the number's `phone_number_id` (receipts name it).
async fn sent_messages(world: &World, n: usize) -> anyhow::Result<(Vec<MessageId>, String)> {
    let seeded = seed(world, n).await?;
    for chunk in seeded.ids.chunks(5_000) {
        let sent: Vec<Sent> = chunk
            .iter()
            .map(|id| Sent {
                message: *id,
                wa_message_id: format!("wamid.b5-{}", id.0),
                at: chrono::Utc::now(),
            })
            .collect();
        transitions::record_sent(&world.pool, &sent).await?;
    }
    Ok((seeded.ids, seeded.phone_number_id))
}

/// A running campaign of `n` pending messages over one number.
pub(super) struct Seeded {
    pub campaign: CampaignId,
    pub number: NumberId,
    pub ids: Vec<MessageId>,
    pub phone_number_id: String,
}

pub(super) async fn seed(world: &World, n: usize) -> anyhow::Result<Seeded> {
    let pool = &world.pool;
    let (tenant, _) = crate::tenant::create(pool, "bench").await?;
    let numbers = fixtures::register_numbers(world, tenant, 1, 80).await?;
    let campaign = CampaignId::new();
    let mut tx = pool.begin().await?;
    campaigns::insert_campaign(
        &mut tx,
        &campaigns::NewCampaign {
            id: campaign,
            tenant,
            name: "bench",
            templates: &[campaigns::CampaignTemplate::only(
                "spring_sale_2026",
                "en_GB",
                2,
            )],
            numbers: &numbers,
            scheduled_at: None,
            overdue: "start",
        },
    )
    .await?;
    tx.commit().await?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let rows: Vec<messages::NewMessage> = chunk
            .iter()
            .map(|i| messages::NewMessage {
                template: 0,
                number: numbers[0],
                recipient: format!("+4474{i:08}"),
                variables: json!([]),
            })
            .collect();
        messages::insert_recipients(pool, campaign, &rows).await?;
    }
    let ids: Vec<MessageId> =
        sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
            .bind(campaign)
            .fetch_all(pool)
            .await?;
    let number = herald_shared::db::numbers::get_number(pool, numbers[0])
        .await?
        .context("the bench's number")?;
    Ok(Seeded {
        campaign,
        number: numbers[0],
        ids,
        phone_number_id: number.phone_number_id,
    })
}

fn wrk_figure(report: &str, label: &str) -> anyhow::Result<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {label} in wrk's report: {report}"))
}

/// "123456 requests in 10.00s, …"
fn wrk_total_requests(report: &str) -> anyhow::Result<u64> {
    report
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no request count in wrk's report: {report}"))
}

/// The `99%` line of `--latency`, in ms.
fn wrk_p99_ms(report: &str) -> anyhow::Result<f64> {
    let value = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .with_context(|| format!("no 99% latency in wrk's report: {report}"))?;
    let (number, unit) = value.split_at(value.find(|c: char| c.is_alphabetic()).unwrap_or(0));
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        other => anyhow::bail!("unknown latency unit {other}"),
    })
}
