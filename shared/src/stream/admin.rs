//! Checks and clean-up for the demo and the tests.

use redis::AsyncCommands;

use super::{Connection, RedisResult};

/// Whether Redis answers.
pub async fn ping(conn: &mut Connection) -> RedisResult<()> {
    let _: String = redis::cmd("PING").query_async(conn).await?;
    Ok(())
}

/// Deletes every key under `prefix` (`<prefix>:*`); returns how many.
pub async fn delete_prefixed(conn: &mut Connection, prefix: &str) -> RedisResult<usize> {
    let pattern = format!("{prefix}:*");
    let keys: Vec<String> = match conn {
        // KEYS goes to every master and the answers are combined (a SCAN cursor is per node).
        Connection::Cluster(_) => conn.keys(&pattern).await?,
        Connection::Standalone(_) => {
            let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key?);
            }
            keys
        }
    };
    for chunk in keys.chunks(500) {
        let _: () = conn.del(chunk).await?;
    }
    Ok(keys.len())
}
