//! Streams that lost entries because Redis lost data (a restart without persistence, a
//! failover to a stale replica, a FLUSHALL), and their repair.
//!
//! A lane is found when its stream's record of what was appended (the fanout hash, written by
//! the same script as the entries) is below what Postgres knows was appended: by the append
//! script itself, which then appends nothing, or by `repair`'s check of every lane of the
//! campaigns under way (a lane fanned out to its end is never appended to again). The lane is
//! opened for repair (`db::repairs`) and fan-out passes it by. After `window` — sends in flight
//! recorded, receipts carrying the message id applied (a send made and never recorded gets
//! one) — the lane's messages that are still `pending` or `queued` and that no part of the
//! number's queue holds are appended again. The queue is read before Postgres: a message sent
//! in between shows as sent, never as lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_shared::db::campaigns::FanoutRow;
use herald_shared::db::repairs::{self, Repair};
use herald_shared::db::templates;
use herald_shared::domain::{CampaignId, NumberId};
use herald_shared::stream::NumberQueue;
use herald_shared::stream::fanout::{self, Expect};

use super::FanOut;

/// What a `repair` pass found and did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Lanes found to have lost entries in this pass.
    pub found: usize,
    /// Repairs waiting for their window.
    pub waiting: Vec<Repair>,
    /// Repairs carried out, with how many messages were appended again.
    pub done: Vec<(Repair, usize)>,
}

impl FanOut {
    /// Finds the lanes whose stream lost entries, and repairs those found `window` ago or more.
    pub async fn repair(&mut self, window: Duration) -> anyhow::Result<Repaired> {
        let mut repaired = Repaired::default();
        let lanes = repairs::lanes_to_check(&self.pool).await?;
        if !lanes.is_empty() {
            let pairs: Vec<_> = lanes.iter().map(|l| (l.number, l.campaign)).collect();
            let kept = fanout::appended(&mut self.redis, &self.keys, &pairs).await?;
            for (lane, kept) in lanes.iter().zip(kept) {
                if kept < lane.appended
                    && self
                        .open_repair(lane.campaign, lane.number, kept, lane.appended)
                        .await?
                {
                    repaired.found += 1;
                }
            }
        }
        let now = Utc::now();
        for repair in repairs::open_repairs(&self.pool).await? {
            if repairs::is_due(&repair, window, now) {
                let appended = self.requeue(&repair).await?;
                repaired.done.push((repair, appended));
            } else {
                repaired.waiting.push(repair);
            }
        }
        Ok(repaired)
    }

    /// An append refused: the lane's stream records less than `appended`.
    pub(super) async fn found_lost(
        &mut self,
        campaign: CampaignId,
        number: NumberId,
        appended: i64,
    ) -> anyhow::Result<()> {
        let kept = fanout::appended(&mut self.redis, &self.keys, &[(number, campaign)]).await?;
        let kept = kept.first().copied().unwrap_or(0);
        if kept < appended {
            self.open_repair(campaign, number, kept, appended).await?;
        }
        Ok(())
    }

    async fn open_repair(
        &mut self,
        campaign: CampaignId,
        number: NumberId,
        kept: i64,
        appended: i64,
    ) -> anyhow::Result<bool> {
        let opened = repairs::open(&self.pool, campaign, number, kept).await?;
        if opened {
            metrics::counter!("herald_fanout_lost_lanes_total").increment(1);
            tracing::error!(
                %campaign,
                %number,
                kept,
                appended,
                window = ?self.repair_window,
                "Redis lost entries of this number's stream (messages after `kept` up to \
                 `appended`); those still unsent are appended again after the window"
            );
        }
        Ok(opened)
    }

    /// Appends again the repair's messages still unsent that the number's queue does not hold,
    /// a page at a time, each page raising the stream's record to its end (a repair repeated
    /// after a crash appends nothing twice); then closes it.
    async fn requeue(&mut self, repair: &Repair) -> anyhow::Result<usize> {
        let queue = Arc::new(self.keys.number(repair.number));
        let held = NumberQueue::new(queue, self.redis.clone())
            .held_messages(repair.campaign)
            .await?;
        let mix = templates::campaign_templates(&self.pool, repair.campaign).await?;
        let (mut after, mut appended) = (repair.lost_after, 0);
        loop {
            let page = repairs::unsent(&self.pool, repair, after, self.batch).await?;
            let last = page.len() < self.batch as usize;
            let through = match page.last() {
                Some(m) if !last => m.id.0,
                _ => repair.through,
            };
            let lost: Vec<FanoutRow> = page.into_iter().filter(|m| !held.contains(&m.id)).collect();
            let expect = Expect {
                appended: 0,
                raise_to: through,
            };
            let added = self
                .append(repair.campaign, &mix, repair.number, expect, &lost)
                .await?
                .unwrap_or(0);
            appended += added;
            if last {
                break;
            }
            after = through;
        }
        repairs::close(&self.pool, repair).await?;
        metrics::counter!("herald_fanout_requeued_total").increment(appended as u64);
        tracing::warn!(
            campaign = %repair.campaign,
            number = %repair.number,
            appended,
            "repaired a stream that lost entries: its unsent messages are queued again"
        );
        Ok(appended)
    }
}
