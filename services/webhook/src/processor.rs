//! The webhook processor: reads buffered bodies through the `processors` consumer group and
//! applies a batch of them to Postgres in one transaction: statuses (`receipts`), replies,
//! taps, opt-outs and template pauses (`inbound`), and the bodies' own records in
//! `webhook_events`.
//!
//! Invariants: a body is acknowledged (and deleted) only after the transaction committed, so a
//! crash re-applies it; applying is idempotent because statuses only move forward, engagement
//! is keyed by the inbound wamid and bodies by their buffer id. The transaction keeps the
//! transition engine's lock order (messages, then campaigns, once), so batches cannot deadlock
//! with each other or with the sender's recorder. A batch that fails is kept and tried again
//! at once, before anything new is read. A body that cannot be parsed is recorded as malformed
//! and acknowledged, so it cannot block the stream. Entries left pending by a crashed
//! processor are claimed after `CLAIM_IDLE`.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_shared::clock::Clock;
use herald_shared::db::transitions::{self, Engine};
use herald_shared::db::webhook_events::{self, Event, Outcome};
use herald_shared::settings::Settings;
use herald_shared::stream::{Connection, GroupReader, Keys, Read, WEBHOOK_GROUP, conn};
use herald_shared::whatsapp::webhook::Notification;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::inbound::{self, Counted};
use crate::receipts::{self, UNMATCHED_RETRY};
use herald_shared::suppress;

/// Entries pending this long belong to a processor that died.
const CLAIM_IDLE: Duration = Duration::from_secs(30);

/// How often recorded bodies older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Processor {
    pool: PgPool,
    reader: GroupReader,
    redis: Connection,
    keys: Keys,
    clock: Clock,
    batch: usize,
    block_ms: u64,
    stop_keywords: Vec<String>,
    retention: chrono::Duration,
    unmatched_hold: chrono::Duration,
    /// A batch whose transaction failed: applied again before anything new is read.
    failed: Vec<Read>,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub bodies: usize,
    pub malformed: usize,
    pub changed: i64,
    pub unmatched: i64,
    /// Replies and taps counted, and opt-outs (or opt-ins) recorded.
    pub engagements: usize,
    pub opt_outs: usize,
}

impl Processor {
    pub async fn new(
        settings: &Settings,
        pool: PgPool,
        keys: Keys,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
        let reader = GroupReader::new(
            &settings.redis,
            redis.clone(),
            keys.webhooks(),
            WEBHOOK_GROUP,
            format!("processor-{}", uuid::Uuid::new_v4().simple()),
        )
        .await?;
        Ok(Self {
            pool,
            reader,
            redis,
            keys,
            clock,
            batch: settings.webhook.batch.max(1),
            block_ms: settings.webhook.block_ms,
            stop_keywords: settings.webhook.stop_keywords.clone(),
            retention: chrono::Duration::days(i64::from(settings.webhook.retention_days)),
            unmatched_hold: chrono::Duration::seconds(settings.webhook.unmatched_hold_s as i64),
            failed: Vec::new(),
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::ZERO;
        let now = self.clock.now();
        let (mut next_claim, mut next_prune, mut next_unmatched) =
            (now, now, now + UNMATCHED_RETRY);
        while !shutdown.is_cancelled() {
            let now = self.clock.now();
            if now >= next_unmatched {
                next_unmatched = now + UNMATCHED_RETRY;
                if let Err(e) = self.retry_unmatched().await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot retry held receipts");
                }
            }
            if now >= next_prune {
                next_prune = now + PRUNE_EVERY;
                match webhook_events::prune(&self.pool, self.clock.utc() - self.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old webhook bodies"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune webhook bodies"),
                }
            }
            let claim = now >= next_claim;
            if claim {
                next_claim = now + CLAIM_IDLE / 3;
            }
            let step = tokio::select! {
                step = self.process_next(claim) => step,
                _ = shutdown.cancelled() => break,
            };
            match step {
                Ok(_) => backoff = Duration::ZERO,
                Err(e) if conn::group_is_gone(&e) => {
                    // Redis lost its data: bodies buffered since are read from the start.
                    tracing::error!(
                        "the webhook buffer's group is gone (Redis lost its data); making it again"
                    );
                    self.failed.clear();
                    if let Err(e) = self.reader.ensure_group().await {
                        tracing::error!(error = %e, "cannot make the webhook buffer's group");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    // The first retry goes at once (the batch is kept); repeated failures wait
                    // longer each time.
                    tracing::error!(error = %format!("{e:#}"), "webhook batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                }
            }
        }
        Ok(())
    }

    /// Applies and acknowledges one batch: the one that failed last, else bodies a dead
    /// processor left pending (with `claim`), else new ones (waiting up to `block_ms`).
    pub async fn process_next(&mut self, claim: bool) -> anyhow::Result<Step> {
        let mut entries = std::mem::take(&mut self.failed);
        if entries.is_empty() && claim {
            entries = self
                .reader
                .claim(CLAIM_IDLE, self.batch)
                .await
                .context("claiming abandoned webhook bodies")?;
        }
        if entries.is_empty() {
            entries = self
                .reader
                .read(self.batch, self.block_ms)
                .await
                .context("reading the webhook buffer")?;
        }
        if entries.is_empty() {
            return Ok(Step::default());
        }
        let span = tracing::info_span!("webhook_batch", bodies = entries.len());
        let step = match self.apply(&entries).instrument(span).await {
            Ok(step) => step,
            Err(e) => {
                self.failed = entries;
                return Err(e);
            }
        };
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        if let Err(e) = self.reader.ack(&ids).await {
            // Applied, so applying again changes nothing; acknowledging is what is left.
            self.failed = entries;
            return Err(anyhow::Error::new(e).context("acknowledging webhook bodies"));
        }
        Ok(step)
    }

    async fn apply(&mut self, entries: &[Read]) -> anyhow::Result<Step> {
        let mut step = Step {
            bodies: entries.len(),
            ..Step::default()
        };
        let mut batch = Vec::new();
        let mut notifications = Vec::new();
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let body = entry.body.as_deref().unwrap_or_default();
            let received_at = entry
                .id
                .split_once('-')
                .and_then(|(ms, _)| DateTime::<Utc>::from_timestamp_millis(ms.parse().ok()?))
                .unwrap_or_else(Utc::now);
            let mut event = Event {
                buffer_id: &entry.id,
                numbers: Vec::new(),
                wabas: Vec::new(),
                body,
                received_at,
                outcome: Outcome::Applied,
                error: None,
            };
            match serde_json::from_slice::<Notification>(body) {
                Ok(notification) => {
                    let (numbers, wabas) = notification.accounts();
                    event.numbers = numbers.into_iter().map(str::to_owned).collect();
                    event.wabas = wabas.into_iter().map(str::to_owned).collect();
                    batch.extend(
                        notification
                            .statuses()
                            .filter_map(|(number, s)| receipts::transition(number, s)),
                    );
                    notifications.push(notification);
                }
                Err(e) => {
                    step.malformed += 1;
                    metrics::counter!("herald_webhook_malformed_bodies_total").increment(1);
                    tracing::warn!(entry = %entry.id, error = %e, "malformed webhook body kept and skipped");
                    event.outcome = Outcome::Malformed;
                    event.error = Some(e.to_string());
                }
            }
            events.push(event);
        }
        // One transaction for the batch: the bodies' records first (they lock nothing another
        // writer takes, and are the batch's largest insert: done before any lock is held, not
        // while the campaigns' are), then in the engine's lock order: statuses (message rows),
        // then replies and opt-outs, then every campaign change at once, then template pauses
        // of campaigns locked by that.
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a webhook batch")?;
        webhook_events::record(&mut tx, &events)
            .await
            .context("recording webhook bodies")?;
        let mut engine = Engine::default();
        let batch = transitions::reduce(batch);
        let applied = engine
            .apply(&mut tx, &batch)
            .await
            .context("applying webhook statuses")?;
        step.changed = applied.changed;
        step.unmatched = applied.unmatched;
        if applied.foreign > 0 {
            metrics::counter!("herald_webhook_foreign_receipts_total")
                .increment(applied.foreign as u64);
            tracing::warn!(
                receipts = applied.foreign,
                "receipts ignored: their message was sent from another number than the one they name"
            );
        }
        // Before the bodies are acknowledged: a crash cannot lose them.
        let unknown = &applied.unmatched_wamids;
        receipts::hold(&mut self.redis, &self.keys, &self.clock, &batch, unknown).await?;
        // After the statuses, so that a tap answering a message whose `sent` came in the same
        // batch finds its wamid.
        let mut counted = Counted::default();
        let mut pauses = Vec::new();
        let mut opted = Vec::new();
        for notification in &notifications {
            let stop = &self.stop_keywords;
            let found = inbound::apply(
                &mut tx,
                &mut engine,
                notification,
                stop,
                &mut counted,
                &mut opted,
            );
            pauses.extend(found.await?);
        }
        step.engagements = counted.engagements;
        step.opt_outs = counted.opt_outs;
        engine
            .finish(&mut tx)
            .await
            .context("moving campaign counters")?;
        inbound::pause(&mut tx, &pauses).await?;
        tx.commit().await.context("committing a webhook batch")?;
        let unchanged = (batch.len() as i64 - applied.changed - applied.unmatched).max(0);
        for (result, n) in [
            ("applied", applied.changed),
            ("unchanged", unchanged),
            ("unmatched", applied.unmatched),
        ] {
            metrics::counter!("herald_webhook_receipts_total", "result" => result)
                .increment(n as u64);
        }
        suppress::propagate(&self.pool, &mut self.redis, &self.keys, &opted).await;
        Ok(step)
    }

    /// Tries the held receipts that are due (see `receipts::retry_held`).
    pub async fn retry_unmatched(&mut self) -> anyhow::Result<usize> {
        let (pool, keys, clock) = (&self.pool, &self.keys, &self.clock);
        receipts::retry_held(pool, &mut self.redis, keys, clock, self.unmatched_hold).await
    }
}
