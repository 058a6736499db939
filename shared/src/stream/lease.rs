//! A number's lease in Redis: a string `<owner>:<fence>` with an expiry, taken only when free
//! with a fresh fencing token from the number's counter, renewed and dropped only by its
//! holder (compare-and-set scripts). The sender's `Lease` keeps the local deadline.

use std::time::Duration;

use super::scripts::{LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RENEW};
use super::{Connection, NumberKeys, RedisResult};

/// What taking a lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Taken, with this fencing token.
    Taken(i64),
    /// Another holds it.
    Held,
    /// The number's token counter is gone (never made, or Redis lost its data): ask again with
    /// the highest token Postgres has seen, so that tokens keep rising.
    NeedsFloor,
}

/// Takes the number's lease for `owner` if it is free, with a token above `floor` (the highest
/// Postgres has seen; `None` when not read).
pub async fn acquire(
    conn: &mut Connection,
    keys: &NumberKeys,
    owner: &str,
    ttl: Duration,
    floor: Option<i64>,
) -> RedisResult<Acquired> {
    let fence: i64 = LEASE_ACQUIRE
        .key(&keys.lease)
        .key(&keys.fence)
        .arg(owner)
        .arg(ttl.as_millis() as u64)
        .arg(floor.map_or(-1, |f| f.max(0)))
        .invoke_async(conn)
        .await?;
    Ok(match fence {
        0 => Acquired::Held,
        f if f < 0 => Acquired::NeedsFloor,
        f => Acquired::Taken(f),
    })
}

/// Extends the lease at `key` if it still holds `value`; `false` when it does not.
pub async fn renew(
    conn: &mut Connection,
    key: &str,
    value: &str,
    ttl: Duration,
) -> RedisResult<bool> {
    let renewed: i64 = LEASE_RENEW
        .key(key)
        .arg(value)
        .arg(ttl.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(renewed == 1)
}

/// Drops the lease at `key` if it still holds `value`.
pub async fn release(conn: &mut Connection, key: &str, value: &str) -> RedisResult<()> {
    let _: i64 = LEASE_RELEASE.key(key).arg(value).invoke_async(conn).await?;
    Ok(())
}

/// Who holds the lease at `key` (the owner, without the fencing token), if anyone.
pub async fn holder(conn: &mut Connection, key: &str) -> RedisResult<Option<String>> {
    let value: Option<String> = redis::AsyncCommands::get(conn, key).await?;
    Ok(value.map(|v| {
        v.rsplit_once(':')
            .map_or(v.clone(), |(owner, _)| owner.to_owned())
    }))
}
