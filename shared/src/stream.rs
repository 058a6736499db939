//! The stream protocol (design §5): key names and the entry schema.
//!
//! A number's keys share the hash tag `{n:<number id>}` so that they live in one Redis Cluster
//! slot and one Lua script can touch them together. Every key starts with the configured
//! prefix, so several deployments (or tests) can share one Redis.
//!
//! An entry is one field, `e`, holding `message id \t campaign id \t attempt \t payload`: the
//! retry set stores the same string as its member, so moving a due retry back to the stream is
//! a copy, and the payload is the rendered Cloud API request body, so the hot path reads no
//! Postgres.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::domain::{CampaignId, MessageId, NumberId, TenantId};

/// The consumer group every number stream is read through.
pub const SENDER_GROUP: &str = "senders";
/// The consumer group of the webhook buffer.
pub const WEBHOOK_GROUP: &str = "processors";
/// The one field of a stream entry.
pub const ENTRY_FIELD: &str = "e";

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Messages ready to send for a number.
    pub fn stream(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:stream", self.prefix)
    }

    /// Delayed retries for a number; score = due time in Unix milliseconds.
    pub fn retry(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:retry", self.prefix)
    }

    /// Per campaign, the highest message id fanned out to this number's stream.
    pub fn fanout(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:fanout", self.prefix)
    }

    /// Entries of paused campaigns, set aside by the number's owner; score = message id.
    pub fn parked(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:parked", self.prefix)
    }

    /// Which sender owns a number: `<consumer>:<fencing token>`, with an expiry.
    pub fn lease(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:lease", self.prefix)
    }

    /// Ids of entries an owner read but never started when it stopped on purpose: its
    /// successor sends them at once instead of waiting for receipts that cannot come.
    pub fn handback(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:handback", self.prefix)
    }

    /// The number's fencing-token counter.
    pub fn fence(&self, number: NumberId) -> String {
        format!("{}:{{n:{number}}}:fence", self.prefix)
    }

    /// Live senders, scored by their last heartbeat (Unix ms).
    pub fn senders(&self) -> String {
        format!("{}:senders", self.prefix)
    }

    /// The set of active number ids.
    pub fn numbers(&self) -> String {
        format!("{}:numbers", self.prefix)
    }

    /// The recipients a tenant's business portfolio reached in the last 24 h, scored by when
    /// (Unix ms): its daily messaging limit counts them.
    pub fn portfolio_reached(&self, tenant: TenantId, portfolio: &str) -> String {
        format!("{}:{{portfolio:{tenant}:{portfolio}}}:reached", self.prefix)
    }

    /// Present while every number of `scope` (`app`, or `waba:<id>`) must hold its sends
    /// after a Graph rate-limit error (codes 4, 80007); its value is the Unix ms it ends at.
    pub fn scope_throttle(&self, scope: &str) -> String {
        format!("{}:throttle:{scope}", self.prefix)
    }

    /// Raw verified webhook bodies.
    pub fn webhooks(&self) -> String {
        format!("{}:webhooks", self.prefix)
    }

    /// Receipts naming a wamid no message has yet (the send not recorded yet), scored by when
    /// to try them again.
    pub fn webhooks_unmatched(&self) -> String {
        format!("{}:webhooks:unmatched", self.prefix)
    }
}

/// One message to send, as carried by a number's stream and retry set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub message: MessageId,
    pub campaign: CampaignId,
    /// Sends already tried (0 for the first).
    pub attempt: u32,
    /// The Cloud API request body, ready to POST.
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed stream entry: {0}")]
pub struct EntryError(&'static str);

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 64);
        out.extend_from_slice(self.message.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.campaign.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.attempt.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self, EntryError> {
        let mut parts = raw.splitn(4, |b| *b == b'\t');
        let mut text = |what| {
            parts
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .ok_or(EntryError(what))
        };
        let message = text("message id")?
            .parse()
            .map_err(|_| EntryError("message id"))?;
        let campaign = text("campaign id")?
            .parse()
            .map_err(|_| EntryError("campaign id"))?;
        let attempt = text("attempt")?
            .parse()
            .map_err(|_| EntryError("attempt"))?;
        let payload = parts.next().ok_or(EntryError("payload"))?;
        Ok(Self {
            message,
            campaign,
            attempt,
            payload: Bytes::copy_from_slice(payload),
        })
    }
}

/// Moves due members of a retry set to its stream, atomically.
/// KEYS: retry set, stream. ARGV: now (ms), batch size. Returns how many moved.
pub static MOVE_DUE_RETRIES: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'e', member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"#,
    )
});

/// Appends a campaign's entries to a number's stream, skipping those already appended, so that
/// fan-out can be repeated after a crash without queuing a message twice.
/// KEYS: stream, fanout hash. ARGV: campaign id, then (message id, entry) pairs in ascending
/// message id order. Returns how many were appended.
pub static FAN_OUT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local added = 0
local highest = cursor
for i = 2, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  if id > cursor then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    added = added + 1
    if id > highest then highest = id end
  end
end
if highest > cursor then redis.call('HSET', KEYS[2], ARGV[1], highest) end
return added
"#,
    )
});

/// Moves parked entries back to the stream unless their campaign is still held.
/// KEYS: parked set, stream. ARGV: the held campaign ids. Returns how many moved.
pub static UNPARK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local held = {}
for i = 1, #ARGV do held[ARGV[i]] = true end
local moved = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local campaign = string.match(member, '^[^\t]*\t([^\t]*)\t')
  if not held[campaign] then
    redis.call('XADD', KEYS[2], '*', 'e', member)
    redis.call('ZREM', KEYS[1], member)
    moved = moved + 1
  end
end
return moved
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_number_keys_share_one_hash_tag() {
        let keys = Keys::new("hx");
        let n = NumberId::new();
        let tag = format!("{{n:{n}}}");
        for key in [
            keys.stream(n),
            keys.retry(n),
            keys.fanout(n),
            keys.lease(n),
            keys.fence(n),
        ] {
            assert!(key.starts_with("hx:"));
            assert!(key.contains(&tag), "{key}");
        }
    }

    #[test]
    fn a_truncated_entry_is_an_error() {
        assert!(Entry::decode(b"12\tnot-a-uuid\t0\t{}").is_err());
        assert!(Entry::decode(b"12").is_err());
    }

    proptest! {
        #[test]
        fn entries_round_trip(id in 1i64.., attempt in 0u32..10, payload in ".*") {
            let entry = Entry {
                message: MessageId(id),
                campaign: CampaignId::new(),
                attempt,
                payload: Bytes::from(payload.into_bytes()),
            };
            prop_assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
        }
    }
}

/// Connections. A blocking read holds its connection for the whole block, so it needs one of
/// its own with no response timeout (redis-rs's default of 500 ms would cut it off);
/// everything else shares a multiplexed connection with a finite timeout.
pub mod conn {
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::streams::StreamId;
    use redis::{AsyncCommands, RedisResult};
    use secrecy::ExposeSecret;

    use crate::settings::RedisSettings;

    /// A self-reconnecting connection; `response_timeout` of `None` suits blocking reads.
    pub async fn connect(
        settings: &RedisSettings,
        response_timeout: Option<Duration>,
    ) -> RedisResult<ConnectionManager> {
        let client = redis::Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(response_timeout)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        client.get_connection_manager_with_config(config).await
    }

    /// The timeout for ordinary commands.
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

    /// Creates `group` on `stream` (and the stream) unless it exists. The group starts at the
    /// beginning, so entries added before it existed are read too.
    pub async fn ensure_group(
        conn: &mut ConnectionManager,
        stream: &str,
        group: &str,
    ) -> RedisResult<()> {
        match conn
            .xgroup_create_mkstream::<_, _, _, ()>(stream, group, "0")
            .await
        {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Whether `error` says the consumer group is gone: Redis lost its data (restarted without
    /// persistence, or failed over to an empty replica). `ensure_group` makes it again.
    pub fn group_is_gone(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| {
            cause
                .downcast_ref::<redis::RedisError>()
                .is_some_and(|e| e.code() == Some("NOGROUP"))
        })
    }

    /// The one field of a stream entry, as bytes.
    pub fn entry_field<'a>(entry: &'a StreamId, field: &str) -> Option<&'a [u8]> {
        match entry.map.get(field)? {
            redis::Value::BulkString(bytes) => Some(bytes),
            _ => None,
        }
    }
}
