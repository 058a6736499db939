//! B1, B1-lat and B2: a campaign sent as fast as the numbers' rates and the simulator allow,
//! with the time, the messages a second and the CPU they cost.

use std::time::Duration;

use anyhow::Context;
use herald_shared::db::campaigns;
use herald_shared::settings::Settings;
use serde::Serialize;
use serde_json::json;

use super::measure::{Meter, Spent, peak_rss_kb};
use super::start_sending;
use crate::fixtures::{self, Simulator, World};

/// One throughput workload.
#[derive(Debug, Clone)]
pub struct Load {
    pub numbers: usize,
    pub recipients: usize,
    /// Each number's rate and ceiling (msg/s).
    pub rate: u32,
    /// The simulator's settings for the run (a JSON merge patch of its configuration).
    pub simulator: serde_json::Value,
}

impl Load {
    /// B1 (the ceiling: no cap, no latency), or B1-lat with the simulator answering after
    /// `latency_ms`.
    pub fn ceiling(latency_ms: u32) -> Self {
        let latency = if latency_ms == 0 {
            json!({"kind": "none"})
        } else {
            json!({"kind": "fixed", "ms": latency_ms})
        };
        Self {
            numbers: 4,
            recipients: 100_000,
            rate: 1_000_000,
            simulator: json!({"cap_per_number": 0, "pair_limit": false, "faults": [],
                              "latency": latency}),
        }
    }

    /// B2: ten numbers at Meta's standard 80 msg/s, the simulator enforcing it.
    pub fn capped() -> Self {
        Self::enforced(10, 50_000, 80)
    }

    /// B2-40: 40 numbers at Meta's highest rate, 1,000 msg/s each (B1's variant:
    /// `scripts/bench.sh` runs it against the lean simulator, which counts each number's
    /// busiest second without enforcing the cap).
    pub fn forty_at_the_ceiling() -> Self {
        Self::enforced(40, 200_000, 1_000)
    }

    /// `numbers` numbers at `rate` msg/s each, the full simulator enforcing it (so that a
    /// second over the rate on any number shows, as its window count and as 130429s).
    pub fn enforced(numbers: usize, recipients: usize, rate: u32) -> Self {
        Self {
            numbers,
            recipients,
            rate,
            simulator: json!({"cap_per_number": rate, "pair_limit": false, "faults": [],
                              "latency": {"kind": "none"}}),
        }
    }
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
    simulator: &Simulator,
    w: &Load,
) -> anyhow::Result<Figures> {
    settings.sender.in_flight = settings.sender.in_flight.max(64);
    let world = World::isolate_database(settings, "bench").await?;
    simulator.reset_stats().await?;
    simulator.configure(&w.simulator).await?;
    let (stack, tenant, api) = start_sending(&world).await?;
    let numbers = fixtures::register_numbers(&world, tenant, w.numbers, w.rate).await?;
    let campaign = api
        .create_campaign("bench", "spring_sale_2026", "en_GB", &numbers)
        .await?;
    fixtures::upload_recipients(&api, campaign.id, w.recipients).await?;

    let meter = Meter::start()?;
    api.start(campaign.id).await?;
    loop {
        // The campaign's counters, read from Postgres: `GET /v1/campaigns/{id}` also counts
        // each number's messages, work that grows with the campaign and is not the send's.
        let row = campaigns::get_campaign(&world.pool, tenant, campaign.id)
            .await?
            .context("the campaign is gone")?;
        if row.counters.pending + row.counters.queued == 0 {
            break;
        }
        anyhow::ensure!(
            meter.elapsed() < Duration::from_secs(900),
            "the run took too long"
        );
        // Often enough that the poll adds little to a run of a few seconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spent = meter.stop()?;
    let stats: serde_json::Value = simulator.stats_as().await?;
    stack.stop().await?;
    let in_flight_window = world.settings.sender.in_flight * w.numbers;
    world.drop().await?;
    Figures::of(w.recipients, spent, in_flight_window, stats)
}

impl Figures {
    /// The figures of `messages` sent for what `spent` measured.
    pub fn of(
        messages: usize,
        spent: Spent,
        in_flight_window: usize,
        simulator: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let per_1k = 1000.0 / messages as f64;
        Ok(Self {
            messages,
            seconds: spent.seconds,
            messages_per_second: messages as f64 / spent.seconds,
            herald_cpu_s_per_1k: spent.cpu * per_1k,
            all_cpu_s_per_1k: spent.all * per_1k,
            peak_rss_mb: peak_rss_kb()? / 1024.0,
            in_flight_window,
            simulator,
        })
    }
}
