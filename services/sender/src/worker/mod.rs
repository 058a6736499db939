//! One number's send loop: take over what the last owner left, then read the stream in order,
//! pace, send, and hand outcomes to the recorder.
//!
//! Invariants: sends start only while this sender holds the number's lease; at most
//! `in_flight` are under way, fewer while answers slow down (`window`; a permit is held from
//! before the pacing wait until the outcome is handed over); they start no faster than the
//! number's rate (GCRA, no burst), and no span of one second and the pacing guard holds more
//! than the rate of them. An entry stays in the group's pending list until the recorder has
//! made its outcome durable.
//!
//! The parts: `takeover` (what the last owner left, and what this one leaves), `gate` (what
//! must hold before a send starts), `send` (the send itself, whose outcome carries everything
//! it changed to the recorder, the only writer to Postgres).
//!
//! Held campaigns: an entry of a paused campaign is moved, atomically with its
//! acknowledgement, to the number's parked set and back into the stream once the campaign
//! runs again; an entry of a cancelled campaign is acknowledged unsent (cancel has already
//! marked its message).

mod gate;
mod gauges;
mod send;
mod takeover;
mod window;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::settings::PacingSettings;
use herald_shared::stream::holds::DailyLimit;
use herald_shared::stream::{
    Aside, Connection, Entry, EntryError, GroupReader, Keys, NumberQueue, Read, SENDER_GROUP, conn,
};
use herald_shared::whatsapp::CloudApiClient;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::gate::{Admission, Pace};
use self::takeover::Ambiguous;
use crate::held::HeldCampaigns;
use crate::lease::Lease;
use crate::recorder::{Outcome, Tally};
use crate::scope::{NumberScopes, ScopeThrottles};

/// Due retries moved back to the stream per script call.
const RETRY_BATCH: usize = 500;

pub struct WorkerConfig {
    pub number: herald_shared::domain::NumberId,
    /// The number row's `updated_at` when it was read.
    pub version: chrono::DateTime<chrono::Utc>,
    pub phone_number_id: String,
    /// Its tenant's app and its WABA, which rate limits 4 and 80007 hold.
    pub scopes: NumberScopes,
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
    pub daily_cap: Option<DailyLimit>,
}

/// What a worker shares with its supervisor and the process's other workers.
#[derive(Clone)]
pub struct Shared {
    pub clock: Clock,
    pub held: Arc<HeldCampaigns>,
    pub suppressed: Arc<crate::suppressed::Suppressed>,
    pub doorbells: Arc<crate::doorbells::Doorbells>,
    pub scopes: Arc<ScopeThrottles>,
    pub pool: PgPool,
    pub client: CloudApiClient,
    pub outcomes: mpsc::Sender<Outcome>,
}

pub struct NumberWorker {
    config: Arc<WorkerConfig>,
    shared: Shared,
    lease: Arc<Lease>,
    reader: GroupReader,
    queue: NumberQueue,
    commands: Connection,
    pace: Pace,
    /// Claimed entries whose send may already have happened, waiting for their receipts.
    ambiguous: Vec<Ambiguous>,
    /// Entries read (or handed back by the last owner) and not yet started, in stream order.
    unstarted: VecDeque<Read>,
    /// Outcomes handed to the recorder, and how many it has recorded.
    handed: u64,
    tally: Arc<Tally>,
    send_path: Arc<send::SendPath>,
}

#[derive(Debug, thiserror::Error)]
#[error("the lease on the number is no longer held")]
struct LeaseLost;

/// When the loop's periodic chores are next due.
struct Chores {
    retries: Instant,
}

impl NumberWorker {
    pub async fn new(
        config: WorkerConfig,
        shared: Shared,
        lease: Arc<Lease>,
        keys: &Keys,
        mut commands: Connection,
    ) -> anyhow::Result<Self> {
        let number_keys = Arc::new(keys.number(config.number));
        let mut reader = GroupReader::polling(
            commands.clone(),
            number_keys.stream.clone(),
            SENDER_GROUP,
            config.consumer.clone(),
        )
        .await?;
        reader.wake_on(shared.doorbells.bell(config.number));
        shared.scopes.watch(&config.scopes);
        shared.scopes.refresh(&mut commands).await?;
        let config = Arc::new(config);
        let pace = Pace::new(&config, shared.clock);
        Ok(Self {
            send_path: Arc::new(send::SendPath::new(&shared, &config, &pace, lease.fence)),
            pace,
            queue: NumberQueue::new(number_keys, commands.clone()),
            config,
            shared,
            lease,
            reader,
            commands,
            ambiguous: Vec::new(),
            unstarted: VecDeque::new(),
            handed: 0,
            tally: Arc::default(),
        })
    }

    /// Sends until `stop` or the lease is lost, then hands over (see `takeover`).
    pub async fn run(self, stop: CancellationToken) {
        let span = tracing::info_span!("number", number = %self.config.number);
        self.work(stop).instrument(span).await
    }

    async fn work(mut self, stop: CancellationToken) {
        // The rate from the start, not only once it first moves.
        metrics::gauge!("herald_sender_rate", "number" => self.config.number.to_string())
            .set(self.pace.rate() as f64);
        let now = self.shared.clock.now();
        let mut chores = Chores { retries: now };
        // Reported on a task of their own: they matter most when sends are stuck.
        let reporting = CancellationToken::new();
        let reporter = tokio::spawn(gauges::report_until(
            reporting.clone(),
            self.config.number,
            self.queue.clone(),
            self.shared.clock,
            self.pace.feedback(),
        ));
        let mut backoff = Duration::from_millis(100);
        let mut taken_over = false;
        let mut lease_lost = false;
        while !stop.is_cancelled() {
            let step = async {
                if !taken_over {
                    self.take_over().await?;
                    taken_over = true;
                }
                self.do_chores(&mut chores).await?;
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
                    tracing::error!(
                        "the number's consumer group is gone (Redis lost its data); making it again"
                    );
                    if let Err(e) = self.reader.ensure_group().await {
                        tracing::error!(error = %e, "cannot make the number's group");
                        tokio::time::sleep(backoff).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "number loop failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // At once: the sends still in flight may take a while, and the next owner reports the
        // queue from now on.
        reporting.cancel();
        let _ = reporter.await;
        gauges::clear(self.config.number);
        self.hand_over(lease_lost).await;
        tracing::info!("number stopped");
    }

    /// Moves due retries and resumed campaigns' entries into the stream, and reports gauges,
    /// each when due.
    async fn do_chores(&mut self, chores: &mut Chores) -> anyhow::Result<()> {
        let now = self.shared.clock.now();
        if now >= chores.retries {
            chores.retries = now + self.config.retry_poll;
            self.queue
                .promote_due(self.shared.clock.unix_ms(), RETRY_BATCH)
                .await?;
            let moved = self.queue.unpark(&self.shared.held.paused()).await?;
            if moved > 0 {
                tracing::info!(moved, "resumed parked messages");
            }
        }
        Ok(())
    }

    /// Starts the entries not yet started (those handed back first), or else reads the next
    /// ones (waiting up to `block_ms`) and starts them, in order. Returns how many it had.
    pub async fn process_next(&mut self) -> anyhow::Result<usize> {
        if self.unstarted.is_empty() {
            // Read no further ahead than a quarter second of sending: what a sender read and
            // had not started when it died looks like a send whose outcome was lost, and its
            // successor must wait the reconciliation window before sending it.
            let ahead = (self.pace.rate() as usize / 4).clamp(1, self.config.read_count.max(1));
            let read = self.reader.read(ahead, self.config.block_ms).await?;
            self.unstarted.extend(read);
        }
        let count = self.unstarted.len();
        // An entry leaves `unstarted` only once its send is under way (or it is set aside):
        // a stop in between leaves it there, to be handed back.
        while let Some(read) = self.unstarted.front() {
            let decoded = read.body.as_deref().map(Entry::decode);
            let id = read.id.clone();
            self.dispatch(id, decoded).await?;
            self.unstarted.pop_front();
        }
        Ok(count)
    }

    async fn dispatch(
        &mut self,
        stream_id: String,
        decoded: Option<Result<Entry, EntryError>>,
    ) -> anyhow::Result<()> {
        match decoded {
            Some(Ok(entry)) => self.dispatch_entry(stream_id, entry).await,
            other => {
                // Nothing can ever send it: acknowledge it so it does not block the number.
                tracing::error!(entry = %stream_id, problem = ?other.map(|r| r.err()), "malformed stream entry dropped");
                Ok(self.reader.ack(&[&stream_id]).await?)
            }
        }
    }

    /// Starts one send once the gate lets it through; parks, drops or defers it when the gate
    /// says so.
    async fn dispatch_entry(&mut self, stream_id: String, entry: Entry) -> anyhow::Result<()> {
        match self.admit(&entry).await? {
            Admission::Go(permit) => self.start_send(stream_id, entry, permit),
            Admission::Park => {
                self.queue
                    .set_aside(Aside::Parked, &entry, &stream_id)
                    .await?
            }
            Admission::Drop => self.reader.ack(&[&stream_id]).await?,
            Admission::Settled => {
                metrics::counter!("herald_sender_retries_settled_total").increment(1);
                self.reader.ack(&[&stream_id]).await?
            }
            Admission::Suppress => self.record_suppressed(stream_id, entry).await,
            Admission::Defer(wait) => {
                // The portfolio reached its limit: back to the retry set, unspent, until a
                // place frees up.
                metrics::counter!("herald_sender_daily_cap_waits_total").increment(1);
                let due_ms = self.shared.clock.unix_ms() + wait.as_millis() as i64;
                self.queue
                    .set_aside(Aside::Retry { due_ms }, &entry, &stream_id)
                    .await?
            }
        }
        Ok(())
    }
}
