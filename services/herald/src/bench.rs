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
    pub simulator: serde_json::Value,
}

pub async fn run(
    mut settings: Settings,
    simulator_url: &str,
    w: &Workload,
) -> anyhow::Result<Figures> {
    settings.redis.key_prefix = format!(
        "{}:bench-{}",
        settings.redis.key_prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    settings.whatsapp.base_url = simulator_url.to_owned();
    settings.sender.in_flight = settings.sender.in_flight.max(64);
    db::ensure_database(&settings.database).await?;
    let pool = db::pool(&settings.database)?;
    db::migrate(&pool).await?;
    let http = reqwest::Client::new();
    http.delete(format!("{simulator_url}/sim/stats"))
        .send()
        .await?
        .error_for_status()?;
    http.post(format!("{simulator_url}/sim/config"))
        .json(&w.simulator)
        .send()
        .await?
        .error_for_status()
        .context("configuring the simulator")?;

    // Until every message is `sent`: receipts are not part of these workloads.
    let roles = Roles {
        ingest: true,
        sender: true,
        webhook: false,
        simulator: false,
    };
    let stack = Stack::start(settings.clone(), roles).await?;
    let (tenant, key) = crate::tenant::create(&pool, "bench").await?;
    let api = ApiClient::new(stack.ingest_url.clone(), key);
    let numbers = register_numbers(&settings, &pool, tenant, w).await?;
    let campaign = api
        .create_campaign("bench", "spring_sale_2026", "en_GB", &numbers)
        .await?;
    let rows: Vec<(String, Vec<String>)> = (0..w.recipients)
        .map(|i| {
            (
                format!("+4474{i:08}"),
                vec![format!("Customer {i}"), "25%".into()],
            )
        })
        .collect();
    for chunk in rows.chunks(20_000) {
        api.upload(campaign.id, chunk).await?;
    }

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
        tokio::time::sleep(Duration::from_millis(50)).await;
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
