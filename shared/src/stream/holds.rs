//! Limits shared by every sender through Redis: app and WABA holds after a Graph rate-limit
//! error (a key per scope whose value and expiry are the hold's end), and a business
//! portfolio's daily recipient limit (a sorted set of the recipients reached, scored by when).

use std::time::Duration;

use redis::AsyncCommands;

use super::scripts::{ADMIT_RECIPIENT, EXTEND_HOLD};
use super::{Connection, RedisResult};

/// Makes the hold at `key` end at `end_ms` (Unix ms, `length` from now) unless it already
/// ends later.
pub async fn extend_hold(
    conn: &mut Connection,
    key: &str,
    end_ms: i64,
    length: Duration,
) -> RedisResult<()> {
    let _: i64 = EXTEND_HOLD
        .key(key)
        .arg(end_ms)
        .arg(length.as_millis().max(1) as u64)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// When each hold of `keys` ends (Unix ms), `None` for one not under way.
pub async fn hold_ends(conn: &mut Connection, keys: &[String]) -> RedisResult<Vec<Option<i64>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    conn.mget(keys).await
}

/// A portfolio's daily recipient limit, as one sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyLimit {
    /// The portfolio's reached set (`Keys::portfolio_reached`).
    pub key: String,
    pub limit: u32,
    pub window: Duration,
}

impl DailyLimit {
    /// Counts `recipient` at `now_ms` unless already counted in the window: `None` when the
    /// send may go, else how long until a place frees up.
    pub async fn admit(
        &self,
        conn: &mut Connection,
        now_ms: i64,
        recipient: &str,
    ) -> RedisResult<Option<Duration>> {
        let wait: u64 = ADMIT_RECIPIENT
            .key(&self.key)
            .arg(now_ms)
            .arg(self.window.as_millis() as u64)
            .arg(self.limit)
            .arg(recipient)
            .invoke_async(conn)
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }
}
