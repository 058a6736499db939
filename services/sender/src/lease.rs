//! Number ownership: each number's stream is read by one sender at a time, under a lease.
//!
//! Invariants: a lease is a Redis string `<consumer>:<fence>` with an expiry, taken with
//! `SET NX` and a fresh fencing token from the number's counter, renewed and released only by
//! its holder (compare-and-set scripts). The holder's worker may start a send only while its
//! local deadline — the last successful renewal plus the TTL minus a safety margin, measured
//! on this process's monotonic clock — has not passed, so a sender that stalls, loses Redis or
//! loses its lease stops before its next send, before anyone else can take the number over.
//! Tokens only ever rise: each one taken is recorded in Postgres, and a counter Redis lost
//! starts again above the highest recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::db::numbers;
use herald_shared::stream::lease::Acquired;
use herald_shared::stream::{Connection, NumberKeys, RedisResult, lease};
use tokio::time::Instant;

/// A held lease, shared by the supervisor (which renews it) and the worker (which checks it
/// before each send).
#[derive(Debug)]
pub struct Lease {
    /// The fencing token: higher for every new holder of the number.
    pub fence: i64,
    key: String,
    value: String,
    ttl: Duration,
    clock: Clock,
    epoch: Instant,
    /// Milliseconds after `epoch` until which sends may start; 0 once lost or released.
    valid_until_ms: AtomicU64,
}

impl Lease {
    /// Tries to take `number`'s lease for `owner`; records its token in Postgres.
    pub async fn acquire(
        redis: &mut Connection,
        pool: &sqlx::PgPool,
        keys: &NumberKeys,
        owner: &str,
        ttl: Duration,
        clock: Clock,
    ) -> anyhow::Result<Option<Arc<Lease>>> {
        let started = clock.now();
        let mut acquired = lease::acquire(redis, keys, owner, ttl, None).await?;
        if acquired == Acquired::NeedsFloor {
            let floor = numbers::fence(pool, keys.number).await?;
            acquired = lease::acquire(redis, keys, owner, ttl, Some(floor)).await?;
        }
        let Acquired::Taken(fence) = acquired else {
            return Ok(None);
        };
        let lease = Lease {
            fence,
            key: keys.lease.clone(),
            value: format!("{owner}:{fence}"),
            ttl,
            clock,
            epoch: started,
            valid_until_ms: AtomicU64::new(0),
        };
        lease.extend_from(started);
        let lease = Arc::new(lease);
        if let Err(e) = numbers::record_fence(pool, keys.number, fence).await {
            lease.release(redis).await?;
            return Err(anyhow::Error::new(e).context("recording the number's fencing token"));
        }
        Ok(Some(lease))
    }

    /// The part of the TTL kept back for clock drift and the time a renewal takes.
    fn margin(&self) -> Duration {
        self.ttl / 4
    }

    /// Records a renewal sent at `sent`: the lease is good until `sent + ttl − margin`.
    fn extend_from(&self, sent: Instant) {
        let until = (sent + self.ttl - self.margin()).duration_since(self.epoch);
        self.valid_until_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }

    /// Whether a send may start now.
    pub fn is_valid(&self) -> bool {
        let now = self.clock.now().duration_since(self.epoch).as_millis() as u64;
        now < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Stops sends at once (lost, or being released).
    pub fn invalidate(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// Extends the lease; `Ok(false)` when it is no longer ours.
    pub async fn renew(&self, redis: &mut Connection) -> RedisResult<bool> {
        let sent = self.clock.now();
        let renewed = lease::renew(redis, &self.key, &self.value, self.ttl).await?;
        if renewed && self.valid_until_ms.load(Ordering::Acquire) != 0 {
            self.extend_from(sent);
            Ok(true)
        } else {
            self.invalidate();
            Ok(false)
        }
    }

    /// Gives the lease up so another sender can take the number at once.
    pub async fn release(&self, redis: &mut Connection) -> RedisResult<()> {
        self.invalidate();
        lease::release(redis, &self.key, &self.value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_may_start_until_the_ttl_less_its_margin_after_the_renewal_was_sent() {
        let clock = Clock::driven(0);
        let lease = Lease {
            fence: 1,
            key: "lease".into(),
            value: "sender:1".into(),
            ttl: Duration::from_millis(1000),
            clock,
            epoch: clock.now(),
            valid_until_ms: AtomicU64::new(0),
        };
        assert!(!lease.is_valid(), "not before it is taken");
        lease.extend_from(clock.now());
        tokio::time::advance(Duration::from_millis(749)).await;
        assert!(lease.is_valid());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!lease.is_valid(), "the margin is a quarter of the TTL");
        // A renewal counts from when it was sent, not from when its answer came.
        let sent = clock.now();
        tokio::time::advance(Duration::from_millis(300)).await;
        lease.extend_from(sent);
        tokio::time::advance(Duration::from_millis(449)).await;
        assert!(lease.is_valid());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!lease.is_valid());
        lease.extend_from(clock.now());
        lease.invalidate();
        assert!(!lease.is_valid(), "a lost lease stops sends at once");
    }
}
