//! What the simulator saw: accepted sends per number, rejections per error code, recipients
//! sent to more than once, webhooks delivered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Default)]
pub struct Stats {
    inner: Mutex<Counts>,
    pub webhooks_delivered: AtomicU64,
    pub webhooks_failed: AtomicU64,
}

#[derive(Default)]
struct Counts {
    accepted: HashMap<String, u64>,
    rejected: HashMap<i64, u64>,
    /// Sends per (phone_number_id, recipient).
    recipients: HashMap<(String, String), u32>,
    duplicate_recipients: u64,
}

/// `GET /sim/stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsReport {
    /// Accepted messages per `phone_number_id`.
    pub accepted: BTreeMap<String, u64>,
    pub accepted_total: u64,
    /// Refused sends per error code.
    pub rejected: BTreeMap<i64, u64>,
    /// (number, recipient) pairs that were accepted more than once.
    pub duplicate_recipients: u64,
    pub webhooks_delivered: u64,
    pub webhooks_failed: u64,
}

impl Stats {
    pub fn accepted(&self, phone_number_id: &str, to: &str) {
        let mut c = self.inner.lock().expect("stats lock");
        *c.accepted.entry(phone_number_id.to_owned()).or_default() += 1;
        let seen = c
            .recipients
            .entry((phone_number_id.to_owned(), to.to_owned()))
            .or_default();
        *seen += 1;
        if *seen == 2 {
            c.duplicate_recipients += 1;
        }
    }

    pub fn rejected(&self, code: i64) {
        *self
            .inner
            .lock()
            .expect("stats lock")
            .rejected
            .entry(code)
            .or_default() += 1;
    }

    pub fn report(&self) -> StatsReport {
        let c = self.inner.lock().expect("stats lock");
        StatsReport {
            accepted: c.accepted.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            accepted_total: c.accepted.values().sum(),
            rejected: c.rejected.iter().map(|(k, v)| (*k, *v)).collect(),
            duplicate_recipients: c.duplicate_recipients,
            webhooks_delivered: self.webhooks_delivered.load(Ordering::Relaxed),
            webhooks_failed: self.webhooks_failed.load(Ordering::Relaxed),
        }
    }
}
