//! Who must receive nothing more, in this process's memory: every active suppression, loaded
//! from Postgres at start and then kept current from the stream of changes every writer
//! announces, so an opt-out stops sends on every sender within a second and the send path
//! asks no database. A campaign's tenant is read once per campaign.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use herald_shared::db::suppressions;
use herald_shared::domain::{CampaignId, TenantId};
use herald_shared::stream::suppressions::{self as announced, Announced};
use herald_shared::stream::{Connection, Keys};
use herald_shared::suppress;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How long a read of the changes waits for one.
const BLOCK_MS: usize = 250;

#[derive(Default)]
pub struct Suppressed {
    keys: RwLock<HashSet<(TenantId, String)>>,
    tenants: RwLock<HashMap<CampaignId, TenantId>>,
}

impl Suppressed {
    /// Whether `recipient` of `campaign` is suppressed for the campaign's tenant.
    pub async fn holds(
        &self,
        pool: &PgPool,
        campaign: CampaignId,
        recipient: &str,
    ) -> sqlx::Result<bool> {
        // Nobody suppressed: no tenant to look up, no key to build.
        if self.keys.read().expect("keys lock").is_empty() {
            return Ok(false);
        }
        let known = self
            .tenants
            .read()
            .expect("tenants lock")
            .get(&campaign)
            .copied();
        let tenant = match known {
            Some(t) => t,
            None => {
                let Some(t) = herald_shared::db::campaigns::tenant_of(pool, campaign).await? else {
                    return Ok(false);
                };
                self.tenants
                    .write()
                    .expect("tenants lock")
                    .insert(campaign, t);
                t
            }
        };
        let key = suppress::key(recipient);
        Ok(self
            .keys
            .read()
            .expect("keys lock")
            .contains(&(tenant, key)))
    }

    fn apply(&self, changes: Vec<Announced>) {
        let mut keys = self.keys.write().expect("keys lock");
        for c in changes {
            if c.active {
                keys.insert((c.tenant, c.key));
            } else {
                keys.remove(&(c.tenant, c.key));
            }
        }
    }

    /// Loads every suppression, then applies each change announced after the load, until
    /// `shutdown`. `loaded` is told once the first load is done.
    pub async fn keep_current(
        &self,
        pool: PgPool,
        mut redis: Connection,
        keys: Keys,
        loaded: tokio::sync::oneshot::Sender<()>,
        shutdown: CancellationToken,
    ) {
        let mut loaded = Some(loaded);
        let mut after: Option<String> = None;
        loop {
            let step = async {
                match &after {
                    None => {
                        // Where the changes stand first: one announced during the load is
                        // read again, which is harmless.
                        let from = announced::latest(&mut redis, &keys).await?;
                        let all = suppressions::all_active(&pool).await?;
                        *self.keys.write().expect("keys lock") = all.into_iter().collect();
                        anyhow::Ok(Some(from))
                    }
                    Some(from) => {
                        let (changes, next) =
                            announced::after(&mut redis, &keys, from, BLOCK_MS).await?;
                        self.apply(changes);
                        anyhow::Ok(Some(next))
                    }
                }
            };
            tokio::select! {
                next = step => match next {
                    Ok(next) => {
                        after = next;
                        if let Some(tell) = loaded.take() {
                            let _ = tell.send(());
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot follow suppressions; reloading");
                        after = None;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
