//! A number's lease in Redis: a string `<owner>:<fence>` with an expiry, taken only when free
//! with a fresh fencing token from the number's counter, renewed and dropped only by its
//! holder (compare-and-set scripts). The sender's `Lease` keeps the local deadline.

use std::time::Duration;

use super::scripts::{LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RENEW};
use super::{Connection, NumberKeys, RedisResult};

/// Takes the number's lease for `owner` if it is free: the new fencing token, or `None`.
pub async fn acquire(
    conn: &mut Connection,
    keys: &NumberKeys,
    owner: &str,
    ttl: Duration,
) -> RedisResult<Option<i64>> {
    let fence: i64 = LEASE_ACQUIRE
        .key(&keys.lease)
        .key(&keys.fence)
        .arg(owner)
        .arg(ttl.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok((fence != 0).then_some(fence))
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
