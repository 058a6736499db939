//! Starts scheduled campaigns at their time. Every ingest replica runs one; a due campaign is
//! claimed with `FOR UPDATE SKIP LOCKED` and moved in that transaction, so it starts once
//! whatever the replicas. One whose time passed while Herald was down (by more than the
//! grace) starts late or expires, as its `overdue` says.

use std::sync::Arc;
use std::time::Duration;

use herald_shared::db::campaigns;
use herald_shared::domain::CampaignState;
use tokio_util::sync::CancellationToken;

use crate::routes::campaigns::{cancel_unsent, preflight};
use crate::{ApiError, AppState};

pub struct Scheduler {
    state: Arc<AppState>,
    poll: Duration,
    grace: chrono::Duration,
}

impl Scheduler {
    pub fn new(state: Arc<AppState>, poll: Duration, grace: Duration) -> Self {
        Self {
            state,
            poll,
            grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            loop {
                match self.start_one_due().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "the scheduler failed; will retry");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Claims the campaign due longest and starts, expires or refuses it; `false` when none
    /// is due.
    async fn start_one_due(&self) -> Result<bool, ApiError> {
        let state = &self.state;
        let mut tx = state.pool.begin().await?;
        let Some(due) = campaigns::claim_due(&mut tx).await? else {
            return Ok(false);
        };
        let late = chrono::Utc::now() - due.scheduled_at;
        if due.overdue == "expire" && late > self.grace {
            let reason = format!(
                "expired: Herald was not running at its scheduled time ({}), {} s ago",
                due.scheduled_at.to_rfc3339(),
                late.num_seconds()
            );
            campaigns::settle_due(&mut tx, due.id, CampaignState::Cancelled, &reason).await?;
            tx.commit().await?;
            cancel_unsent(state, due.id).await?;
            tracing::warn!(campaign = %due.id, %reason, "scheduled campaign expired");
            return Ok(true);
        }
        let campaign = campaigns::get_campaign(&state.pool, due.tenant_id, due.id).await?;
        let problems = match campaign {
            Some(c) if c.counters.total == 0 => vec!["it has no recipients".to_owned()],
            _ => preflight(state, due.tenant_id, due.id)
                .await?
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.reason))
                .collect(),
        };
        if !problems.is_empty() {
            let reason = format!("the scheduled start was refused: {}", problems.join("; "));
            campaigns::settle_due(&mut tx, due.id, CampaignState::Draft, &reason).await?;
            tx.commit().await?;
            tracing::warn!(campaign = %due.id, %reason, "scheduled campaign not started");
            return Ok(true);
        }
        let from = [CampaignState::Scheduled];
        campaigns::transition_campaign(
            &mut *tx,
            due.tenant_id,
            due.id,
            &from,
            CampaignState::Running,
        )
        .await?;
        tx.commit().await?;
        state.fanout_wake.notify_one();
        tracing::info!(campaign = %due.id, late_ms = late.num_milliseconds(), "scheduled campaign started");
        Ok(true)
    }
}
