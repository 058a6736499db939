//! Taking a number over, and handing it over.
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

use std::collections::HashMap;
use std::time::Duration;

use herald_shared::db::messages;
use herald_shared::domain::{MessageId, MessageStatus};
use herald_shared::stream::Entry;
use tokio::time::Instant;

use super::NumberWorker;

/// How long a worker stopping on purpose waits for its outcomes to be recorded.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// A claimed entry whose send may already have happened, waiting for its receipt.
pub(super) struct Ambiguous {
    due: Instant,
    id: String,
    entry: Entry,
}

impl NumberWorker {
    /// Claims every entry pending on the number (the last owner's in-flight sends, or sends
    /// it read but never started): recorded ones are acknowledged, the rest wait for their
    /// receipts.
    pub(super) async fn take_over(&mut self) -> anyhow::Result<()> {
        // Derived afresh from the pending list: a failed earlier try leaves nothing behind.
        self.ambiguous.clear();
        let claimed = self.reader.claim_all().await?;
        if claimed.is_empty() {
            return Ok(());
        }
        // What the last owner handed back was never sent: it goes first, without waiting.
        let handed_back = self.queue.take_handback().await?;
        let (unstarted, claimed): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .partition(|read| handed_back.contains(&read.id));
        self.unstarted = unstarted.into();
        let due = self.shared.clock.now() + self.config.reconciliation_window;
        let mut waiting = Vec::with_capacity(claimed.len());
        for read in claimed {
            match read.body.as_deref().map(Entry::decode) {
                Some(Ok(entry)) => waiting.push(Ambiguous {
                    due,
                    id: read.id,
                    entry,
                }),
                _ => self.reader.ack(&[read.id.as_str()]).await?,
            }
        }
        let still = self.settle(waiting).await?;
        tracing::info!(
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
            match messages::statuses(&self.shared.pool, &ids).await {
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
        let done_ids: Vec<&str> = done.iter().map(|a| a.id.as_str()).collect();
        if let Err(e) = self.reader.ack(&done_ids).await {
            self.ambiguous.extend(unsent);
            self.ambiguous.extend(done);
            return Err(e.into());
        }
        Ok(unsent)
    }

    /// Sends again the ambiguous entries whose window passed without a receipt.
    pub(super) async fn resolve_ambiguous(&mut self) -> anyhow::Result<()> {
        let now = self.shared.clock.now();
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
            tracing::warn!(
                resends = unsent.len(),
                "no receipt within the window: sending again"
            );
        }
        for a in unsent {
            self.dispatch_entry(a.id, a.entry).await?;
        }
        Ok(())
    }

    /// Waits for the sends in flight to hand over their outcomes, and for those to be
    /// recorded, so that the next owner finds them settled; then, unless the lease was lost,
    /// hands back what was read and never started.
    pub(super) async fn hand_over(&mut self, lease_lost: bool) {
        self.pace.window.open_fully().await;
        let recorded = tokio::time::timeout(HANDOVER_WAIT, self.tally.wait_for(self.handed));
        if recorded.await.is_err() {
            tracing::warn!("outcomes still unrecorded at stop; the next owner settles them");
        }
        if lease_lost || !self.lease.is_valid() || self.unstarted.is_empty() {
            return;
        }
        let ids: Vec<&str> = self.unstarted.iter().map(|e| e.id.as_str()).collect();
        match self.queue.hand_back(&ids).await {
            Ok(()) => tracing::info!(entries = ids.len(), "handed back unstarted entries"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand back unstarted entries; the next owner waits for them")
            }
        }
    }
}
