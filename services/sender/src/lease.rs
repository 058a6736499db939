//! Number ownership: each number's stream is read by one sender at a time, under a lease.
//!
//! Invariants: a lease is a Redis string `<consumer>:<fence>` with an expiry, taken with
//! `SET NX` and a fresh fencing token from the number's counter, renewed and released only by
//! its holder (compare-and-set scripts). The holder's worker may start a send only while its
//! local deadline — the last successful renewal plus the TTL minus a safety margin, measured
//! on this process's monotonic clock — has not passed, so a sender that stalls, loses Redis or
//! loses its lease stops before its next send, before anyone else can take the number over.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_shared::domain::NumberId;
use herald_shared::stream::Keys;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

/// Takes a free lease. KEYS: lease, fence. ARGV: owner, ttl ms. Returns the fencing token, or
/// 0 when the lease is held.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
"#,
    )
});

/// Extends a lease its holder still has. KEYS: lease. ARGV: value, ttl ms. Returns 1 or 0.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#,
    )
});

/// Drops a lease its holder still has. KEYS: lease. ARGV: value.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// A held lease, shared by the supervisor (which renews it) and the worker (which checks it
/// before each send).
#[derive(Debug)]
pub struct Lease {
    /// The fencing token: higher for every new holder of the number.
    pub fence: i64,
    key: String,
    value: String,
    ttl: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` until which sends may start; 0 once lost or released.
    valid_until_ms: AtomicU64,
}

impl Lease {
    /// Tries to take `number`'s lease for `owner`.
    pub async fn acquire(
        redis: &mut ConnectionManager,
        keys: &Keys,
        number: NumberId,
        owner: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Option<Arc<Lease>>> {
        let started = Instant::now();
        let fence: i64 = ACQUIRE
            .key(keys.lease(number))
            .key(keys.fence(number))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(redis)
            .await?;
        if fence == 0 {
            return Ok(None);
        }
        let lease = Lease {
            fence,
            key: keys.lease(number),
            value: format!("{owner}:{fence}"),
            ttl,
            epoch: started,
            valid_until_ms: AtomicU64::new(0),
        };
        lease.extend_from(started);
        Ok(Some(Arc::new(lease)))
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
        let now = Instant::now().duration_since(self.epoch).as_millis() as u64;
        now < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Stops sends at once (lost, or being released).
    pub fn invalidate(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// Extends the lease; `Ok(false)` when it is no longer ours.
    pub async fn renew(&self, redis: &mut ConnectionManager) -> redis::RedisResult<bool> {
        let sent = Instant::now();
        let renewed: i64 = RENEW
            .key(&self.key)
            .arg(&self.value)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(redis)
            .await?;
        if renewed == 1 && self.valid_until_ms.load(Ordering::Acquire) != 0 {
            self.extend_from(sent);
            Ok(true)
        } else {
            self.invalidate();
            Ok(false)
        }
    }

    /// Gives the lease up so another sender can take the number at once.
    pub async fn release(&self, redis: &mut ConnectionManager) -> redis::RedisResult<()> {
        self.invalidate();
        let _: i64 = RELEASE
            .key(&self.key)
            .arg(&self.value)
            .invoke_async(redis)
            .await?;
        Ok(())
    }
}
