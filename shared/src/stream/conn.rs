//! Connections. A blocking read holds its connection for the whole block, so it needs one of
//! its own with no response timeout (redis-rs's default of 500 ms would cut it off);
//! everything else shares a multiplexed connection with a finite timeout.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamId;
use secrecy::ExposeSecret;

use super::RedisResult;
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
