//! `herald bench`: the benchmark workloads (see BENCHMARKS.md), run against a simulator in
//! another process so that Herald's own CPU can be told apart. Prints one JSON line of
//! figures; `scripts/bench.sh` runs it several times and writes the medians.

mod adaptation;
mod measure;
mod prototype;
mod statements;
mod throughput;
mod webhooks;

use herald_shared::domain::TenantId;
use herald_shared::settings::Settings;

use crate::client::ApiClient;
use crate::fixtures::{Simulator, World};
use crate::stack::{Roles, Stack};

pub use self::adaptation::AdaptationFigures;
pub use self::statements::StatementFigures;
pub use self::throughput::{Figures, Load};
pub use self::webhooks::WebhookFigures;

/// The workloads of `../shared/benchmarks.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The ceiling: four uncapped numbers, no latency.
    B1,
    /// B1's load through a lean prototype of Herald's hot path (streams → HTTP → one batched
    /// UPDATE → XACK), the yardstick B1 is read against.
    #[value(name = "b1-prototype")]
    B1Prototype,
    /// B1 with the simulator answering after 50 ms.
    #[value(name = "b1-lat")]
    B1Lat,
    /// Ten numbers at a cap of 80 msg/s.
    B2,
    /// Forty numbers at Meta's highest rate, 1,000 msg/s each: 200,000 messages, 40,000
    /// msg/s allowed in all (a full simulator enforces the cap; a lean one counts each
    /// number's busiest second).
    #[value(name = "b2-40")]
    B240,
    /// Adaptation to a cap Herald is not told.
    B3,
    /// Webhook intake and processing (needs no simulator).
    B5,
    /// What each hot Postgres statement costs a message, alone (needs no simulator).
    Statements,
}

/// Runs `workload` (with `recipients` instead of its own count, where it has one, and for
/// b2 and b2-40 `rate` instead of their numbers' rate) against the simulator at
/// `simulator_url`; its figures as JSON.
pub async fn run(
    mut settings: Settings,
    workload: Workload,
    simulator_url: &str,
    recipients: Option<usize>,
    rate: Option<u32>,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        rate.is_none() || matches!(workload, Workload::B2 | Workload::B240),
        "--rate is for b2 and b2-40, whose numbers are paced"
    );
    settings.whatsapp.base_url = simulator_url.to_owned();
    let simulator = Simulator::new(simulator_url);
    let load = match workload {
        Workload::B1 | Workload::B1Prototype => Load::ceiling(0),
        Workload::B1Lat => Load::ceiling(50),
        Workload::B2 => Load::capped(),
        Workload::B240 => Load::forty_at_the_ceiling(),
        Workload::B3 => {
            let figures = adaptation::run(settings, &simulator).await?;
            return Ok(serde_json::to_value(figures)?);
        }
        Workload::B5 => {
            let mut figures = Vec::new();
            for statuses in [1, 100] {
                figures.push(webhooks::run(settings.clone(), statuses, 5).await?);
            }
            return Ok(serde_json::to_value(figures)?);
        }
        Workload::Statements => {
            let figures = statements::run(settings, recipients.unwrap_or(100_000)).await?;
            return Ok(serde_json::to_value(figures)?);
        }
    };
    let load = match rate {
        Some(rate) => Load::enforced(load.numbers, load.recipients, rate),
        None => load,
    };
    let load = Load {
        recipients: recipients.unwrap_or(load.recipients),
        ..load
    };
    let figures = if workload == Workload::B1Prototype {
        prototype::run(settings, &simulator, &load).await?
    } else {
        throughput::run(settings, &simulator, &load).await?
    };
    Ok(serde_json::to_value(figures)?)
}

/// Ingest and the sender in this process (receipts are not part of these workloads), a
/// tenant, and an API client for it.
async fn start_sending(world: &World) -> anyhow::Result<(Stack, TenantId, ApiClient)> {
    let roles = Roles {
        ingest: true,
        sender: true,
        webhook: false,
        simulator: false,
    };
    let stack = Stack::start(world.settings.clone(), roles).await?;
    let (tenant, key) = crate::tenant::create(&world.pool, "bench").await?;
    let api = ApiClient::new(stack.ingest_url.clone(), key);
    Ok((stack, tenant, api))
}
