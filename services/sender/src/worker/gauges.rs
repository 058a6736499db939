//! The queue gauges a number's owner exports. Each number is reported by the one sender that
//! owns it; a sender that stops owning it zeroes its series at once (and the exporter drops
//! them once idle), so a sum over every sender's `/metrics` counts each number once, also while
//! numbers move. Each process also exports its own totals, `herald_sender_lag` and
//! `herald_sender_oldest_entry_age_seconds`: one series per sender, what an autoscaler sums.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::domain::NumberId;
use herald_shared::stream::{NumberQueue, QueueGauges};
use tokio_util::sync::CancellationToken;

use super::gate::Feedback;

/// How often an owner reports its number's queue.
const EVERY: Duration = Duration::from_secs(5);

/// The gauges a number's owner reports, by number, in `Reported`'s order.
const NUMBER_GAUGES: [&str; 6] = [
    "herald_stream_length",
    "herald_stream_lag",
    "herald_stream_pending",
    "herald_stream_oldest_entry_age_seconds",
    "herald_retry_set_size",
    "herald_parked_size",
];

/// Per number this process owns: lag and oldest entry's age (the registry is per process, so
/// the totals are too; two senders in one process never own the same number).
static OWNED: LazyLock<Mutex<HashMap<NumberId, (f64, f64)>>> = LazyLock::new(Mutex::default);

/// Reports `number`'s queue every few seconds until `stop`, whatever its sends are doing (the
/// queue matters most when they are stuck).
pub(super) async fn report_until(
    stop: CancellationToken,
    number: NumberId,
    mut queue: NumberQueue,
    clock: Clock,
    pace: Feedback,
) {
    loop {
        match queue.gauges().await {
            Ok(g) => report(number, &g, clock.unix_ms(), pace.target() as f64),
            Err(e) => {
                tracing::warn!(%number, error = %e, "cannot read the number's queue for its gauges")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Reports `number`'s queue, `now_ms` being the time, and its paced `rate` (again, so that the
/// series stays fresh while the rate holds).
fn report(number: NumberId, g: &QueueGauges, now_ms: i64, rate: f64) {
    let oldest_age = g
        .oldest_ms
        .map_or(0.0, |ms| (now_ms - ms).max(0) as f64 / 1000.0);
    let lag = g.lag() as f64;
    let values = [
        g.length as f64,
        lag,
        g.pending as f64,
        oldest_age,
        g.retries as f64,
        g.parked as f64,
    ];
    let label = number.to_string();
    for (name, value) in NUMBER_GAUGES.into_iter().zip(values) {
        metrics::gauge!(name, "number" => label.clone()).set(value);
    }
    metrics::gauge!("herald_sender_rate", "number" => label).set(rate);
    update_totals(|owned| {
        owned.insert(number, (lag, oldest_age));
    });
}

/// This process no longer sends for `number`: its series go to 0 and leave the totals.
pub(super) fn clear(number: NumberId) {
    let label = number.to_string();
    for name in NUMBER_GAUGES {
        metrics::gauge!(name, "number" => label.clone()).set(0.0);
    }
    update_totals(|owned| {
        owned.remove(&number);
    });
}

fn update_totals(change: impl FnOnce(&mut HashMap<NumberId, (f64, f64)>)) {
    let mut owned = OWNED.lock().expect("gauge totals poisoned");
    change(&mut owned);
    let lag: f64 = owned.values().map(|(lag, _)| lag).sum();
    let oldest = owned.values().map(|(_, age)| *age).fold(0.0, f64::max);
    metrics::gauge!("herald_sender_lag").set(lag);
    metrics::gauge!("herald_sender_oldest_entry_age_seconds").set(oldest);
}
