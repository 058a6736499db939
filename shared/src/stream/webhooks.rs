//! The webhook buffer (verified bodies, read by the processors through `GroupReader`) and the
//! receipts held because no message has their wamid yet, scored by when to try them again.

use redis::AsyncCommands;

use super::{Connection, ENTRY_FIELD, Keys, RedisResult};

/// Buffers a verified body; returns its entry id.
pub async fn buffer(conn: &mut Connection, keys: &Keys, body: &[u8]) -> RedisResult<String> {
    conn.xadd(keys.webhooks(), "*", &[(ENTRY_FIELD, body)])
        .await
}

/// Bodies buffered and not yet acknowledged.
pub async fn buffered(conn: &mut Connection, keys: &Keys) -> RedisResult<u64> {
    conn.xlen(keys.webhooks()).await
}

/// Holds receipts (serialised) until `due_ms`.
pub async fn hold(
    conn: &mut Connection,
    keys: &Keys,
    receipts: &[String],
    due_ms: i64,
) -> RedisResult<()> {
    if receipts.is_empty() {
        return Ok(());
    }
    let items: Vec<(i64, &String)> = receipts.iter().map(|r| (due_ms, r)).collect();
    conn.zadd_multiple(keys.webhooks_unmatched(), &items).await
}

/// Up to `limit` held receipts due by `now_ms`.
pub async fn due(
    conn: &mut Connection,
    keys: &Keys,
    now_ms: i64,
    limit: isize,
) -> RedisResult<Vec<String>> {
    conn.zrangebyscore_limit(keys.webhooks_unmatched(), "-inf", now_ms, 0, limit)
        .await
}

/// Drops the receipts of `done` and holds those of `later` until `later_ms`, atomically.
pub async fn settle(
    conn: &mut Connection,
    keys: &Keys,
    done: &[&String],
    later: &[&String],
    later_ms: i64,
) -> RedisResult<()> {
    let key = keys.webhooks_unmatched();
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !done.is_empty() {
        pipe.zrem(&key, done).ignore();
    }
    for member in later {
        pipe.zadd(&key, *member, later_ms).ignore();
    }
    pipe.query_async(conn).await
}
