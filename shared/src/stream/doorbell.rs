//! Numbers' doorbells: fan-out rings a number's when it appends to the number's stream, so
//! that the number's sender, which reads an idle stream ever less often (up to `block_ms`
//! apart), reads it at once. One stream every sender tails; a ring missed (a sender that was
//! not listening) costs only the wait for the next read.

use redis::AsyncCommands;
use redis::streams::StreamMaxlen;

use super::{Connection, Keys, RedisResult};
use crate::domain::NumberId;

/// Rings kept: only the latest matter.
const KEPT: usize = 1_000;

/// Rings `number`'s doorbell.
pub async fn ring(conn: &mut Connection, keys: &Keys, number: NumberId) -> RedisResult<()> {
    let _: String = conn
        .xadd_maxlen(
            keys.doorbells(),
            StreamMaxlen::Approx(KEPT),
            "*",
            &[("n", number.to_string())],
        )
        .await?;
    Ok(())
}

/// The numbers rung after `after` (`$` for from now on), waiting up to `block_ms` for one;
/// with the id to read after next.
pub async fn rung_after(
    conn: &mut Connection,
    keys: &Keys,
    after: &str,
    block_ms: usize,
) -> RedisResult<(Vec<NumberId>, String)> {
    let (entries, last) = super::conn::tail(conn, &keys.doorbells(), after, block_ms).await?;
    let numbers = entries
        .iter()
        .filter_map(|e| e.get::<String>("n")?.parse().ok())
        .collect();
    Ok((numbers, last))
}
