//! What the simulator reports at `GET /sim/stats`, and forgetting it.

use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Sim;

/// `GET /sim/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsReport {
    /// Accepted messages per `phone_number_id`.
    pub accepted: BTreeMap<String, u64>,
    pub accepted_total: u64,
    /// Graph errors answered, per code.
    pub rejected: BTreeMap<i64, u64>,
    pub http_errors: u64,
    pub timeouts: u64,
    pub resets: u64,
    pub async_failures: u64,
    /// (number, recipient) pairs accepted more than once, in all and per number.
    pub duplicate_recipients: u64,
    /// `biz_opaque_callback_data` values accepted more than once, in all and per number.
    pub duplicate_callbacks: u64,
    pub duplicates: BTreeMap<String, Duplicates>,
    /// The most messages accepted in any one-second window, per number.
    pub max_per_second: BTreeMap<String, u64>,
    /// Per number, the highest sender fencing token seen (`x-herald-fence`); and sends, over
    /// all numbers, whose token was lower than one already seen for their number: each is a
    /// send by an owner that had lost the number.
    #[serde(default)]
    pub fences: BTreeMap<String, i64>,
    #[serde(default)]
    pub fence_violations: u64,
    /// Webhook POSTs answered 2xx, given up on, and retried.
    pub webhooks_delivered: u64,
    pub webhooks_failed: u64,
    pub webhooks_retried: u64,
    /// Statuses and inbound messages POSTed (each POST may carry several).
    pub statuses_posted: u64,
    /// The most sends in flight at once: the window a sender actually used.
    #[serde(default)]
    pub peak_in_flight: u64,
    /// Messages (by callback data) by the last status their webhooks carry, once all are
    /// delivered: what the receiver should end with, whatever the order and repeats.
    #[serde(default)]
    pub intended_final: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Duplicates {
    pub recipients: u64,
    pub callbacks: u64,
}

impl Sim {
    pub fn report(&self) -> StatsReport {
        let mut r = StatsReport {
            rejected: self.rejected.lock().expect("stats lock").clone(),
            http_errors: self.http_errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            resets: self.resets.load(Relaxed),
            async_failures: self.async_failures.load(Relaxed),
            webhooks_delivered: self.webhooks_delivered.load(Relaxed),
            webhooks_failed: self.webhooks_failed.load(Relaxed),
            webhooks_retried: self.webhooks_retried.load(Relaxed),
            statuses_posted: self.statuses_posted.load(Relaxed),
            peak_in_flight: self.peak_in_flight.load(Relaxed),
            ..StatsReport::default()
        };
        for status in self.intended.lock().expect("intended lock").values() {
            let name = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *r.intended_final.entry(name).or_default() += 1;
        }
        for (id, number) in self.numbers.read().expect("numbers lock").iter() {
            let n = number.lock().expect("number lock");
            if n.accepted == 0 {
                continue;
            }
            r.accepted.insert(id.clone(), n.accepted);
            r.accepted_total += n.accepted;
            r.max_per_second.insert(id.clone(), n.max_window as u64);
            r.duplicate_recipients += n.duplicate_recipients;
            r.duplicate_callbacks += n.duplicate_callbacks;
            r.fence_violations += n.fence_violations;
            r.fences.insert(id.clone(), n.fence);
            if n.duplicate_recipients + n.duplicate_callbacks > 0 {
                r.duplicates.insert(
                    id.clone(),
                    Duplicates {
                        recipients: n.duplicate_recipients,
                        callbacks: n.duplicate_callbacks,
                    },
                );
            }
        }
        r
    }

    /// Forgets every counter (not the configuration).
    pub fn reset_stats(&self) {
        self.numbers.write().expect("numbers lock").clear();
        self.portfolios.lock().expect("portfolio lock").clear();
        self.rejected.lock().expect("stats lock").clear();
        self.intended.lock().expect("intended lock").clear();
        self.sent.lock().expect("sent lock").clear();
        for counter in [
            &self.http_errors,
            &self.timeouts,
            &self.resets,
            &self.async_failures,
            &self.webhooks_delivered,
            &self.webhooks_failed,
            &self.webhooks_retried,
            &self.statuses_posted,
            &self.peak_in_flight,
        ] {
            counter.store(0, Relaxed);
        }
    }
}
