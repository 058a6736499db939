//! Finds the numbers to send for, takes leases on this sender's share of them, and runs one
//! worker per leased number.
//!
//! Balancing: every sender heartbeats into a registry; each takes at most
//! ⌈numbers ÷ live senders⌉ numbers, so a sender that joins makes the others give numbers up
//! (they drain, then release), and the numbers of one that leaves or dies are taken by the
//! rest once its leases are released or expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_shared::crypto::TokenCipher;
use herald_shared::db::numbers;
use herald_shared::domain::{NumberId, NumberState};
use herald_shared::settings::Settings;
use herald_shared::stream::holds::DailyLimit;
use herald_shared::stream::{Connection, Keys, registry};
use herald_shared::tasks::Tasks;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::scope::NumberScopes;
use crate::worker::{NumberWorker, Shared, WorkerConfig};

pub struct Supervisor {
    settings: Settings,
    redis: Connection,
    /// Its own connection: reading the suppression changes blocks.
    follower: Connection,
    /// Its own connection too: reading fan-out's doorbells blocks.
    doorbells: Connection,
    keys: Keys,
    cipher: TokenCipher,
    consumer: String,
    ttl: Duration,
    /// What every worker shares.
    shared: Shared,
}

/// A number this sender holds.
struct Owned {
    lease: Arc<Lease>,
    stop: CancellationToken,
    /// The number's row as the worker read it; a newer one (a new token) restarts the worker.
    version: chrono::DateTime<chrono::Utc>,
}

impl Supervisor {
    pub fn new(
        settings: Settings,
        redis: Connection,
        follower: Connection,
        doorbells: Connection,
        keys: Keys,
        shared: Shared,
    ) -> anyhow::Result<Self> {
        let cipher = TokenCipher::from_base64(&settings.security.token_encryption_key)?;
        let ttl = Duration::from_millis(settings.sender.lease_ttl_ms.max(300));
        let consumer = if settings.sender.consumer.is_empty() {
            format!("sender-{}", uuid::Uuid::new_v4().simple())
        } else {
            settings.sender.consumer.clone()
        };
        Ok(Self {
            settings,
            redis,
            follower,
            doorbells,
            keys,
            cipher,
            consumer,
            ttl,
            shared,
        })
    }

    /// Holds and works this sender's share of the numbers until `shutdown`; then stops every
    /// worker, waits for their sends in flight and releases the leases.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tick = (self.ttl / 3).min(Duration::from_millis(
            self.settings.sender.discovery_interval_ms.max(50),
        ));
        let mut owned: HashMap<NumberId, Owned> = HashMap::new();
        let mut tasks: HashMap<tokio::task::Id, NumberId> = HashMap::new();
        let mut workers = JoinSet::new();
        // Know the paused campaigns before the first send, then keep up with them.
        while let Err(e) = self.shared.held.refresh(&self.shared.pool).await {
            tracing::error!(error = %e, "cannot read paused campaigns; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        // The followers every send relies on: one that stops ends the sender, which must not
        // go on sending to people who opted out since, or for campaigns paused since.
        let mut followers = Tasks::new(shutdown.clone());
        {
            let (held, pool, stop) = (
                self.shared.held.clone(),
                self.shared.pool.clone(),
                shutdown.clone(),
            );
            followers.spawn("the follower of paused campaigns", async move {
                held.keep_fresh(pool, stop).await
            });
        }
        // Know the suppressions before the first send, then keep up with them.
        let (loaded, load) = tokio::sync::oneshot::channel();
        {
            let (suppressed, pool, redis, keys, stop) = (
                self.shared.suppressed.clone(),
                self.shared.pool.clone(),
                self.follower.clone(),
                self.keys.clone(),
                shutdown.clone(),
            );
            followers.spawn("the follower of suppressions", async move {
                suppressed
                    .keep_current(pool, redis, keys, loaded, stop)
                    .await
            });
        }
        tokio::select! {
            loaded = load => if loaded.is_err() {
                // The follower ended without loading them.
                return match shutdown.is_cancelled() {
                    true => followers.join().await,
                    false => Err(followers.ended().await),
                };
            },
            failure = followers.ended() => return Err(failure),
            _ = shutdown.cancelled() => return followers.join().await,
        }
        {
            let (scopes, redis, stop) = (
                self.shared.scopes.clone(),
                self.redis.clone(),
                shutdown.clone(),
            );
            followers.spawn("the follower of scope holds", async move {
                scopes.keep_fresh(redis, stop).await
            });
        }
        {
            let (doorbells, redis, keys, stop) = (
                self.shared.doorbells.clone(),
                self.doorbells.clone(),
                self.keys.clone(),
                shutdown.clone(),
            );
            followers.spawn("the listener for fan-out's doorbells", async move {
                doorbells.listen(redis, keys, stop).await
            });
        }
        loop {
            if let Err(e) = self
                .balance(&mut owned, &mut tasks, &mut workers, &shutdown)
                .await
            {
                tracing::error!(error = %format!("{e:#}"), "cannot balance numbers");
            }
            tokio::select! {
                // A stop comes first: a worker it ended must not be handled as drained, which
                // would let the next round lease its number again.
                biased;
                _ = shutdown.cancelled() => break,
                failure = followers.ended() => return Err(failure),
                _ = tokio::time::sleep(tick) => {}
                Some(done) = workers.join_next_with_id() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(e) => {
                            tracing::error!(error = %e, "a number worker panicked");
                            e.id()
                        }
                    };
                    if let Some(number) = tasks.remove(&task)
                        && let Some(gone) = owned.remove(&number)
                    {
                        // Drained: let another sender (or this one, later) take it at once.
                        if let Err(e) = gone.lease.release(&mut self.redis).await {
                            tracing::warn!(number = %number, error = %e, "cannot release the lease; it will expire");
                        }
                    }
                }
            }
        }
        for o in owned.values() {
            o.stop.cancel();
        }
        while workers.join_next().await.is_some() {}
        for o in owned.values() {
            let _ = o.lease.release(&mut self.redis).await;
        }
        let _ = registry::leave(&mut self.redis, &self.keys, &self.consumer).await;
        followers.join().await
    }

    /// One round: heartbeat, renew held leases, then give up or take numbers to reach this
    /// sender's share.
    async fn balance(
        &mut self,
        owned: &mut HashMap<NumberId, Owned>,
        tasks: &mut HashMap<tokio::task::Id, NumberId>,
        workers: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let now_ms = self.shared.clock.unix_ms();
        let live = registry::heartbeat(
            &mut self.redis,
            &self.keys,
            &self.consumer,
            now_ms,
            self.ttl,
        )
        .await?;

        for (number, o) in owned.iter() {
            if o.stop.is_cancelled() {
                continue;
            }
            if !o.lease.renew(&mut self.redis).await? {
                tracing::warn!(number = %number, "lease lost; stopping the number");
                o.stop.cancel();
            }
        }

        let listed = registry::numbers(&mut self.redis, &self.keys).await?;
        // Only active numbers send: a paused one keeps its queue until it resumes.
        let mut all = Vec::with_capacity(listed.len());
        for (number, state, version) in numbers::number_states(&self.shared.pool, &listed).await? {
            if state == NumberState::Active {
                all.push(number);
            }
            if let Some(o) = owned.get(&number)
                && !o.stop.is_cancelled()
                && (state != NumberState::Active || version != o.version)
            {
                tracing::warn!(number = %number, state = ?state, "number changed; restarting or stopping it");
                o.stop.cancel();
            }
        }
        let share = all.len().div_ceil(live.max(1));
        let mut working: Vec<NumberId> = owned
            .iter()
            .filter(|(_, o)| !o.stop.is_cancelled())
            .map(|(n, _)| *n)
            .collect();
        while working.len() > share {
            let number = working.pop().expect("more than the share");
            tracing::info!(number = %number, "handing the number over to another sender");
            owned[&number].stop.cancel();
        }
        // Start with a different number each round, so senders do not all race for the same.
        let offset = if all.is_empty() {
            0
        } else {
            rand::random_range(0..all.len())
        };
        all.rotate_left(offset);
        for number in all {
            // A round under way when the stop came takes nothing more.
            if working.len() >= share || shutdown.is_cancelled() {
                break;
            }
            if owned.contains_key(&number) {
                continue;
            }
            let Some(lease) = Lease::acquire(
                &mut self.redis,
                &self.shared.pool,
                &self.keys.number(number),
                &self.consumer,
                self.ttl,
                self.shared.clock,
            )
            .await?
            else {
                continue;
            };
            match self.worker(number, lease.clone()).await {
                Ok(Some((worker, version))) => {
                    let stop = shutdown.child_token();
                    let task = workers.spawn(worker.run(stop.clone()));
                    tasks.insert(task.id(), number);
                    owned.insert(
                        number,
                        Owned {
                            lease,
                            stop,
                            version,
                        },
                    );
                    working.push(number);
                }
                Ok(None) => lease.release(&mut self.redis).await?,
                Err(e) => {
                    lease.release(&mut self.redis).await?;
                    tracing::error!(number = %number, error = %format!("{e:#}"), "cannot start the number");
                }
            }
        }
        Ok(())
    }

    /// A worker for `number` and the version of the row it read, or `None` when the number is
    /// unknown here or may not send.
    async fn worker(
        &self,
        id: NumberId,
        lease: Arc<Lease>,
    ) -> anyhow::Result<Option<(NumberWorker, chrono::DateTime<chrono::Utc>)>> {
        let Some(row) = numbers::get_number(&self.shared.pool, id).await? else {
            tracing::warn!(number = %id, "number in the active set is not in the database");
            return Ok(None);
        };
        if row.state != NumberState::Active {
            return Ok(None);
        }
        let token = self.cipher.decrypt(&row.access_token, id.0.as_bytes())?;
        let s = &self.settings.sender;
        let fence = lease.fence;
        let worker = NumberWorker::new(
            WorkerConfig {
                number: id,
                version: row.updated_at,
                phone_number_id: row.phone_number_id,
                scopes: NumberScopes::new(row.tenant_id, &row.waba_id),
                token,
                rate: u32::try_from(row.current_rate)
                    .unwrap_or(s.default_rate)
                    .max(1),
                ceiling: u32::try_from(row.throughput_ceiling).unwrap_or(80).max(1),
                pacing: s.pacing.clone(),
                in_flight: s.in_flight,
                read_count: s.read_count,
                block_ms: s.block_ms.min(self.ttl.as_millis() as u64 / 3),
                retry_poll: Duration::from_millis(s.retry_poll_ms),
                reconciliation_window: Duration::from_millis(s.reconciliation_window_ms),
                consumer: self.consumer.clone(),
                scope_throttle: Duration::from_millis(s.scope_throttle_ms),
                daily_cap: match (&row.portfolio_id, row.daily_recipient_limit) {
                    (Some(portfolio), Some(limit)) => Some(DailyLimit {
                        key: self.keys.portfolio_reached(row.tenant_id, portfolio),
                        limit: limit.max(1) as u32,
                        window: Duration::from_millis(s.daily_cap_window_ms.max(1)),
                    }),
                    _ => None,
                },
            },
            self.shared.clone(),
            lease,
            &self.keys,
            self.redis.clone(),
        )
        .await?;
        tracing::info!(number = %id, fence, rate = row.current_rate, "sending for number");
        Ok(Some((worker, row.updated_at)))
    }
}
