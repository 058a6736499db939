//! The recorder: makes send outcomes durable, then acknowledges them.
//!
//! Invariant (design §4): an entry is XACKed only after its outcome is in Postgres. A batch of
//! outcomes (at most `flush_max`, or whatever arrived within `flush_interval`) becomes one
//! `apply_transitions` statement, which also moves the campaign counters; then, per number and
//! atomically, retries are added to the number's retry set and the batch's entries are
//! acknowledged. A crash between the two leaves the entries pending, for the number's next
//! owner to settle. Up to `flush_concurrency` batches are written at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_shared::db::messages::{self, MessageRef, Sent, Transition};
use herald_shared::db::{campaigns, numbers};
use herald_shared::domain::{CampaignId, MessageStatus, NumberId, NumberState};
use herald_shared::settings::SenderSettings;
use herald_shared::stream::{Entry, SENDER_GROUP};
use herald_shared::whatsapp::SendResult;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::outcome::{Action, RetryPolicy, decide};

/// One finished send.
#[derive(Debug)]
pub struct Outcome {
    pub number: NumberId,
    /// The number's row version the send was made with (see `numbers::pause_number`).
    pub number_version: chrono::DateTime<Utc>,
    /// When the send began (see `campaigns::pause_campaign`).
    pub started: chrono::DateTime<Utc>,
    pub stream: Arc<str>,
    pub retry_set: Arc<str>,
    pub stream_id: String,
    pub entry: Entry,
    pub result: SendResult,
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
}

/// Writes planned batches; cloned into each concurrent flush.
#[derive(Clone)]
struct Writer {
    pool: PgPool,
    redis: ConnectionManager,
}

impl Recorder {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        settings: &SenderSettings,
        policy: RetryPolicy,
    ) -> (Self, mpsc::Sender<Outcome>) {
        let flush_max = settings.flush_max.max(1);
        let (tx, rx) = mpsc::channel(flush_max * 4);
        (
            Self {
                writer: Writer { pool, redis },
                rx,
                flush_max,
                flush_interval: Duration::from_millis(settings.flush_interval_ms),
                concurrency: settings.flush_concurrency.max(1),
                policy,
            },
            tx,
        )
    }

    /// Records batches until every sender of outcomes is gone, then waits for the last ones.
    pub async fn run(mut self) {
        let mut flushing = JoinSet::new();
        let mut batch = Vec::with_capacity(self.flush_max);
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.flush_interval;
            while batch.len() < self.flush_max {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(outcome)) => batch.push(outcome),
                    Ok(None) | Err(_) => break,
                }
            }
            let plan = self.plan(batch.drain(..));
            while flushing.len() >= self.concurrency {
                flushing.join_next().await;
            }
            let writer = self.writer.clone();
            flushing.spawn(async move { writer.flush(plan).await });
        }
        while flushing.join_next().await.is_some() {}
    }

    /// Decides every outcome's action once.
    fn plan(&self, batch: impl Iterator<Item = Outcome>) -> Plan {
        let now = Utc::now();
        let mut sent = Vec::new();
        let mut tallies = Vec::new();
        let mut transitions = Vec::new();
        let mut per_number: BTreeMap<NumberId, NumberWrites> = BTreeMap::new();
        let mut pauses = Pauses::default();
        let mut counts = SendCounts::default();
        for outcome in batch {
            let writes = per_number
                .entry(outcome.number)
                .or_insert_with(|| NumberWrites::new(&outcome));
            let action = decide(
                &outcome.result,
                outcome.entry.attempt,
                &self.policy,
                rand::random(),
            );
            counts.add(&outcome.result, &action);
            let message = MessageRef::Id(outcome.entry.message);
            let transition = |status, error_code, error_title| Transition {
                message: message.clone(),
                status,
                wa_message_id: None,
                at: now,
                error_code,
                error_title,
                attempts: 1,
            };
            match action {
                Action::Sent { wamid } => sent.push(Sent {
                    message: outcome.entry.message,
                    wa_message_id: wamid,
                    at: now,
                }),
                Action::Fail { code, title } => {
                    tracing::warn!(message = %outcome.entry.message, code, %title, "message failed");
                    transitions.push(transition(MessageStatus::Failed, Some(code), Some(title)))
                }
                Action::Retry { delay, counts } => {
                    let next = Entry {
                        attempt: outcome.entry.attempt + u32::from(counts),
                        ..outcome.entry.clone()
                    };
                    let due = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    writes.retries.push((due.timestamp_millis(), next.encode()));
                    if counts {
                        // Only `attempts` moves: the message stays `queued`.
                        transitions.push(transition(MessageStatus::Queued, None, None));
                    }
                }
                Action::PauseNumber { state, code, title } => {
                    // Back to the number's queue, unspent; it goes when the number resumes.
                    writes
                        .retries
                        .push((now.timestamp_millis(), outcome.entry.encode()));
                    pauses
                        .numbers
                        .insert(outcome.number, (state, outcome.number_version, code, title));
                }
                Action::PauseCampaign { code, title } => {
                    // Back to the queue; the campaign's pause parks it until it resumes.
                    writes
                        .retries
                        .push((now.timestamp_millis(), outcome.entry.encode()));
                    let latest = pauses.campaigns.entry(outcome.entry.campaign).or_insert((
                        code,
                        title,
                        outcome.started,
                    ));
                    latest.2 = latest.2.max(outcome.started);
                }
            }
            writes.acks.push(outcome.stream_id);
            tallies.push(outcome.tally);
        }
        counts.publish();
        Plan {
            tallies,
            sent,
            transitions,
            per_number: per_number.into_values().collect(),
            pauses,
        }
    }
}

impl Writer {
    /// Writes one batch. An outcome is never dropped: each step is retried until it lands,
    /// and the Postgres step is not repeated once done.
    async fn flush(mut self, plan: Plan) {
        let mut backoff = Backoff::default();
        while let Err(e) = self.record(&plan).await {
            backoff.wait("recording send outcomes", &e).await;
        }
        let mut backoff = Backoff::default();
        while let Err(e) = self.acknowledge(&plan).await {
            backoff.wait("acknowledging recorded sends", &e).await;
        }
        for tally in &plan.tallies {
            tally.bump();
        }
    }

    /// Makes the outcomes durable in one transaction (so a retry repeats nothing): statuses
    /// and counters, the common `sent` by the lean statement and everything else by the
    /// general one, then any pauses they call for (before the entries are acknowledged, so a
    /// crash cannot lose a pause).
    async fn record(&self, plan: &Plan) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut transitions = plan.transitions.clone();
        let mut moves = messages::SentMoves::default();
        if !plan.sent.is_empty() {
            let (moved, unrecorded) = messages::record_sent_rows(&mut *tx, &plan.sent).await?;
            moves = moved;
            transitions.extend(unrecorded.into_iter().map(Transition::from));
        }
        if !transitions.is_empty() {
            messages::apply_transitions(&mut *tx, &messages::reduce(transitions)).await?;
        }
        // Campaigns last: every message row is locked before any campaign row, as in the
        // webhook processor's batches, so the two cannot deadlock over a campaign.
        messages::add_sent_counters(&mut *tx, &moves).await?;
        for (number, (state, version, code, title)) in &plan.pauses.numbers {
            if numbers::pause_number(&mut *tx, *number, *state, *version).await? {
                metrics::counter!("herald_sender_numbers_paused_total", "state" => format!("{state:?}"))
                    .increment(1);
                tracing::error!(number = %number, code, %title, state = ?state, "number paused: it needs an operator");
            }
        }
        for (campaign, (code, title, started)) in &plan.pauses.campaigns {
            let reason = format!("template error {code}: {title}");
            if campaigns::pause_campaign(&mut *tx, *campaign, &reason, *started).await? {
                tracing::error!(campaign = %campaign, code, %title, "campaign paused: its template cannot be sent");
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Per number, atomically: schedule the retries, acknowledge and delete the entries.
    async fn acknowledge(&mut self, plan: &Plan) -> anyhow::Result<()> {
        for writes in &plan.per_number {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (due, member) in &writes.retries {
                pipe.zadd(&*writes.retry_set, member, *due).ignore();
            }
            // Delete as well: an acknowledged entry is never read again, and the stream
            // would otherwise keep every message ever sent.
            pipe.xack(&*writes.stream, SENDER_GROUP, &writes.acks)
                .ignore()
                .xdel(&*writes.stream, &writes.acks)
                .ignore();
            let _: () = pipe.query_async(&mut self.redis).await?;
        }
        Ok(())
    }
}

struct Plan {
    tallies: Vec<Arc<Tally>>,
    sent: Vec<Sent>,
    transitions: Vec<Transition>,
    per_number: Vec<NumberWrites>,
    pauses: Pauses,
}

/// Numbers and campaigns an outcome of the batch says to pause, with the code and title.
#[derive(Default)]
struct Pauses {
    numbers: BTreeMap<NumberId, (NumberState, chrono::DateTime<Utc>, i32, String)>,
    /// With the latest start of the batch's sends that met the error.
    campaigns: BTreeMap<CampaignId, (i32, String, chrono::DateTime<Utc>)>,
}

struct NumberWrites {
    stream: Arc<str>,
    retry_set: Arc<str>,
    acks: Vec<String>,
    retries: Vec<(i64, Vec<u8>)>,
}

impl NumberWrites {
    fn new(outcome: &Outcome) -> Self {
        Self {
            stream: outcome.stream.clone(),
            retry_set: outcome.retry_set.clone(),
            acks: Vec::new(),
            retries: Vec::new(),
        }
    }
}

/// `herald_sends_total` by what the recorder does with the result and Meta's error code,
/// counted over a batch and added once per label pair: finding a labelled counter costs far
/// more than adding to it.
#[derive(Default)]
struct SendCounts(BTreeMap<(&'static str, SendCode), u64>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SendCode {
    None,
    Graph(i64),
    Transport,
}

impl SendCounts {
    fn add(&mut self, result: &SendResult, action: &Action) {
        let outcome = match action {
            Action::Sent { .. } => "sent",
            Action::Retry { counts: false, .. } => "throttled",
            Action::Retry { counts: true, .. } => "retry",
            Action::Fail { .. } => "failed",
            Action::PauseNumber { .. } => "number_paused",
            Action::PauseCampaign { .. } => "campaign_paused",
        };
        let code = match result {
            SendResult::Accepted { .. } => SendCode::None,
            SendResult::Rejected { error, .. } => SendCode::Graph(error.code),
            SendResult::Transport(_) => SendCode::Transport,
        };
        *self.0.entry((outcome, code)).or_default() += 1;
    }

    fn publish(self) {
        for ((outcome, code), n) in self.0 {
            let code = match code {
                SendCode::None => "none".to_owned(),
                SendCode::Graph(code) => code.to_string(),
                SendCode::Transport => "transport".to_owned(),
            };
            metrics::counter!("herald_sends_total", "outcome" => outcome, "code" => code)
                .increment(n);
        }
    }
}

/// Doubling waits between retries of a step that must eventually succeed.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(50))
    }
}

impl Backoff {
    async fn wait(&mut self, what: &str, error: &anyhow::Error) {
        tracing::error!(error = %format!("{error:#}"), "{what} failed; retrying");
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_step_is_retried_after_doubling_waits_up_to_five_seconds() {
        let mut backoff = Backoff::default();
        let error = anyhow::anyhow!("Postgres is down");
        let mut waits = Vec::new();
        for _ in 0..10 {
            let before = tokio::time::Instant::now();
            backoff.wait("recording", &error).await;
            waits.push(before.elapsed().as_millis());
        }
        assert_eq!(
            waits,
            vec![50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
    }

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
