//! Who sends and what there is to send for: live senders scored by their last heartbeat, and
//! the set of numbers with a stream.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Connection, Keys, RedisResult};
use crate::domain::NumberId;

/// Records `consumer`'s heartbeat at `now_ms`, forgets senders silent for three `ttl`s, and
/// returns how many were heard from within one `ttl` (this one included).
pub async fn heartbeat(
    conn: &mut Connection,
    keys: &Keys,
    consumer: &str,
    now_ms: i64,
    ttl: Duration,
) -> RedisResult<usize> {
    let ttl = ttl.as_millis() as i64;
    let senders = keys.senders();
    let ((), (), live): ((), (), usize) = redis::pipe()
        .zadd(&senders, consumer, now_ms)
        .zrembyscore(&senders, "-inf", now_ms - 3 * ttl)
        .zcount(&senders, now_ms - ttl, "+inf")
        .query_async(conn)
        .await?;
    Ok(live)
}

/// Takes `consumer` out of the live senders (it is stopping).
pub async fn leave(conn: &mut Connection, keys: &Keys, consumer: &str) -> RedisResult<()> {
    conn.zrem(keys.senders(), consumer).await
}

/// Lists `number` among the numbers senders look after; listing it again is harmless.
pub async fn add_number(conn: &mut Connection, keys: &Keys, number: NumberId) -> RedisResult<()> {
    conn.sadd(keys.numbers(), number.to_string()).await
}

/// Every listed number.
pub async fn numbers(conn: &mut Connection, keys: &Keys) -> RedisResult<Vec<NumberId>> {
    let members: Vec<String> = conn.smembers(keys.numbers()).await?;
    Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
}
