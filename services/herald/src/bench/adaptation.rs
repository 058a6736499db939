//! B3: how the adaptive rate finds a cap it was not told, and follows it down.

use std::time::{Duration, Instant};

use herald_shared::settings::Settings;
use serde::Serialize;
use serde_json::json;

use super::start_sending;
use crate::fixtures::{self, Simulator, World};

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
pub async fn run(
    mut settings: Settings,
    simulator: &Simulator,
) -> anyhow::Result<AdaptationFigures> {
    const HIDDEN_CAP: u32 = 250;
    const LOWERED_CAP: u32 = 150;
    const START_RATE: u32 = 80;
    const LOWER_AT: Duration = Duration::from_secs(75);
    const RUN_FOR: Duration = Duration::from_secs(95);
    const SAMPLE: Duration = Duration::from_millis(250);
    settings.sender.pacing.window_s = 4;
    let world = World::isolate_database(settings, "bench").await?;
    simulator.reset_stats().await?;
    simulator
        .configure(
            &json!({"cap_per_number": HIDDEN_CAP, "pair_limit": false, "faults": [],
                           "latency": {"kind": "none"}}),
        )
        .await?;
    let (stack, tenant, api) = start_sending(&world).await?;
    let recipients = (HIDDEN_CAP as usize) * RUN_FOR.as_secs() as usize;
    let numbers = fixtures::register_numbers(&world, tenant, 1, START_RATE).await?;
    // The ceiling is the highest tier, well above the hidden cap.
    sqlx::query("UPDATE sender_numbers SET throughput_ceiling = 1000 WHERE id = $1")
        .bind(numbers[0])
        .execute(&world.pool)
        .await?;
    let campaign = api
        .create_campaign("bench-b3", "spring_sale_2026", "en_GB", &numbers)
        .await?;
    fixtures::upload_recipients(&api, campaign.id, recipients).await?;

    // (seconds since the start, accepted, answered 130429), every SAMPLE.
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let started = Instant::now();
    api.start(campaign.id).await?;
    let mut lowered = false;
    while started.elapsed() < RUN_FOR {
        if !lowered && started.elapsed() >= LOWER_AT {
            simulator
                .configure(&json!({"cap_per_number": LOWERED_CAP}))
                .await?;
            lowered = true;
        }
        let stats: serde_json::Value = simulator.stats_as().await?;
        let accepted = stats["accepted_total"].as_u64().unwrap_or(0);
        let refused = stats["rejected"]["130429"].as_u64().unwrap_or(0);
        samples.push((started.elapsed().as_secs_f64(), accepted, refused));
        tokio::time::sleep(SAMPLE).await;
    }
    api.cancel(campaign.id).await?;
    stack.stop().await?;
    let pacing_window_s = world.settings.sender.pacing.window_s;
    world.drop().await?;

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
        pacing_window_s,
        seconds_to_90_percent: converged,
        mean_rate_after,
        rejected_share_after,
        lowered_cap: LOWERED_CAP,
        seconds_back_under_lowered_cap: back_under,
    })
}
