//! Writing a planned batch: an outcome is never dropped, each step is retried until it lands,
//! and the Postgres step is not repeated once done.

use std::time::Duration;

use herald_shared::db::suppressions::{self, Change, Reason};
use herald_shared::db::transitions::{self, Engine, MessageRef, Transition};
use herald_shared::db::{campaigns, numbers};
use herald_shared::domain::{CampaignId, MessageId};
use herald_shared::stream::suppressions::Announced;
use herald_shared::stream::{Connection, Keys};
use herald_shared::suppress;
use sqlx::PgPool;

use super::plan::Plan;

/// Writes planned batches; cloned into each concurrent flush.
#[derive(Clone)]
pub(super) struct Writer {
    pub pool: PgPool,
    pub redis: Connection,
    pub keys: Keys,
}

impl Writer {
    /// Writes one batch. An outcome is never dropped: each step is retried until it lands,
    /// and the Postgres step is not repeated once done.
    pub async fn flush(mut self, plan: Plan) {
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
        self.suppress(&plan.opted_out).await;
    }

    /// Suppresses the recipients Meta said stopped marketing messages (131050) for their
    /// campaign's tenant, and tells every sender. Best effort: the messages are already
    /// recorded `failed`.
    async fn suppress(&mut self, opted_out: &[(CampaignId, String)]) {
        let now = chrono::Utc::now();
        let mut changes = Vec::new();
        for (campaign, recipient) in opted_out {
            let key = suppress::key(recipient);
            let change = Change {
                key: &key,
                active: true,
                reason: Reason::PermanentFailure,
                note: Some("Cloud API error 131050: the user stopped marketing messages"),
                at: now,
                lift_any: false,
            };
            match suppressions::set_for_campaign(&self.pool, *campaign, &change).await {
                Ok(Some(tenant)) => changes.push(Announced {
                    tenant,
                    key,
                    active: true,
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot suppress a user who stopped marketing messages")
                }
            }
        }
        suppress::propagate(&self.pool, &mut self.redis, &self.keys, &changes).await;
    }

    /// Makes the outcomes durable in one transaction (so a retry repeats nothing), through the
    /// transition engine and in its lock order: every message of the batch (the common `sent`
    /// by the lean statement, everything else by the general one), then number pauses, then
    /// the campaigns (counters, and the pauses the batch calls for) — before the entries are
    /// acknowledged, so a crash cannot lose a pause.
    async fn record(&self, plan: &Plan) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut engine = Engine::default();
        let others: Vec<MessageId> = plan
            .transitions
            .iter()
            .filter_map(|t| match t.message {
                MessageRef::Id(id) => Some(id),
                MessageRef::WaId(_) => None,
            })
            .collect();
        let unrecorded = engine.record_sent(&mut tx, &plan.sent, &others).await?;
        let mut transitions = plan.transitions.clone();
        transitions.extend(unrecorded.into_iter().map(Transition::from));
        engine
            .apply(&mut tx, &transitions::reduce(transitions))
            .await?;
        for (number, (state, version, code, title)) in &plan.pauses.numbers {
            let reason = format!("Cloud API error {code}: {title}");
            if numbers::pause_number(&mut *tx, *number, *state, &reason, *version).await? {
                metrics::counter!("herald_sender_numbers_paused_total", "state" => format!("{state:?}"))
                    .increment(1);
                tracing::error!(number = %number, code, %title, state = ?state, "number paused: it needs an operator");
            }
        }
        for (number, rate) in &plan.rates {
            numbers::set_rate(&mut *tx, *number, *rate as i32).await?;
        }
        for campaign in plan.pauses.campaigns.keys() {
            engine.deltas().lock(*campaign);
        }
        engine.finish(&mut tx).await?;
        for (campaign, (code, title, started)) in &plan.pauses.campaigns {
            let reason = format!("template error {code}: {title}");
            if campaigns::pause_campaign(&mut *tx, *campaign, &reason, *started).await? {
                tracing::error!(campaign = %campaign, code, %title, "campaign paused: its template cannot be sent");
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Shares the batch's app and WABA holds with every sender; then, per number and
    /// atomically, schedules the retries and acknowledges and deletes the entries, every
    /// number's at once (a batch holds the outcomes of up to as many numbers as are sending,
    /// and one round trip after another for 40 numbers held every batch's entries in their
    /// streams for tens of milliseconds more).
    async fn acknowledge(&mut self, plan: &Plan) -> anyhow::Result<()> {
        for hold in &plan.holds {
            hold.share(&mut self.redis, &self.keys).await?;
        }
        futures::future::try_join_all(plan.per_number.iter().map(|writes| {
            let mut queue = writes.queue.clone();
            async move { queue.settle(&writes.retries, &writes.acks).await }
        }))
        .await?;
        Ok(())
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
}
