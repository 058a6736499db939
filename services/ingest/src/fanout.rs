//! Fan-out: moves a running campaign's `pending` messages into their numbers' streams.
//!
//! Invariants: a message is appended to its stream at most once, and marked `queued` only
//! after it is there. Each page is appended through the `FAN_OUT` script, which remembers per
//! (number, campaign) the highest message id appended and skips anything at or below it, so
//! a crash anywhere in a page is repaired by running fan-out again: appended-but-still-pending
//! messages are skipped by the script and then marked `queued`. Status changes go through
//! `messages::mark_queued`, which moves only messages still `pending`, so a message the sender
//! already recorded as `sent` is not moved back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use herald_shared::db::campaigns::{self, FanoutRow};
use herald_shared::db::messages;
use herald_shared::domain::{CampaignId, MessageId, NumberId};
use herald_shared::settings::IngestSettings;
use herald_shared::stream::{Entry, FAN_OUT, Keys};
use herald_shared::whatsapp::TemplateMessage;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct FanOut {
    pool: PgPool,
    redis: ConnectionManager,
    keys: Keys,
    batch: i64,
    poll: Duration,
    wake: Arc<Notify>,
}

impl FanOut {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        keys: Keys,
        settings: &IngestSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            redis,
            keys,
            batch: settings.fanout_batch.max(1),
            poll: Duration::from_millis(settings.fanout_poll_ms),
            wake,
        }
    }

    /// Fans out every running campaign whenever woken, and every `poll` in case a campaign
    /// was started by another process or this one restarted mid-campaign.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.process_running().await {
                tracing::error!(error = %format!("{e:#}"), "fan-out failed; will retry");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Fans out all running campaigns with pending messages; returns how many were queued.
    pub async fn process_running(&mut self) -> anyhow::Result<u64> {
        let mut queued = 0;
        for campaign in campaigns::running_campaigns(&self.pool).await? {
            queued += self.fan_out_campaign(campaign).await?;
        }
        Ok(queued)
    }

    /// Appends the campaign's pending messages page by page (a page is a span of ids).
    /// Marking a page `queued` runs beside the next page's append (up to `MARKING` pages at
    /// once): it only records what is already true, a message the sender records first simply
    /// skips `queued`, and one left `pending` by a crash is still sent from its stream.
    async fn fan_out_campaign(&mut self, campaign: CampaignId) -> anyhow::Result<u64> {
        const MARKING: usize = 2;
        // The first pages are narrow, doubling up to `batch`, so that sending starts at once.
        const FIRST_PAGE: i64 = 128;
        let (mut cursor, last) = campaigns::fanout_span(&self.pool, campaign).await?;
        let last = last.unwrap_or(0);
        let mut width = self.batch.min(FIRST_PAGE);
        let mut marking = JoinSet::new();
        let mut queued = 0;
        while cursor < last {
            let through = last.min(cursor.saturating_add(width));
            width = self.batch.min(width.saturating_mul(2));
            let page = campaigns::fanout_page(&self.pool, campaign, cursor, through).await?;
            if page.is_empty() {
                // Nothing pending here (ids of other campaigns, or sent already): on to the
                // campaign's next message.
                let next = campaigns::next_message_id(&self.pool, campaign, through).await?;
                cursor = next.map_or(last, |next| next - 1);
                continue;
            }
            self.append(campaign, &page).await?;
            campaigns::advance_fanout_cursor(&self.pool, campaign, through).await?;
            cursor = through;
            while marking.len() >= MARKING {
                queued += marked(marking.join_next().await);
            }
            let pool = self.pool.clone();
            let ids: Vec<MessageId> = page.iter().map(|m| m.id).collect();
            marking.spawn(async move { messages::mark_queued(&pool, &ids, Utc::now()).await });
        }
        while let Some(done) = marking.join_next().await {
            queued += marked(Some(done));
        }
        if queued > 0 {
            tracing::info!(campaign = %campaign, queued, "fanned out");
        }
        Ok(queued)
    }

    /// Appends one page to the numbers' streams, each number's share in one script call.
    async fn append(&mut self, campaign: CampaignId, page: &[FanoutRow]) -> anyhow::Result<()> {
        let mut by_number: BTreeMap<NumberId, Vec<&FanoutRow>> = BTreeMap::new();
        for row in page {
            by_number.entry(row.sender_number_id).or_default().push(row);
        }
        for (number, rows) in by_number {
            let mut script = FAN_OUT.key(self.keys.stream(number));
            script
                .key(self.keys.fanout(number))
                .arg(campaign.to_string());
            for row in rows {
                let callback = row.id.0.to_string();
                let payload = TemplateMessage::new(
                    &row.recipient,
                    &row.template_name,
                    &row.template_language,
                    &row.variables,
                    &callback,
                );
                let entry = Entry {
                    message: row.id,
                    campaign,
                    attempt: 0,
                    payload: Bytes::from(serde_json::to_vec(&payload)?),
                };
                script.arg(row.id.0).arg(entry.encode());
            }
            let _: i64 = script
                .invoke_async(&mut self.redis)
                .await
                .with_context(|| format!("appending to the stream of number {number}"))?;
            // The sender discovers numbers through this set; re-adding is harmless.
            let _: () = self
                .redis
                .sadd(self.keys.numbers(), number.to_string())
                .await?;
        }
        Ok(())
    }
}

/// How many a finished marking task marked; a failure is logged, not fatal (see
/// `fan_out_campaign`).
fn marked(done: Option<Result<sqlx::Result<i64>, tokio::task::JoinError>>) -> u64 {
    match done {
        Some(Ok(Ok(n))) => n as u64,
        Some(Ok(Err(e))) => {
            tracing::warn!(error = %e, "could not mark a page queued; its messages stay pending until sent");
            0
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "marking a page queued panicked");
            0
        }
        None => 0,
    }
}
