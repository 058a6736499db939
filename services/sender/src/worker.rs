//! One number's send loop: take over what the last owner left, then read the stream in order,
//! pace, send, and hand outcomes to the recorder.
//!
//! Invariants: sends start only while this sender holds the number's lease; at most
//! `in_flight` are under way (a permit is held from before the limiter wait until the outcome
//! is handed over); they start no faster than the number's rate (GCRA, no burst), and no span
//! of one second and the pacing guard holds more than the rate of them. An entry
//! stays in the group's pending list until the recorder has made its outcome durable.
//!
//! Takeover: the new owner claims every pending entry of the number. One whose message is no
//! longer `queued` was recorded: it is acknowledged. One still `queued` is ambiguous — the old
//! owner may have sent it just before dying — so it waits `reconciliation_window` for a `sent`
//! receipt (matched by its `biz_opaque_callback_data`) and is sent again only if none came;
//! each such resend is counted in `herald_sender_ambiguous_resends_total`.
//!
//! Handing over: a worker stopped on purpose (rebalancing, shutdown) waits for its sends in
//! flight to be recorded, then lists the entries it read but never started in the number's
//! handback set; its successor sends those at once, since no receipt can come for them.
//!
//! Held campaigns: an entry of a paused campaign is moved, atomically with its
//! acknowledgement, to the number's parked set and back into the stream once the campaign
//! runs again; an entry of a cancelled campaign is acknowledged unsent (cancel has already
//! marked its message).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_shared::db::{messages, numbers};
use herald_shared::domain::{CampaignState, MessageId, MessageStatus, NumberId};
use herald_shared::settings::{PacingSettings, RedisSettings};
use herald_shared::stream::{
    ENTRY_FIELD, Entry, EntryError, Keys, MOVE_DUE_RETRIES, SENDER_GROUP, UNPARK, conn,
};
use herald_shared::whatsapp::{CloudApiClient, ErrorClass, SendResult, classify};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::daily_cap::DailyCap;
use crate::held::HeldCampaigns;
use crate::lease::Lease;
use crate::pacing::{Pacer, Signal, StartLog};
use crate::recorder::{Outcome, Tally};
use crate::scope::{ScopeThrottles, scope_of};

/// Due retries moved back to the stream per script call.
const RETRY_BATCH: usize = 500;

/// How often a worker reports its number's stream gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// How long a worker stopping on purpose waits for its outcomes to be recorded.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

pub struct WorkerConfig {
    pub number: NumberId,
    /// The number row's `updated_at` when it was read.
    pub version: chrono::DateTime<chrono::Utc>,
    pub phone_number_id: String,
    pub waba_id: String,
    pub token: SecretString,
    pub rate: u32,
    /// The most the number may send (its throughput tier).
    pub ceiling: u32,
    pub pacing: PacingSettings,
    pub in_flight: usize,
    pub read_count: usize,
    pub block_ms: u64,
    pub retry_poll: Duration,
    pub reconciliation_window: Duration,
    pub consumer: String,
    /// How long an app or WABA hold lasts (see `scope`).
    pub scope_throttle: Duration,
    /// The number's portfolio's daily recipient limit, if it has one.
    pub daily_cap: Option<DailyCap>,
}

/// A claimed entry whose send may already have happened, waiting for its receipt.
struct Ambiguous {
    due: tokio::time::Instant,
    raw: StreamId,
    entry: Entry,
}

pub struct NumberWorker {
    config: Arc<WorkerConfig>,
    stream: Arc<str>,
    retry_set: Arc<str>,
    reads: ConnectionManager,
    commands: ConnectionManager,
    client: CloudApiClient,
    limiter: DefaultDirectRateLimiter,
    /// The rate `limiter` runs at, and the one the pacer wants.
    rate: u32,
    pacer: Arc<Mutex<Pacer>>,
    target_rate: Arc<AtomicU32>,
    starts: StartLog,
    permits: Arc<Semaphore>,
    outcomes: mpsc::Sender<Outcome>,
    lease: Arc<Lease>,
    held: Arc<HeldCampaigns>,
    scopes: Arc<ScopeThrottles>,
    parked: String,
    pool: PgPool,
    ambiguous: Vec<Ambiguous>,
    /// Entries read (or handed back by the last owner) and not yet started, in stream order.
    unstarted: std::collections::VecDeque<StreamId>,
    handback: String,
    /// Outcomes handed to the recorder, and how many it has recorded.
    handed: u64,
    tally: Arc<Tally>,
}

#[derive(Debug, thiserror::Error)]
#[error("the lease on the number is no longer held")]
struct LeaseLost;

impl NumberWorker {
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        config: WorkerConfig,
        lease: Arc<Lease>,
        held: Arc<HeldCampaigns>,
        scopes: Arc<ScopeThrottles>,
        redis_settings: &RedisSettings,
        mut commands: ConnectionManager,
        pool: PgPool,
        keys: &Keys,
        client: CloudApiClient,
        outcomes: mpsc::Sender<Outcome>,
    ) -> anyhow::Result<Self> {
        let config_number = config.number;
        let stream = keys.stream(config.number);
        conn::ensure_group(&mut commands, &stream, SENDER_GROUP).await?;
        // A blocking read holds its connection: one per number.
        let reads = conn::connect(redis_settings, None).await?;
        scopes.watch(&config.waba_id);
        scopes.refresh(&mut commands).await?;
        let pacer = Pacer::new(&config.pacing, config.rate, config.ceiling, Instant::now());
        let rate = pacer.rate();
        Ok(Self {
            limiter: limiter(rate),
            rate,
            target_rate: Arc::new(AtomicU32::new(rate)),
            pacer: Arc::new(Mutex::new(pacer)),
            starts: StartLog::new(Duration::from_millis(config.pacing.guard_ms)),
            permits: Arc::new(Semaphore::new(config.in_flight.max(1))),
            stream: stream.into(),
            retry_set: keys.retry(config.number).into(),
            parked: keys.parked(config.number),
            config: Arc::new(config),
            reads,
            commands,
            client,
            outcomes,
            lease,
            held,
            scopes,
            pool,
            ambiguous: Vec::new(),
            unstarted: Default::default(),
            handback: keys.handback(config_number),
            handed: 0,
            tally: Arc::default(),
        })
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let number = self.config.number;
        let mut last_retry_poll = tokio::time::Instant::now() - self.config.retry_poll;
        let mut last_gauges = tokio::time::Instant::now() - GAUGES_EVERY;
        let mut backoff = Duration::from_millis(100);
        let mut taken_over = false;
        let mut lease_lost = false;
        while !stop.is_cancelled() {
            let step = async {
                if !taken_over {
                    self.take_over().await?;
                    taken_over = true;
                }
                if last_retry_poll.elapsed() >= self.config.retry_poll {
                    last_retry_poll = tokio::time::Instant::now();
                    self.promote_due_retries().await?;
                    self.unpark().await?;
                }
                if last_gauges.elapsed() >= GAUGES_EVERY {
                    last_gauges = tokio::time::Instant::now();
                    self.report_gauges().await?;
                }
                self.resolve_ambiguous().await?;
                self.process_next().await
            };
            let result = tokio::select! {
                r = step => r,
                _ = stop.cancelled() => break,
            };
            match result {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) if e.is::<LeaseLost>() => {
                    lease_lost = true;
                    break;
                }
                Err(e) if conn::group_is_gone(&e) => {
                    tracing::error!(number = %number, "the number's consumer group is gone (Redis lost its data); making it again");
                    if let Err(e) =
                        conn::ensure_group(&mut self.commands, &self.stream, SENDER_GROUP).await
                    {
                        tracing::error!(number = %number, error = %e, "cannot make the number's group");
                        tokio::time::sleep(backoff).await;
                    }
                }
                Err(e) => {
                    tracing::error!(number = %number, error = %format!("{e:#}"), "number loop failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Wait for the sends in flight to hand over their outcomes, and for those to be
        // recorded, so that the next owner finds them settled.
        let _ = self
            .permits
            .acquire_many(self.config.in_flight.max(1) as u32)
            .await;
        let recorded = tokio::time::timeout(HANDOVER_WAIT, self.tally.wait_for(self.handed));
        if recorded.await.is_err() {
            tracing::warn!(number = %number, "outcomes still unrecorded at stop; the next owner settles them");
        }
        if !lease_lost && self.lease.is_valid() && !self.unstarted.is_empty() {
            let ids: Vec<&str> = self.unstarted.iter().map(|e| e.id.as_str()).collect();
            let handed_back: redis::RedisResult<()> =
                self.commands.sadd(&self.handback, &ids).await;
            match handed_back {
                Ok(()) => {
                    tracing::info!(number = %number, entries = ids.len(), "handed back unstarted entries")
                }
                Err(e) => {
                    tracing::warn!(number = %number, error = %e, "cannot hand back unstarted entries; the next owner waits for them")
                }
            }
        }
        tracing::info!(number = %number, "number stopped");
    }

    /// Claims every entry pending on the number (the last owner's in-flight sends, or sends
    /// it read but never started): recorded ones are acknowledged, the rest wait for their
    /// receipts.
    async fn take_over(&mut self) -> anyhow::Result<()> {
        // Derived afresh from the pending list: a failed earlier try leaves nothing behind.
        self.ambiguous.clear();
        let mut start = "0-0".to_owned();
        let mut claimed = Vec::new();
        loop {
            let reply: StreamAutoClaimReply = self
                .commands
                .xautoclaim_options(
                    &*self.stream,
                    SENDER_GROUP,
                    &self.config.consumer,
                    0,
                    &start,
                    StreamAutoClaimOptions::default().count(500),
                )
                .await?;
            claimed.extend(reply.claimed);
            if reply.next_stream_id == "0-0" {
                break;
            }
            start = reply.next_stream_id;
        }
        if claimed.is_empty() {
            return Ok(());
        }
        // What the last owner handed back was never sent: it goes first, without waiting.
        let handed_back: std::collections::HashSet<String> =
            self.commands.smembers(&self.handback).await?;
        let _: () = self.commands.del(&self.handback).await?;
        let (unstarted, claimed): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .partition(|raw| handed_back.contains(&raw.id));
        self.unstarted = unstarted.into();
        let due = tokio::time::Instant::now() + self.config.reconciliation_window;
        let mut waiting = Vec::with_capacity(claimed.len());
        for raw in claimed {
            match conn::entry_field(&raw, ENTRY_FIELD).map(Entry::decode) {
                Some(Ok(entry)) => waiting.push(Ambiguous { due, raw, entry }),
                _ => self.ack(&[raw.id.as_str()]).await?,
            }
        }
        let still = self.settle(waiting).await?;
        tracing::info!(
            number = %self.config.number,
            ambiguous = still.len(),
            handed_back = self.unstarted.len(),
            "took over the number"
        );
        self.ambiguous.extend(still);
        Ok(())
    }

    /// Acknowledges the entries whose messages were recorded; returns the rest. On an error
    /// the entries go back to the waiting list, to be settled on a later round.
    async fn settle(&mut self, waiting: Vec<Ambiguous>) -> anyhow::Result<Vec<Ambiguous>> {
        let ids: Vec<MessageId> = waiting.iter().map(|a| a.entry.message).collect();
        let statuses: HashMap<MessageId, MessageStatus> =
            match messages::statuses(&self.pool, &ids).await {
                Ok(rows) => rows.into_iter().collect(),
                Err(e) => {
                    self.ambiguous.extend(waiting);
                    return Err(e.into());
                }
            };
        let (unsent, done): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|a| {
            matches!(
                statuses.get(&a.entry.message),
                Some(MessageStatus::Pending | MessageStatus::Queued)
            )
        });
        let done_ids: Vec<&str> = done.iter().map(|a| a.raw.id.as_str()).collect();
        if !done_ids.is_empty()
            && let Err(e) = self.ack(&done_ids).await
        {
            self.ambiguous.extend(unsent);
            self.ambiguous.extend(done);
            return Err(e);
        }
        Ok(unsent)
    }

    /// Sends again the ambiguous entries whose window passed without a receipt.
    async fn resolve_ambiguous(&mut self) -> anyhow::Result<()> {
        let now = tokio::time::Instant::now();
        if !self.ambiguous.iter().any(|a| a.due <= now) {
            return Ok(());
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ambiguous)
            .into_iter()
            .partition(|a| a.due <= now);
        self.ambiguous = later;
        let unsent = self.settle(due).await?;
        if !unsent.is_empty() {
            metrics::counter!("herald_sender_ambiguous_resends_total")
                .increment(unsent.len() as u64);
            tracing::warn!(number = %self.config.number, resends = unsent.len(), "no receipt within the window: sending again");
        }
        for a in unsent {
            self.dispatch_entry(a.raw.id, a.entry).await?;
        }
        Ok(())
    }

    /// Acknowledges and deletes entries that are done with.
    async fn ack(&mut self, ids: &[&str]) -> anyhow::Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .xack(&*self.stream, SENDER_GROUP, ids)
            .ignore()
            .xdel(&*self.stream, ids)
            .ignore()
            .query_async(&mut self.commands)
            .await?;
        Ok(())
    }

    /// Moves the parked entries of campaigns no longer paused back into the stream.
    async fn unpark(&mut self) -> anyhow::Result<()> {
        let parked: usize = self.commands.zcard(&self.parked).await?;
        if parked == 0 {
            return Ok(());
        }
        let mut script = UNPARK.key(&self.parked);
        script.key(&*self.stream);
        for campaign in self.held.paused() {
            script.arg(campaign.to_string());
        }
        let moved: usize = script.invoke_async(&mut self.commands).await?;
        if moved > 0 {
            tracing::info!(number = %self.config.number, moved, "resumed parked messages");
        }
        Ok(())
    }

    /// The number's queue, for operators (and autoscalers): entries waiting to be read (lag),
    /// read and not yet recorded (pending), the age of the oldest, and the retry and parked
    /// sets' sizes.
    async fn report_gauges(&mut self) -> anyhow::Result<()> {
        let (length, groups, oldest, retries, parked): (
            u64,
            redis::streams::StreamInfoGroupsReply,
            redis::streams::StreamRangeReply,
            u64,
            u64,
        ) = redis::pipe()
            .xlen(&*self.stream)
            .xinfo_groups(&*self.stream)
            .xrange_count(&*self.stream, "-", "+", 1)
            .zcard(&*self.retry_set)
            .zcard(&self.parked)
            .query_async(&mut self.commands)
            .await?;
        let pending = groups
            .groups
            .iter()
            .find(|g| g.name == SENDER_GROUP)
            .map_or(0, |g| g.pending as u64);
        // Acknowledged entries are deleted, so the stream holds exactly what is pending or
        // not yet read (Redis's own `lag` is unknown once entries are deleted).
        let lag = length.saturating_sub(pending);
        let oldest_age = oldest
            .ids
            .first()
            .and_then(|e| e.id.split_once('-')?.0.parse::<i64>().ok())
            .map_or(0.0, |ms| {
                (chrono::Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0
            });
        let number = self.config.number.to_string();
        metrics::gauge!("herald_stream_length", "number" => number.clone()).set(length as f64);
        metrics::gauge!("herald_stream_lag", "number" => number.clone()).set(lag as f64);
        metrics::gauge!("herald_stream_pending", "number" => number.clone()).set(pending as f64);
        metrics::gauge!("herald_stream_oldest_entry_age_seconds", "number" => number.clone())
            .set(oldest_age);
        metrics::gauge!("herald_retry_set_size", "number" => number.clone()).set(retries as f64);
        metrics::gauge!("herald_parked_size", "number" => number).set(parked as f64);
        Ok(())
    }

    /// Moves retries that are due back into the stream.
    async fn promote_due_retries(&mut self) -> anyhow::Result<usize> {
        let now = chrono::Utc::now().timestamp_millis();
        let moved: usize = MOVE_DUE_RETRIES
            .key(&*self.retry_set)
            .key(&*self.stream)
            .arg(now)
            .arg(RETRY_BATCH)
            .invoke_async(&mut self.commands)
            .await?;
        Ok(moved)
    }

    /// Starts the entries not yet started (those handed back first), or else reads the next
    /// ones (waiting up to `block_ms`) and starts them, in order. Returns how many it had.
    pub async fn process_next(&mut self) -> anyhow::Result<usize> {
        if self.unstarted.is_empty() {
            // Read no further ahead than a quarter second of sending: what a sender read and
            // had not started when it died looks like a send whose outcome was lost, and its
            // successor must wait the reconciliation window before sending it.
            let ahead = (self.rate as usize / 4).clamp(1, self.config.read_count.max(1));
            let options = StreamReadOptions::default()
                .group(SENDER_GROUP, &self.config.consumer)
                .count(ahead)
                .block(self.config.block_ms as usize);
            let reply: Option<StreamReadReply> = self
                .reads
                .xread_options(&[&*self.stream], &[">"], &options)
                .await?;
            self.unstarted
                .extend(reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids));
        }
        let count = self.unstarted.len();
        // An entry leaves `unstarted` only once its send is under way (or it is set aside):
        // a stop in between leaves it there, to be handed back.
        while let Some(raw) = self.unstarted.front() {
            let decoded = conn::entry_field(raw, ENTRY_FIELD).map(Entry::decode);
            self.dispatch(raw.id.clone(), decoded).await?;
            self.unstarted.pop_front();
        }
        Ok(count)
    }

    async fn dispatch(
        &mut self,
        stream_id: String,
        decoded: Option<Result<Entry, EntryError>>,
    ) -> anyhow::Result<()> {
        let entry = match decoded {
            Some(Ok(entry)) => entry,
            other => {
                // Nothing can ever send it: acknowledge it so it does not block the number.
                tracing::error!(number = %self.config.number, entry = %stream_id, problem = ?other.map(|r| r.err()), "malformed stream entry dropped");
                return self.ack(&[&stream_id]).await;
            }
        };
        self.dispatch_entry(stream_id, entry).await
    }

    /// Moves an entry from the stream into the sorted set `set` with `score`, atomically.
    async fn set_aside(
        &mut self,
        set: &str,
        entry: &Entry,
        score: i64,
        stream_id: &str,
    ) -> anyhow::Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .zadd(set, entry.encode(), score)
            .ignore()
            .xack(&*self.stream, SENDER_GROUP, &[stream_id])
            .ignore()
            .xdel(&*self.stream, &[stream_id])
            .ignore()
            .query_async(&mut self.commands)
            .await?;
        Ok(())
    }

    /// Starts one send, paced and within the window, if the lease still allows it. An entry of
    /// a paused campaign is parked instead, and one of a cancelled campaign acknowledged.
    async fn dispatch_entry(&mut self, stream_id: String, entry: Entry) -> anyhow::Result<()> {
        match self.held.state(entry.campaign) {
            None => {}
            Some(CampaignState::Paused) => {
                let parked = self.parked.clone();
                return self
                    .set_aside(&parked, &entry, entry.message.0, &stream_id)
                    .await;
            }
            Some(_) => return self.ack(&[&stream_id]).await,
        }
        if let Some(cap) = &self.config.daily_cap
            && let Some(wait) = cap.admit(&mut self.commands, &entry.payload).await?
        {
            // The portfolio reached its limit: back to the retry set, unspent, until a place
            // frees up.
            metrics::counter!("herald_sender_daily_cap_waits_total").increment(1);
            let due = chrono::Utc::now().timestamp_millis() + wait.as_millis() as i64;
            let retry_set = self.retry_set.clone();
            return self.set_aside(&retry_set, &entry, due, &stream_id).await;
        }
        let permit = self.permits.clone().acquire_owned().await?;
        let target = self.target_rate.load(Ordering::Relaxed);
        if target != self.rate {
            // A quota cannot change in place: a new limiter at the new rate.
            self.limiter = limiter(target);
            self.rate = target;
        }
        self.limiter.until_ready().await;
        while let Some(wait) = self.starts.wait(self.rate, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        // The app or the number's WABA met a Graph rate limit: nothing goes until it ends.
        while let Some(left) = self.scopes.hold(&self.config.waba_id) {
            tokio::time::sleep(left.min(crate::scope::REFRESH)).await;
        }
        if !self.lease.is_valid() {
            // Left pending: the next owner takes it over.
            return Err(LeaseLost.into());
        }
        self.starts.record(self.rate, Instant::now());
        let client = self.client.clone();
        let config = self.config.clone();
        let outcomes = self.outcomes.clone();
        let (stream, retry_set) = (self.stream.clone(), self.retry_set.clone());
        let (pacer, target, pool) = (
            self.pacer.clone(),
            self.target_rate.clone(),
            self.pool.clone(),
        );
        let (scopes, mut redis) = (self.scopes.clone(), self.commands.clone());
        let fence = self.lease.fence;
        let started = chrono::Utc::now();
        let tally = self.tally.clone();
        self.handed += 1;
        tokio::spawn(async move {
            let result = client
                .send_message(
                    &config.phone_number_id,
                    &config.token,
                    fence,
                    entry.payload.clone(),
                )
                .await;
            let changed = pacer
                .lock()
                .expect("pacer lock")
                .record(signal(&result), Instant::now());
            if let Some(rate) = changed {
                target.store(rate, Ordering::Relaxed);
                tracing::info!(number = %config.number, rate, "number's rate changed");
                metrics::gauge!("herald_sender_rate", "number" => config.number.to_string())
                    .set(rate);
                if let Err(e) = numbers::set_rate(&pool, config.number, rate as i32).await {
                    tracing::warn!(number = %config.number, error = %e, "cannot store the rate");
                }
            }
            if let SendResult::Rejected {
                error, retry_after, ..
            } = &result
                && let Some(scope) = scope_of(error.code, &config.waba_id)
            {
                let length = config.scope_throttle.max(retry_after.unwrap_or_default());
                if let Err(e) = scopes.throttle(&mut redis, &scope, length).await {
                    tracing::error!(scope, error = %e, "cannot share the hold with other senders");
                }
            }
            let outcome = Outcome {
                number: config.number,
                number_version: config.version,
                started,
                stream,
                retry_set,
                stream_id,
                entry,
                result,
                tally,
            };
            // Fails only if the recorder is gone, at shutdown; the entry then stays pending.
            let _ = outcomes.send(outcome).await;
            drop(permit);
        });
        Ok(())
    }
}

/// A GCRA limiter admitting `rate` sends a second, evenly spaced (no burst over the rate).
fn limiter(rate: u32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(quota(rate))
}

fn quota(rate: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::MIN)
}

/// What a send's result says about the number's rate.
fn signal(result: &SendResult) -> Signal {
    match result {
        SendResult::Accepted { .. } => Signal::Fine,
        SendResult::Rejected { error, .. } => match classify(error.code) {
            ErrorClass::ThrottleNumber | ErrorClass::ThrottleScope => Signal::Throttled,
            ErrorClass::Transient => Signal::Failed,
            _ => Signal::Fine,
        },
        SendResult::Transport(_) => Signal::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn the_limiter_spaces_sends_evenly_and_never_lets_a_second_exceed_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota(80), clock.clone());
        // One at once, then one every 12.5 ms: no burst.
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_micros(12_400));
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_micros(100));
        assert!(limiter.check().is_ok());
        // Over any second, polling every millisecond, at most 80 go.
        let mut admitted = Vec::new();
        for ms in 0..3000u64 {
            if limiter.check().is_ok() {
                admitted.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        for (i, start) in admitted.iter().enumerate() {
            let within = admitted[i..]
                .iter()
                .take_while(|t| **t < start + 1000)
                .count();
            assert!(within <= 80, "{within} sends in the second from {start} ms");
        }
        // Polled each millisecond, a send goes up to 1 ms after its slot: 13 ms apart.
        assert!(
            admitted.len() >= 3000 / 13,
            "the rate is used: {}",
            admitted.len()
        );
    }
}
