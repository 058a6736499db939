//! Connections, to a standalone Redis or a Redis Cluster, in plain TCP or TLS. A blocking read
//! holds its connection for the whole block, so it needs one of its own with no response
//! timeout (redis-rs's default of 500 ms would cut it off); everything else shares a
//! multiplexed connection with a finite timeout.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use super::RedisResult;
use crate::settings::RedisSettings;

/// A self-reconnecting connection: to one Redis, or to a cluster (each command goes to the
/// node owning its key; a number's keys share a hash slot).
#[derive(Clone)]
pub enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A self-reconnecting connection; `response_timeout` of `None` suits blocking reads.
pub async fn connect(
    settings: &RedisSettings,
    response_timeout: Option<Duration>,
) -> RedisResult<Connection> {
    let certificates = certificates(settings)?;
    let urls = settings.urls();
    if settings.is_cluster() {
        let mut builder = ClusterClient::builder(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            // A cluster connection has no "no timeout": a day is as good for a blocking read.
            .response_timeout(response_timeout.unwrap_or(Duration::from_secs(86_400)))
            .retries(2);
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        let client = builder.build()?;
        return Ok(Connection::Cluster(client.get_async_connection().await?));
    }
    let url = urls.first().copied().unwrap_or_default();
    let client = match certificates {
        Some(certificates) => redis::Client::build_with_tls(url, certificates)?,
        None => redis::Client::open(url)?,
    };
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(response_timeout)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    Ok(Connection::Standalone(
        client.get_connection_manager_with_config(config).await?,
    ))
}

/// The certificate authority `redis.ca_file` names, if any.
fn certificates(settings: &RedisSettings) -> RedisResult<Option<TlsCertificates>> {
    if settings.ca_file.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(&settings.ca_file).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Io,
            "cannot read redis.ca_file",
            format!("{}: {e}", settings.ca_file),
        ))
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// The timeout for ordinary commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates `group` on `stream` (and the stream) unless it exists. The group starts at the
/// beginning, so entries added before it existed are read too.
pub async fn ensure_group(conn: &mut Connection, stream: &str, group: &str) -> RedisResult<()> {
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

/// The entries of `stream` after `after` (`$`: from now on), at most 1,000, waiting up to
/// `block_ms` for one (on a connection whose reads may block); with the id to read after next.
pub async fn tail(
    conn: &mut Connection,
    stream: &str,
    after: &str,
    block_ms: usize,
) -> RedisResult<(Vec<StreamId>, String)> {
    let options = StreamReadOptions::default().block(block_ms).count(1000);
    let reply: Option<StreamReadReply> = conn.xread_options(&[stream], &[after], &options).await?;
    let entries: Vec<StreamId> = reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect();
    let last = entries
        .last()
        .map_or_else(|| after.to_owned(), |e| e.id.clone());
    Ok((entries, last))
}

/// The one field of a stream entry, as bytes.
pub fn entry_field<'a>(entry: &'a StreamId, field: &str) -> Option<&'a [u8]> {
    match entry.map.get(field)? {
        redis::Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}
