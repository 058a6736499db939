//! Which campaigns may not send now. Refreshed from Postgres every `REFRESH` by each sender
//! process, so a pause or a cancel takes effect on every sender within that time, and the hot
//! path reads memory, not Postgres.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use herald_shared::db::campaigns;
use herald_shared::domain::{CampaignId, CampaignState};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const REFRESH: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct HeldCampaigns {
    states: RwLock<HashMap<CampaignId, CampaignState>>,
}

impl HeldCampaigns {
    /// `Paused` or `Cancelled` for a held campaign; `None` for one that may send.
    pub fn state(&self, campaign: CampaignId) -> Option<CampaignState> {
        self.states
            .read()
            .expect("held lock")
            .get(&campaign)
            .copied()
    }

    /// The paused campaigns, whose parked entries must stay parked.
    pub fn paused(&self) -> Vec<CampaignId> {
        self.states
            .read()
            .expect("held lock")
            .iter()
            .filter(|(_, s)| **s == CampaignState::Paused)
            .map(|(c, _)| *c)
            .collect()
    }

    pub async fn refresh(&self, pool: &PgPool) -> sqlx::Result<()> {
        let fresh: HashMap<_, _> = campaigns::held_campaigns(pool).await?.into_iter().collect();
        *self.states.write().expect("held lock") = fresh;
        Ok(())
    }

    /// Refreshes until `shutdown`.
    pub async fn keep_fresh(&self, pool: PgPool, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.refresh(&pool).await {
                tracing::error!(error = %e, "cannot read paused and cancelled campaigns");
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
