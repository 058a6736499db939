//! A business portfolio's daily messaging limit (design §6, reference §3.3): unique recipients
//! per rolling 24 h, shared by every number of the portfolio. Before a send to a recipient the
//! portfolio has not reached in the window, the recipient is counted in a Redis sorted set
//! (member: recipient, score: when); at the limit, the message waits, unspent, in its number's
//! retry set until the oldest recipient leaves the window. A recipient already reached costs
//! nothing more. Counting happens before the send, so a send that then fails still counts:
//! the limit is never overrun, at worst under-used.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Deserialize;

/// KEYS: the portfolio's reached set. ARGV: now (Unix ms), window ms, limit, recipient.
/// Returns 0 when the send may go (the recipient is now counted), else the ms until a place
/// frees up.
const ADMIT: &str = r"
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
    return 0
end
if redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], window)
    return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
";

/// The limit a number sends under.
#[derive(Debug, Clone)]
pub struct DailyCap {
    /// The portfolio's reached set (`Keys::portfolio_reached`).
    pub key: String,
    pub limit: u32,
    pub window: Duration,
}

impl DailyCap {
    /// Counts the recipient of `payload` (a Cloud API message body); `Some(wait)` when the
    /// portfolio is at its limit and the message must wait that long.
    pub async fn admit(
        &self,
        redis: &mut ConnectionManager,
        payload: &[u8],
    ) -> anyhow::Result<Option<Duration>> {
        #[derive(Deserialize)]
        struct Recipient<'a> {
            to: &'a str,
        }
        let Ok(recipient) = serde_json::from_slice::<Recipient>(payload) else {
            // Herald built every payload with a recipient; should one lack it, the Cloud API
            // refuses it, and nothing here should hold it.
            return Ok(None);
        };
        let wait: u64 = redis::Script::new(ADMIT)
            .key(&self.key)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(self.window.as_millis() as u64)
            .arg(self.limit)
            .arg(recipient.to)
            .invoke_async(redis)
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }
}
