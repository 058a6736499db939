//! Suppression changes on their way to every sender: a stream each sender tails from where it
//! loaded Postgres's list, so that an opt-out reaches every sender's memory within a second
//! and the send path never asks Postgres.

use redis::AsyncCommands;
use redis::streams::StreamMaxlen;

use super::{Connection, Keys, RedisResult};
use crate::domain::TenantId;

/// Changes kept: a sender further behind reloads Postgres's list.
const KEPT: usize = 100_000;

/// One change: `key` (canonical) of `tenant` is suppressed (`active`) or no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub tenant: TenantId,
    pub key: String,
    pub active: bool,
}

/// Tells every sender of changes already committed to Postgres.
pub async fn announce(
    conn: &mut Connection,
    keys: &Keys,
    changes: &[Announced],
) -> RedisResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for c in changes {
        let active = if c.active { "1" } else { "0" };
        pipe.xadd_maxlen(
            keys.suppressions(),
            StreamMaxlen::Approx(KEPT),
            "*",
            &[
                ("t", c.tenant.0.to_string().as_str()),
                ("k", c.key.as_str()),
                ("a", active),
            ],
        )
        .ignore();
    }
    pipe.query_async(conn).await
}

/// The id of the latest change (`0-0` when none): where a sender that just loaded Postgres
/// starts reading.
pub async fn latest(conn: &mut Connection, keys: &Keys) -> RedisResult<String> {
    let last: redis::streams::StreamRangeReply = conn
        .xrevrange_count(keys.suppressions(), "+", "-", 1)
        .await?;
    Ok(last
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
}

/// Changes after `after`, waiting up to `block_ms` for one; with the id to read after next.
pub async fn after(
    conn: &mut Connection,
    keys: &Keys,
    after: &str,
    block_ms: usize,
) -> RedisResult<(Vec<Announced>, String)> {
    let (entries, last) = super::conn::tail(conn, &keys.suppressions(), after, block_ms).await?;
    let mut changes = Vec::new();
    for entry in entries {
        let field = |name: &str| -> Option<String> { entry.get(name) };
        let (Some(tenant), Some(key), Some(active)) = (field("t"), field("k"), field("a")) else {
            continue;
        };
        let Ok(tenant) = tenant.parse::<uuid::Uuid>() else {
            continue;
        };
        changes.push(Announced {
            tenant: TenantId(tenant),
            key,
            active: active == "1",
        });
    }
    Ok((changes, last))
}
