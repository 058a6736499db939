//! The recorder: makes send outcomes durable, then acknowledges them.
//!
//! Invariant (design §4): an entry is XACKed only after its outcome is in Postgres. A batch of
//! outcomes (at most `flush_max`, or whatever arrived within `flush_interval`) is planned once
//! (`plan`: every outcome's action) and written (`write`): one transaction of the transition
//! engine, which also moves the campaign counters and the numbers' rates; then, per number and
//! atomically, retries are added to the number's retry set and the batch's entries are
//! acknowledged. A crash between the two leaves the entries pending, for the number's next
//! owner to settle. Up to `flush_concurrency` batches are written at once.

mod plan;
mod write;

use std::sync::Arc;
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::domain::NumberId;
use herald_shared::settings::SenderSettings;
use herald_shared::stream::{Connection, Entry, Keys, NumberQueue};
use herald_shared::whatsapp::SendResult;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::plan::Plan;
use self::write::Writer;
use crate::outcome::RetryPolicy;
use crate::scope::ScopeHold;

/// One finished send.
#[derive(Debug)]
pub struct Outcome {
    pub number: NumberId,
    /// The number's row version the send was made with (see `numbers::pause_number`).
    pub number_version: chrono::DateTime<chrono::Utc>,
    /// When the send began (see `campaigns::pause_campaign`).
    pub started: chrono::DateTime<chrono::Utc>,
    /// The number's queue, where the entry is acknowledged and a retry scheduled.
    pub queue: NumberQueue,
    pub stream_id: String,
    pub entry: Entry,
    /// The Cloud API's answer; `None` when the entry was not sent because its recipient is
    /// suppressed (the message becomes `suppressed`).
    pub result: Option<SendResult>,
    /// The number's new rate, when the send moved it.
    pub rate: Option<u32>,
    /// An app or WABA hold the send met, to share with every sender.
    pub hold: Option<ScopeHold>,
    /// The worker's count of outcomes recorded, bumped once this one is acknowledged.
    pub tally: Arc<Tally>,
}

/// How many of a worker's outcomes have been recorded and acknowledged, so that a worker
/// stopping on purpose can wait for them before its lease goes: otherwise the next owner finds
/// them pending and unrecorded, and must treat them as ambiguous.
#[derive(Debug, Default)]
pub struct Tally {
    recorded: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

impl Tally {
    fn bump(&self) {
        self.recorded
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Waits until `handed` outcomes are recorded.
    pub async fn wait_for(&self, handed: u64) {
        loop {
            let changed = self.changed.notified();
            if self.recorded.load(std::sync::atomic::Ordering::Acquire) >= handed {
                return;
            }
            changed.await;
        }
    }
}

pub struct Recorder {
    writer: Writer,
    rx: mpsc::Receiver<Outcome>,
    flush_max: usize,
    flush_interval: Duration,
    /// Batches written at once. Their messages never overlap (a message has one send under
    /// way at a time), and every statement locks rows in id order, so they cannot deadlock.
    concurrency: usize,
    policy: RetryPolicy,
    clock: Clock,
}

impl Recorder {
    pub fn new(
        pool: PgPool,
        redis: Connection,
        keys: Keys,
        clock: Clock,
        settings: &SenderSettings,
        policy: RetryPolicy,
    ) -> (Self, mpsc::Sender<Outcome>) {
        let flush_max = settings.flush_max.max(1);
        let (tx, rx) = mpsc::channel(flush_max * 4);
        (
            Self {
                writer: Writer { pool, redis, keys },
                rx,
                flush_max,
                flush_interval: Duration::from_millis(settings.flush_interval_ms),
                concurrency: settings.flush_concurrency.max(1),
                policy,
                clock,
            },
            tx,
        )
    }

    /// Records batches until every sender of outcomes is gone, then waits for the last ones.
    pub async fn run(mut self) {
        let mut flushing = JoinSet::new();
        let mut batch = Vec::with_capacity(self.flush_max);
        // Taken as many at a time as have arrived, and one timer per batch: a wake and a timer
        // per outcome cost more than the outcome's share of the batch's statement.
        while self.rx.recv_many(&mut batch, self.flush_max).await > 0 {
            let deadline = tokio::time::sleep_until(self.clock.now() + self.flush_interval);
            tokio::pin!(deadline);
            while batch.len() < self.flush_max {
                let room = self.flush_max - batch.len();
                tokio::select! {
                    biased;
                    taken = self.rx.recv_many(&mut batch, room) => if taken == 0 { break },
                    _ = &mut deadline => break,
                }
            }
            let plan = Plan::of(batch.drain(..), &self.policy, self.clock.utc());
            while flushing.len() >= self.concurrency {
                flushing.join_next().await;
            }
            let writer = self.writer.clone();
            flushing.spawn(async move { writer.flush(plan).await });
        }
        while flushing.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stopping_worker_waits_for_exactly_its_recorded_outcomes() {
        let tally = Arc::new(Tally::default());
        let waiting = tokio::spawn({
            let tally = tally.clone();
            async move { tally.wait_for(2).await }
        });
        tally.bump();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "one of two recorded");
        tally.bump();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("both recorded")
            .unwrap();
    }
}
