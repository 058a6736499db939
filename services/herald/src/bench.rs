//! `herald bench`: the benchmark workloads (see BENCHMARKS.md), run against a simulator in
//! another process so that Herald's own CPU can be told apart. Prints one JSON line of
//! figures; `scripts/bench.sh` runs it several times and writes the medians.

use std::time::{Duration, Instant};

use anyhow::Context;
use herald_shared::crypto::TokenCipher;
use herald_shared::db::{self, numbers};
use herald_shared::domain::{NumberId, TenantId};
use herald_shared::settings::Settings;
use herald_shared::stream::conn;
use redis::AsyncCommands;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

use crate::client::ApiClient;
use crate::stack::{Roles, Stack};

/// One workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub numbers: usize,
    pub recipients: usize,
    /// Each number's rate and ceiling (msg/s).
    pub rate: u32,
    /// The simulator's settings for the run (a JSON merge patch of its configuration).
    pub simulator: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub messages: usize,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// user + sys of this process (every Herald role) per 1,000 messages.
    pub herald_cpu_s_per_1k: f64,
    /// The whole machine's busy CPU per 1,000 messages (Redis, Postgres, simulator included).
    pub all_cpu_s_per_1k: f64,
    pub peak_rss_mb: f64,
    /// The in-flight window allowed: `sender.in_flight` per number, over all numbers (the
    /// simulator's `peak_in_flight` is how much of it was used).
    pub in_flight_window: usize,
    pub simulator: serde_json::Value,
}

pub async fn run(
    mut settings: Settings,
    simulator_url: &str,
    w: &Workload,
) -> anyhow::Result<Figures> {
    settings.whatsapp.base_url = simulator_url.to_owned();
    settings.sender.in_flight = settings.sender.in_flight.max(64);
    let pool = bench_world(&mut settings).await?;
    let http = reqwest::Client::new();
    http.delete(format!("{simulator_url}/sim/stats"))
        .send()
        .await?
        .error_for_status()?;
    configure_simulator(&http, simulator_url, &w.simulator).await?;
    let (stack, tenant, api) = start_sending(&settings, &pool).await?;
    let numbers = register_numbers(&settings, &pool, tenant, w).await?;
    let campaign = api
        .create_campaign("bench", "spring_sale_2026", "en_GB", &numbers)
        .await?;
    upload_recipients(&api, campaign.id, w.recipients).await?;

    let (cpu0, all0) = (own_cpu_seconds()?, machine_busy_seconds()?);
    let started = Instant::now();
    api.start(campaign.id).await?;
    loop {
        let c = api.campaign(campaign.id).await?.counters;
        if c.total - c.pending - c.queued >= c.total {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the run took too long"
        );
        // Often enough that the poll adds little to a run of a few seconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu1, all1) = (own_cpu_seconds()?, machine_busy_seconds()?);
    let simulator: serde_json::Value = http
        .get(format!("{simulator_url}/sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    stack.stop().await?;
    let per_1k = 1000.0 / w.recipients as f64;
    Ok(Figures {
        messages: w.recipients,
        seconds,
        messages_per_second: w.recipients as f64 / seconds,
        herald_cpu_s_per_1k: (cpu1 - cpu0) * per_1k,
        all_cpu_s_per_1k: (all1 - all0) * per_1k,
        peak_rss_mb: peak_rss_kb()? / 1024.0,
        in_flight_window: settings.sender.in_flight * w.numbers,
        simulator,
    })
}

/// Numbers straight into the database: the API caps a number at Meta's 1,000 msg/s, and the
/// ceiling benchmark must not be limited by Herald.
async fn register_numbers(
    settings: &Settings,
    pool: &sqlx::PgPool,
    tenant: TenantId,
    w: &Workload,
) -> anyhow::Result<Vec<NumberId>> {
    let cipher = TokenCipher::from_base64(&settings.security.token_encryption_key)?;
    let mut redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
    let run: u32 = rand::random::<u32>() % 1_000_000;
    let mut ids = Vec::new();
    for i in 0..w.numbers {
        let id = NumberId::new();
        let token = cipher.encrypt(&SecretString::from("bench-token"), id.0.as_bytes());
        let phone_number_id = format!("2{run:06}{i:04}");
        numbers::insert_number(
            pool,
            &numbers::NewNumber {
                id,
                tenant,
                phone_number_id: &phone_number_id,
                waba_id: "bench",
                display_number: &phone_number_id,
                access_token: &token,
                throughput_ceiling: w.rate as i32,
                current_rate: w.rate as i32,
                portfolio_id: None,
            },
        )
        .await?;
        let _: () = redis
            .sadd(
                format!("{}:numbers", settings.redis.key_prefix),
                id.to_string(),
            )
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// user + sys of this process, from /proc/self/stat (fields 14 and 15, in clock ticks).
fn own_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or(&stat);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

/// Busy CPU of the whole machine, from /proc/stat's first line.
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    let busy: f64 = cpu
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy / clock_ticks())
}

fn clock_ticks() -> f64 {
    // Linux reports /proc times in USER_HZ, which is 100 on every mainstream platform.
    100.0
}

fn peak_rss_kb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// The named workload: `b1` (ceiling), `b1-lat` (50 ms latency), `b2` (a cap of 80).
pub fn workload(name: &str) -> anyhow::Result<Workload> {
    let open = |latency_ms: u32| {
        json!({"cap_per_number": 0, "pair_limit": false, "faults": [],
               "latency": if latency_ms == 0 { json!({"kind": "none"}) }
                          else { json!({"kind": "fixed", "ms": latency_ms}) }})
    };
    Ok(match name {
        "b1" => Workload {
            numbers: 4,
            recipients: 100_000,
            rate: 1_000_000,
            simulator: open(0),
        },
        "b1-lat" => Workload {
            numbers: 4,
            recipients: 100_000,
            rate: 1_000_000,
            simulator: open(50),
        },
        "b2" => Workload {
            numbers: 10,
            recipients: 50_000,
            rate: 80,
            simulator: json!({"cap_per_number": 80, "pair_limit": false, "faults": [],
                              "latency": {"kind": "none"}}),
        },
        other => anyhow::bail!("unknown workload {other}: b1, b1-lat or b2"),
    })
}

/// B3's figures: how the adaptive rate found a cap it was not told.
#[derive(Debug, Serialize)]
pub struct AdaptationFigures {
    pub hidden_cap: u32,
    pub start_rate: u32,
    pub pacing_window_s: u64,
    /// From the start until a one-second window first reached 90% of the hidden cap.
    pub seconds_to_90_percent: Option<f64>,
    /// Accepted per second from then until the cap was lowered.
    pub mean_rate_after: f64,
    /// 130429 answers among all sends over that time.
    pub rejected_share_after: f64,
    pub lowered_cap: u32,
    /// From lowering the cap until a one-second window of sends (accepted and refused) was
    /// first back under it.
    pub seconds_back_under_lowered_cap: Option<f64>,
}

/// B3: one number, a simulator cap of `HIDDEN_CAP` that Herald is not told, a start at 80
/// msg/s and a 4 s pacing window (the default 5 min window would need an hour to climb from
/// 80 to 250; +10% a window needs 11 windows to reach 225); after `LOWER_AT` the cap drops to `LOWERED_CAP`.
pub async fn run_adaptation(
    mut settings: Settings,
    simulator_url: &str,
) -> anyhow::Result<AdaptationFigures> {
    const HIDDEN_CAP: u32 = 250;
    const LOWERED_CAP: u32 = 150;
    const START_RATE: u32 = 80;
    const LOWER_AT: Duration = Duration::from_secs(75);
    const RUN_FOR: Duration = Duration::from_secs(95);
    const SAMPLE: Duration = Duration::from_millis(250);
    settings.sender.pacing.window_s = 4;
    settings.whatsapp.base_url = simulator_url.to_owned();
    let pool = bench_world(&mut settings).await?;
    let http = reqwest::Client::new();
    http.delete(format!("{simulator_url}/sim/stats"))
        .send()
        .await?
        .error_for_status()?;
    configure_simulator(
        &http,
        simulator_url,
        &json!({"cap_per_number": HIDDEN_CAP, "pair_limit": false, "faults": [],
                "latency": {"kind": "none"}}),
    )
    .await?;
    let (stack, tenant, api) = start_sending(&settings, &pool).await?;
    let w = Workload {
        numbers: 1,
        recipients: (HIDDEN_CAP as usize) * RUN_FOR.as_secs() as usize,
        rate: START_RATE,
        simulator: json!({}),
    };
    let numbers = register_numbers(&settings, &pool, tenant, &w).await?;
    // The ceiling is the highest tier, well above the hidden cap.
    sqlx::query("UPDATE sender_numbers SET throughput_ceiling = 1000 WHERE id = $1")
        .bind(numbers[0])
        .execute(&pool)
        .await?;
    let campaign = api
        .create_campaign("bench-b3", "spring_sale_2026", "en_GB", &numbers)
        .await?;
    upload_recipients(&api, campaign.id, w.recipients).await?;

    // (seconds since the start, accepted, answered 130429), every SAMPLE.
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let started = Instant::now();
    api.start(campaign.id).await?;
    let mut lowered = false;
    while started.elapsed() < RUN_FOR {
        if !lowered && started.elapsed() >= LOWER_AT {
            configure_simulator(
                &http,
                simulator_url,
                &json!({"cap_per_number": LOWERED_CAP}),
            )
            .await?;
            lowered = true;
        }
        let stats: serde_json::Value = http
            .get(format!("{simulator_url}/sim/stats"))
            .send()
            .await?
            .json()
            .await?;
        let accepted = stats["accepted_total"].as_u64().unwrap_or(0);
        let refused = stats["rejected"]["130429"].as_u64().unwrap_or(0);
        samples.push((started.elapsed().as_secs_f64(), accepted, refused));
        tokio::time::sleep(SAMPLE).await;
    }
    api.cancel(campaign.id).await?;
    stack.stop().await?;

    // One-second windows ending at each sample: (end, accepted, refused).
    let per_sample = (1.0 / SAMPLE.as_secs_f64()).round() as usize;
    let windows: Vec<(f64, u64, u64)> = samples
        .windows(per_sample + 1)
        .map(|w| {
            let (first, last) = (w[0], w[per_sample]);
            (last.0, last.1 - first.1, last.2 - first.2)
        })
        .collect();
    let lower_at = LOWER_AT.as_secs_f64();
    let converged = windows
        .iter()
        .find(|(_, accepted, _)| *accepted as f64 >= 0.9 * HIDDEN_CAP as f64)
        .map(|w| w.0);
    let (mean_rate_after, rejected_share_after) = match converged {
        Some(t) => {
            let at = |time: f64| {
                samples
                    .iter()
                    .rev()
                    .find(|s| s.0 <= time)
                    .copied()
                    .unwrap_or_default()
            };
            let (from, to) = (at(t), at(lower_at));
            let (accepted, refused) = (to.1 - from.1, to.2 - from.2);
            (
                accepted as f64 / (to.0 - from.0).max(1e-9),
                refused as f64 / ((accepted + refused) as f64).max(1.0),
            )
        }
        None => (0.0, 0.0),
    };
    let back_under = windows
        .iter()
        .filter(|w| w.0 >= lower_at + 1.0)
        .find(|(_, accepted, refused)| accepted + refused <= LOWERED_CAP as u64)
        .map(|w| w.0 - lower_at);
    Ok(AdaptationFigures {
        hidden_cap: HIDDEN_CAP,
        start_rate: START_RATE,
        pacing_window_s: settings.sender.pacing.window_s,
        seconds_to_90_percent: converged,
        mean_rate_after,
        rejected_share_after,
        lowered_cap: LOWERED_CAP,
        seconds_back_under_lowered_cap: back_under,
    })
}

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
pub async fn run_webhook(
    mut settings: Settings,
    statuses_per_post: usize,
    seconds: u64,
) -> anyhow::Result<WebhookFigures> {
    const MESSAGES: usize = 100_000;
    // Distinct bodies that wrk cycles through: every message once per cycle.
    let bodies_count = (MESSAGES / statuses_per_post).min(20_000);
    let pool = bench_world(&mut settings).await?;
    let ids = sent_messages(&settings, &pool, MESSAGES).await?;

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
                             "phone_number_id": "bench"},
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
    let buffer = herald_shared::stream::Keys::new(settings.redis.key_prefix.clone()).webhooks();
    loop {
        let left: u64 = redis.xlen(&buffer).await?;
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

/// A campaign of `n` messages already sent, by id.
async fn sent_messages(
    settings: &Settings,
    pool: &sqlx::PgPool,
    n: usize,
) -> anyhow::Result<Vec<herald_shared::domain::MessageId>> {
    use herald_shared::db::{campaigns, messages};
    let (tenant, _) = crate::tenant::create(pool, "bench").await?;
    let w = Workload {
        numbers: 1,
        recipients: n,
        rate: 80,
        simulator: json!({}),
    };
    let numbers = register_numbers(settings, pool, tenant, &w).await?;
    let campaign = herald_shared::domain::CampaignId::new();
    let mut tx = pool.begin().await?;
    campaigns::insert_campaign(
        &mut tx,
        &campaigns::NewCampaign {
            id: campaign,
            tenant,
            name: "bench-b5",
            template_name: "spring_sale_2026",
            template_language: "en_GB",
            numbers: &numbers,
        },
    )
    .await?;
    tx.commit().await?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let rows: Vec<messages::NewMessage> = chunk
            .iter()
            .map(|i| messages::NewMessage {
                number: numbers[0],
                recipient: format!("+4474{i:08}"),
                variables: json!([]),
            })
            .collect();
        messages::insert_recipients(pool, campaign, &rows).await?;
    }
    let ids: Vec<herald_shared::domain::MessageId> =
        sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
            .bind(campaign)
            .fetch_all(pool)
            .await?;
    for chunk in ids.chunks(5_000) {
        let sent: Vec<messages::Sent> = chunk
            .iter()
            .map(|id| messages::Sent {
                message: *id,
                wa_message_id: format!("wamid.b5-{}", id.0),
                at: chrono::Utc::now(),
            })
            .collect();
        messages::record_sent(pool, &sent).await?;
    }
    Ok(ids)
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

/// Gives the run a Redis prefix of its own and returns its (migrated) database's pool.
async fn bench_world(settings: &mut Settings) -> anyhow::Result<sqlx::PgPool> {
    settings.redis.key_prefix = format!(
        "{}:bench-{}",
        settings.redis.key_prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    db::ensure_database(&settings.database).await?;
    let pool = db::pool(&settings.database)?;
    db::migrate(&pool).await?;
    Ok(pool)
}

/// Uploads `n` recipients (+4474…, two variables each) to a draft campaign.
async fn upload_recipients(
    api: &ApiClient,
    campaign: herald_shared::domain::CampaignId,
    n: usize,
) -> anyhow::Result<()> {
    let rows: Vec<(String, Vec<String>)> = (0..n)
        .map(|i| {
            (
                format!("+4474{i:08}"),
                vec![format!("Customer {i}"), "25%".into()],
            )
        })
        .collect();
    for chunk in rows.chunks(20_000) {
        api.upload(campaign, chunk).await?;
    }
    Ok(())
}

/// Applies a JSON merge patch to the simulator's configuration.
async fn configure_simulator(
    http: &reqwest::Client,
    simulator_url: &str,
    patch: &serde_json::Value,
) -> anyhow::Result<()> {
    http.post(format!("{simulator_url}/sim/config"))
        .json(patch)
        .send()
        .await?
        .error_for_status()
        .context("configuring the simulator")?;
    Ok(())
}

/// Ingest and the sender in this process (receipts are not part of these workloads), a
/// tenant, and an API client for it.
async fn start_sending(
    settings: &Settings,
    pool: &sqlx::PgPool,
) -> anyhow::Result<(Stack, TenantId, ApiClient)> {
    let roles = Roles {
        ingest: true,
        sender: true,
        webhook: false,
        simulator: false,
    };
    let stack = Stack::start(settings.clone(), roles).await?;
    let (tenant, key) = crate::tenant::create(pool, "bench").await?;
    let api = ApiClient::new(stack.ingest_url.clone(), key);
    Ok((stack, tenant, api))
}
