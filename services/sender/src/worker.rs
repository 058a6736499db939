//! One number's send loop: read its stream in order, pace, send, hand outcomes to the recorder.
//!
//! Invariants: at most `in_flight` sends are under way (a permit is held from before the
//! limiter wait until the outcome is handed over), and sends start no faster than the
//! number's rate (GCRA, no burst). An entry stays in the group's pending list until the
//! recorder has made its outcome durable. Entries another consumer left pending for longer
//! than `ABANDONED_AFTER` are claimed and sent again.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_shared::domain::NumberId;
use herald_shared::settings::RedisSettings;
use herald_shared::stream::{ENTRY_FIELD, Entry, Keys, MOVE_DUE_RETRIES, SENDER_GROUP, conn};
use herald_shared::whatsapp::CloudApiClient;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use secrecy::SecretString;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::recorder::Outcome;

/// An entry pending this long with another consumer belongs to a sender that died.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// Due retries moved back to the stream per script call.
const RETRY_BATCH: usize = 500;

pub struct WorkerConfig {
    pub number: NumberId,
    pub phone_number_id: String,
    pub token: SecretString,
    pub rate: u32,
    pub in_flight: usize,
    pub read_count: usize,
    pub block_ms: u64,
    pub retry_poll: Duration,
    pub consumer: String,
}

pub struct NumberWorker {
    config: Arc<WorkerConfig>,
    stream: Arc<str>,
    retry_set: Arc<str>,
    reads: ConnectionManager,
    commands: ConnectionManager,
    client: CloudApiClient,
    limiter: DefaultDirectRateLimiter,
    permits: Arc<Semaphore>,
    outcomes: mpsc::Sender<Outcome>,
}

impl NumberWorker {
    pub async fn new(
        config: WorkerConfig,
        redis_settings: &RedisSettings,
        mut commands: ConnectionManager,
        keys: &Keys,
        client: CloudApiClient,
        outcomes: mpsc::Sender<Outcome>,
    ) -> anyhow::Result<Self> {
        let stream = keys.stream(config.number);
        conn::ensure_group(&mut commands, &stream, SENDER_GROUP).await?;
        // A blocking read holds its connection: one per number.
        let reads = conn::connect(redis_settings, None).await?;
        let rate = NonZeroU32::new(config.rate).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.in_flight.max(1))),
            stream: stream.into(),
            retry_set: keys.retry(config.number).into(),
            config: Arc::new(config),
            reads,
            commands,
            client,
            limiter,
            outcomes,
        })
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let number = self.config.number;
        let mut last_retry_poll = tokio::time::Instant::now() - self.config.retry_poll;
        let mut last_claim = tokio::time::Instant::now() - ABANDONED_AFTER;
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let step = async {
                if last_retry_poll.elapsed() >= self.config.retry_poll {
                    last_retry_poll = tokio::time::Instant::now();
                    self.promote_due_retries().await?;
                }
                let claim = last_claim.elapsed() >= ABANDONED_AFTER / 4;
                if claim {
                    last_claim = tokio::time::Instant::now();
                }
                self.process_next(claim).await
            };
            let result = tokio::select! {
                r = step => r,
                _ = stop.cancelled() => break,
            };
            match result {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::error!(number = %number, error = %format!("{e:#}"), "number loop failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Wait for the sends in flight to hand over their outcomes.
        let _ = self
            .permits
            .acquire_many(self.config.in_flight.max(1) as u32)
            .await;
        tracing::info!(number = %number, "number stopped");
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

    /// Reads the next entries (waiting up to `block_ms`) and starts sending them, in order.
    /// With `claim`, first takes over entries a dead sender left pending. Returns how many
    /// sends were started.
    pub async fn process_next(&mut self, claim: bool) -> anyhow::Result<usize> {
        let mut entries = Vec::new();
        if claim {
            let claimed: StreamAutoClaimReply = self
                .commands
                .xautoclaim_options(
                    &*self.stream,
                    SENDER_GROUP,
                    &self.config.consumer,
                    ABANDONED_AFTER.as_millis() as u64,
                    "0-0",
                    StreamAutoClaimOptions::default().count(self.config.read_count),
                )
                .await?;
            entries = claimed.claimed;
        }
        if entries.is_empty() {
            let options = StreamReadOptions::default()
                .group(SENDER_GROUP, &self.config.consumer)
                .count(self.config.read_count)
                .block(self.config.block_ms as usize);
            let reply: Option<StreamReadReply> = self
                .reads
                .xread_options(&[&*self.stream], &[">"], &options)
                .await?;
            entries = reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
        }
        let count = entries.len();
        for entry in entries {
            self.dispatch(entry).await?;
        }
        Ok(count)
    }

    async fn dispatch(&mut self, raw: StreamId) -> anyhow::Result<()> {
        let entry = match conn::entry_field(&raw, ENTRY_FIELD).map(Entry::decode) {
            Some(Ok(entry)) => entry,
            other => {
                // Nothing can ever send it: acknowledge it so it does not block the number.
                tracing::error!(number = %self.config.number, entry = %raw.id, problem = ?other.map(|r| r.err()), "malformed stream entry dropped");
                let _: usize = self
                    .commands
                    .xack(&*self.stream, SENDER_GROUP, &[&raw.id])
                    .await?;
                return Ok(());
            }
        };
        let permit = self.permits.clone().acquire_owned().await?;
        self.limiter.until_ready().await;
        let client = self.client.clone();
        let config = self.config.clone();
        let outcomes = self.outcomes.clone();
        let (stream, retry_set) = (self.stream.clone(), self.retry_set.clone());
        tokio::spawn(async move {
            let result = client
                .send_message(
                    &config.phone_number_id,
                    &config.token,
                    entry.payload.clone(),
                )
                .await;
            let outcome = Outcome {
                number: config.number,
                stream,
                retry_set,
                stream_id: raw.id,
                entry,
                result,
            };
            // Fails only if the recorder is gone, at shutdown; the entry then stays pending.
            let _ = outcomes.send(outcome).await;
            drop(permit);
        });
        Ok(())
    }
}
