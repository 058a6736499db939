//! The webhook processor: reads buffered bodies through the `processors` consumer group and
//! applies a batch of them to Postgres in one transaction: statuses, replies and taps,
//! opt-outs, template pauses, and the bodies' own records in `webhook_events`.
//!
//! Invariants: a body is acknowledged (and deleted) only after the transaction committed, so a
//! crash re-applies it; applying is idempotent because statuses only move forward, engagement
//! is keyed by the inbound wamid and bodies by their buffer id. A body that cannot be parsed
//! is recorded as malformed and acknowledged, so it cannot block the stream. Receipts whose
//! wamid no message has yet are held in a sorted set and tried again. Entries left pending by a
//! crashed processor are claimed after `CLAIM_IDLE`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_shared::db::campaigns;
use herald_shared::db::engagement::{self, Engagement, Inbound};
use herald_shared::db::messages::{self, MessageRef, Transition};
use herald_shared::db::webhook_events::{self, Event, Outcome};
use herald_shared::domain::{MessageId, MessageStatus};
use herald_shared::settings::Settings;
use herald_shared::stream::{ENTRY_FIELD, Keys, WEBHOOK_GROUP, conn};
use herald_shared::whatsapp::webhook::{Notification, ReceiptStatus, StatusUpdate};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Entries pending this long belong to a processor that died.
const CLAIM_IDLE: Duration = Duration::from_secs(30);

/// Template events after which a template cannot be sent: its campaigns pause.
const TEMPLATE_STOPS: [&str; 6] = [
    "PAUSED",
    "DISABLED",
    "REJECTED",
    "PENDING_DELETION",
    "DELETED",
    "LOCKED",
];

/// How often receipts held for an unknown wamid are tried again.
const UNMATCHED_RETRY: Duration = Duration::from_secs(1);

/// How often recorded bodies older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Processor {
    pool: PgPool,
    commands: ConnectionManager,
    reads: ConnectionManager,
    stream: String,
    consumer: String,
    batch: usize,
    block_ms: u64,
    stop_keywords: Vec<String>,
    retention: chrono::Duration,
    unmatched: String,
    unmatched_hold: chrono::Duration,
}

/// A receipt held until its wamid is known (see `webhook.unmatched_hold_s`).
#[derive(Debug, Serialize, Deserialize)]
struct HeldReceipt {
    wamid: String,
    status: MessageStatus,
    /// Meta's timestamp, Unix seconds: the hold counts from it.
    at: i64,
    code: Option<i32>,
    title: Option<String>,
}

impl HeldReceipt {
    fn of(t: &Transition) -> Option<Self> {
        let MessageRef::WaId(wamid) = &t.message else {
            return None;
        };
        Some(Self {
            wamid: wamid.clone(),
            status: t.status,
            at: t.at.timestamp(),
            code: t.error_code,
            title: t.error_title.clone(),
        })
    }

    fn transition(&self) -> Transition {
        Transition {
            message: MessageRef::WaId(self.wamid.clone()),
            status: self.status,
            wa_message_id: Some(self.wamid.clone()),
            at: DateTime::<Utc>::from_timestamp(self.at, 0).unwrap_or_else(Utc::now),
            error_code: self.code,
            error_title: self.title.clone(),
            attempts: 0,
        }
    }
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
    pub async fn new(settings: &Settings, pool: PgPool, keys: Keys) -> anyhow::Result<Self> {
        let mut commands = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
        let reads = conn::connect(&settings.redis, None).await?;
        let stream = keys.webhooks();
        conn::ensure_group(&mut commands, &stream, WEBHOOK_GROUP).await?;
        Ok(Self {
            pool,
            commands,
            reads,
            stream,
            consumer: format!("processor-{}", uuid::Uuid::new_v4().simple()),
            batch: settings.webhook.batch.max(1),
            block_ms: settings.webhook.block_ms,
            stop_keywords: settings.webhook.stop_keywords.clone(),
            retention: chrono::Duration::days(i64::from(settings.webhook.retention_days)),
            unmatched: keys.webhooks_unmatched(),
            unmatched_hold: chrono::Duration::seconds(settings.webhook.unmatched_hold_s as i64),
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        let mut last_claim = tokio::time::Instant::now() - CLAIM_IDLE;
        let mut last_prune = tokio::time::Instant::now() - PRUNE_EVERY;
        let mut last_unmatched = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if last_unmatched.elapsed() >= UNMATCHED_RETRY {
                last_unmatched = tokio::time::Instant::now();
                if let Err(e) = self.retry_unmatched().await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot retry held receipts");
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                match webhook_events::prune(&self.pool, Utc::now() - self.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old webhook bodies"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune webhook bodies"),
                }
            }
            let claim = last_claim.elapsed() >= CLAIM_IDLE / 3;
            if claim {
                last_claim = tokio::time::Instant::now();
            }
            let step = tokio::select! {
                step = self.process_next(claim) => step,
                _ = shutdown.cancelled() => break,
            };
            match step {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) if conn::group_is_gone(&e) => {
                    // Redis lost its data: bodies buffered since are read from the start.
                    tracing::error!(
                        "the webhook buffer's group is gone (Redis lost its data); making it again"
                    );
                    if let Err(e) =
                        conn::ensure_group(&mut self.commands, &self.stream, WEBHOOK_GROUP).await
                    {
                        tracing::error!(error = %e, "cannot make the webhook buffer's group");
                        tokio::time::sleep(backoff).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "webhook batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Ok(())
    }

    /// Reads one batch (waiting up to `block_ms` for it), applies it and acknowledges it.
    /// With `claim`, first takes over bodies a dead processor left pending.
    pub async fn process_next(&mut self, claim: bool) -> anyhow::Result<Step> {
        let entries = if claim {
            let claimed: redis::streams::StreamAutoClaimReply = self
                .commands
                .xautoclaim_options(
                    &self.stream,
                    WEBHOOK_GROUP,
                    &self.consumer,
                    CLAIM_IDLE.as_millis() as u64,
                    "0-0",
                    StreamAutoClaimOptions::default().count(self.batch),
                )
                .await
                .context("claiming abandoned webhook bodies")?;
            claimed.claimed
        } else {
            Vec::new()
        };
        let entries = if entries.is_empty() {
            let options = StreamReadOptions::default()
                .group(WEBHOOK_GROUP, &self.consumer)
                .count(self.batch)
                .block(self.block_ms as usize);
            let reply: Option<StreamReadReply> = self
                .reads
                .xread_options(&[&self.stream], &[">"], &options)
                .await
                .context("reading the webhook buffer")?;
            reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default()
        } else {
            entries
        };
        if entries.is_empty() {
            return Ok(Step::default());
        }
        let step = self.apply(&entries).await?;
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let _: () = redis::pipe()
            .atomic()
            .xack(&self.stream, WEBHOOK_GROUP, &ids)
            .ignore()
            .xdel(&self.stream, &ids)
            .ignore()
            .query_async(&mut self.commands)
            .await
            .context("acknowledging webhook bodies")?;
        Ok(step)
    }

    async fn apply(&self, entries: &[StreamId]) -> anyhow::Result<Step> {
        let mut step = Step {
            bodies: entries.len(),
            ..Step::default()
        };
        let mut batch = Vec::new();
        let mut notifications = Vec::new();
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let body = conn::entry_field(entry, ENTRY_FIELD).unwrap_or_default();
            let received_at = entry
                .id
                .split_once('-')
                .and_then(|(ms, _)| DateTime::<Utc>::from_timestamp_millis(ms.parse().ok()?))
                .unwrap_or_else(Utc::now);
            let mut event = Event {
                buffer_id: &entry.id,
                body,
                received_at,
                outcome: Outcome::Applied,
                error: None,
            };
            match serde_json::from_slice::<Notification>(body) {
                Ok(notification) => {
                    batch.extend(notification.statuses().filter_map(transition));
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
        // One transaction for the batch: statuses, engagement, opt-outs, template pauses and
        // the bodies' records land together or not at all (and are then all tried again).
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a webhook batch")?;
        if !batch.is_empty() {
            let batch = messages::reduce(batch);
            let applied = messages::apply_transitions(&mut *tx, &batch)
                .await
                .context("applying webhook statuses")?;
            step.changed = applied.changed;
            step.unmatched = applied.unmatched;
            if !applied.unmatched_wamids.is_empty() {
                // Before the bodies are acknowledged: a crash cannot lose them.
                let unknown: HashSet<&String> = applied.unmatched_wamids.iter().collect();
                let held: Vec<HeldReceipt> = batch
                    .iter()
                    .filter_map(HeldReceipt::of)
                    .filter(|h| unknown.contains(&h.wamid))
                    .collect();
                self.hold(&held).await?;
            }
        }
        // After the statuses, so that a tap answering a message whose `sent` came in the same
        // batch finds its wamid.
        for notification in &notifications {
            self.apply_inbound(&mut tx, notification, &mut step).await?;
        }
        webhook_events::record(&mut *tx, &events)
            .await
            .context("recording webhook bodies")?;
        tx.commit().await.context("committing a webhook batch")?;
        Ok(step)
    }

    /// Holds receipts whose wamid no message has yet, to be tried again shortly.
    async fn hold(&self, held: &[HeldReceipt]) -> anyhow::Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        let due = (Utc::now() + UNMATCHED_RETRY).timestamp_millis();
        let mut pipe = redis::pipe();
        for h in held {
            pipe.zadd(&self.unmatched, serde_json::to_string(h)?, due)
                .ignore();
        }
        let _: () = pipe
            .query_async(&mut self.commands.clone())
            .await
            .context("holding receipts for unknown wamids")?;
        Ok(())
    }

    /// Tries the held receipts that are due: applied ones go; the rest wait another round,
    /// until `unmatched_hold` after Meta's timestamp, when they are logged as orphans.
    pub async fn retry_unmatched(&self) -> anyhow::Result<usize> {
        let mut redis = self.commands.clone();
        let now = Utc::now();
        let due: Vec<String> = redis
            .zrangebyscore_limit(&self.unmatched, "-inf", now.timestamp_millis(), 0, 500)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let held: Vec<(String, Option<HeldReceipt>)> = due
            .into_iter()
            .map(|member| {
                let parsed = serde_json::from_str(&member).ok();
                (member, parsed)
            })
            .collect();
        let transitions: Vec<Transition> = held
            .iter()
            .filter_map(|(_, h)| h.as_ref().map(HeldReceipt::transition))
            .collect();
        let applied = messages::apply_transitions(&self.pool, &messages::reduce(transitions))
            .await
            .context("applying held receipts")?;
        let unknown: HashSet<&String> = applied.unmatched_wamids.iter().collect();
        let later = (now + UNMATCHED_RETRY).timestamp_millis();
        let mut pipe = redis::pipe();
        let mut resolved = 0;
        for (member, receipt) in &held {
            match receipt {
                Some(h) if unknown.contains(&h.wamid) => {
                    if now.timestamp() - h.at > self.unmatched_hold.num_seconds() {
                        metrics::counter!("herald_webhook_orphan_receipts_total").increment(1);
                        tracing::warn!(wamid = %h.wamid, status = ?h.status, "orphan receipt: no message has this wamid; dropped");
                        pipe.zrem(&self.unmatched, member).ignore();
                    } else {
                        pipe.zadd(&self.unmatched, member, later).ignore();
                    }
                }
                _ => {
                    resolved += 1;
                    pipe.zrem(&self.unmatched, member).ignore();
                }
            }
        }
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(resolved)
    }

    /// Replies count as `replied` and quick-reply taps as `clicked` on their campaign; a STOP
    /// keyword, or Meta's marketing opt-out, suppresses the user for the number's tenant; a
    /// template Meta paused or disabled pauses the running campaigns that send it.
    async fn apply_inbound(
        &self,
        tx: &mut sqlx::PgConnection,
        notification: &Notification,
        step: &mut Step,
    ) -> anyhow::Result<()> {
        for (number, message) in notification.inbound() {
            let recipient = format!("+{}", message.from.trim_start_matches('+'));
            let (kind, said) = match (&message.button, &message.text) {
                (Some(button), _) => (Engagement::Clicked, [&button.text, &button.payload]),
                (None, Some(text)) => (Engagement::Replied, [&text.body, &text.body]),
                // Media, reactions, locations…: a reply all the same.
                (None, None) => (Engagement::Replied, [&String::new(), &String::new()]),
            };
            let inbound = Inbound {
                phone_number_id: number,
                recipient: recipient.clone(),
                wa_message_id: &message.id,
                context: message.context.as_ref().map(|c| c.id.as_str()),
                kind,
            };
            if engagement::record_inbound(&mut *tx, &inbound)
                .await
                .context("counting a reply")?
            {
                step.engagements += 1;
            }
            if said
                .iter()
                .any(|s| engagement::is_stop_keyword(s, &self.stop_keywords))
                && engagement::set_opt_out(&mut *tx, number, &recipient, true)
                    .await
                    .context("recording an opt-out")?
            {
                step.opt_outs += 1;
                tracing::info!(number, "recipient opted out");
            }
        }
        for (waba, update) in notification.template_updates() {
            let (Some(event), Some(name)) = (&update.event, &update.message_template_name) else {
                continue;
            };
            if !TEMPLATE_STOPS.contains(&event.as_str()) {
                continue;
            }
            let reason = format!(
                "template {name} {event} by Meta{}",
                update
                    .reason
                    .as_deref()
                    .filter(|r| !r.is_empty() && *r != "NONE")
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            let paused = campaigns::pause_for_template(
                &mut *tx,
                waba,
                name,
                update.message_template_language.as_deref(),
                &reason,
            )
            .await
            .context("pausing campaigns of a stopped template")?;
            if paused > 0 {
                tracing::warn!(waba, template = %name, %event, paused, "campaigns paused: their template was stopped");
            }
        }
        for (number, preference) in notification.preferences() {
            if preference.category != "marketing_messages" {
                continue;
            }
            let recipient = format!("+{}", preference.wa_id.trim_start_matches('+'));
            let stop = preference.value == "stop";
            if (stop || preference.value == "resume")
                && engagement::set_opt_out(&mut *tx, number, &recipient, stop)
                    .await
                    .context("recording a marketing preference")?
            {
                step.opt_outs += 1;
            }
        }
        Ok(())
    }
}

/// The transition a status update asks for; `None` for statuses Herald does not track.
fn transition(update: &StatusUpdate) -> Option<Transition> {
    let status = match update.status {
        ReceiptStatus::Sent => MessageStatus::Sent,
        ReceiptStatus::Delivered => MessageStatus::Delivered,
        ReceiptStatus::Read | ReceiptStatus::Played => MessageStatus::Read,
        ReceiptStatus::Failed => MessageStatus::Failed,
        ReceiptStatus::Unknown => return None,
    };
    let message = match update
        .biz_opaque_callback_data
        .as_deref()
        .and_then(|c| c.parse::<MessageId>().ok())
    {
        Some(id) => MessageRef::Id(id),
        None => MessageRef::WaId(update.id.clone()),
    };
    let at = update
        .timestamp
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now);
    let error = update.errors.first();
    Some(Transition {
        message,
        status,
        wa_message_id: Some(update.id.clone()),
        at,
        error_code: error.and_then(|e| i32::try_from(e.code).ok()),
        error_title: error.map(|e| e.title.clone()),
        attempts: 0,
    })
}
