//! Reading a stream through a consumer group: the sender's number streams and the webhook
//! buffer share this. An entry stays in the group's pending list from its read until it is
//! acknowledged, which also deletes it: an acknowledged entry is never read again, and the
//! stream would otherwise keep everything ever written to it.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions};
use tokio::sync::Notify;

use super::{Connection, ENTRY_FIELD, RedisResult, conn};
use crate::settings::RedisSettings;

/// An entry read from a stream: its id and its one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub id: String,
    /// `None` for an entry without the field (nothing Herald wrote).
    pub body: Option<Vec<u8>>,
}

impl From<StreamId> for Read {
    fn from(mut raw: StreamId) -> Self {
        let body = match raw.map.remove(ENTRY_FIELD) {
            Some(redis::Value::BulkString(bytes)) => Some(bytes),
            _ => None,
        };
        Self { id: raw.id, body }
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream, taken out of it as they are.
/// redis-rs's `StreamReadReply` copies the whole reply (to try a second format when the first
/// does not fit) and makes two maps of every entry: copies and allocations a sender reading
/// hundreds of entries of a few hundred bytes at a time pays on every read.
fn reads_of(reply: redis::Value) -> RedisResult<Vec<Read>> {
    use redis::Value;
    let unexpected = |what: &str| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected stream read reply",
            what.to_owned(),
        ))
    };
    // [[stream, entries]] (RESP2) or {stream: entries} (RESP3), or nothing.
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(pair) => pair
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| unexpected("a stream without entries")),
                _ => Err(unexpected("a stream that is not a pair")),
            })
            .collect::<RedisResult<Vec<_>>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => return Err(unexpected("not a list of streams")),
    };
    let mut read = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            return Err(unexpected("entries that are not a list"));
        };
        read.reserve(entries.len());
        for entry in entries {
            // [id, [field, value, ...]]; the fields are nil for an entry deleted meanwhile.
            let Value::Array(entry) = entry else {
                return Err(unexpected("an entry that is not a pair"));
            };
            let mut parts = entry.into_iter();
            let id = match parts.next() {
                Some(Value::BulkString(id)) => {
                    String::from_utf8(id).map_err(|_| unexpected("an entry id that is not text"))?
                }
                Some(Value::SimpleString(id)) => id,
                _ => return Err(unexpected("an entry without an id")),
            };
            let mut body = None;
            if let Some(Value::Array(fields)) = parts.next() {
                let mut fields = fields.into_iter();
                while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                    let named = match &name {
                        Value::BulkString(n) => n.as_slice() == ENTRY_FIELD.as_bytes(),
                        Value::SimpleString(n) => n == ENTRY_FIELD,
                        _ => false,
                    };
                    if let (true, Value::BulkString(bytes)) = (named, value) {
                        body = Some(bytes);
                    }
                }
            }
            read.push(Read { id, body });
        }
    }
    Ok(read)
}

/// One consumer of one stream's group.
pub struct GroupReader {
    stream: String,
    group: &'static str,
    consumer: String,
    waiting: Waiting,
    commands: Connection,
}

/// How a reader waits for entries when there are none.
enum Waiting {
    /// Blocking reads, on a connection of their own with no response timeout: for a stream
    /// read by a few consumers (the webhook buffer).
    Blocking(Connection),
    /// Reads that never block, on the shared connection, and a pause after each empty one,
    /// twice as long as the last up to the read's block time, cut short by `bell`: for the
    /// number streams, so that a sender holds a few connections however many numbers it owns.
    Polling { idle: Duration, bell: Arc<Notify> },
}

/// The first pause after an empty read of a polling reader.
const FIRST_IDLE: Duration = Duration::from_millis(5);

impl GroupReader {
    /// A reader with a blocking connection of its own; makes the group unless it exists.
    pub async fn new(
        settings: &RedisSettings,
        commands: Connection,
        stream: String,
        group: &'static str,
        consumer: String,
    ) -> RedisResult<Self> {
        let reads = conn::connect(settings, None).await?;
        Self::with(commands, stream, group, consumer, Waiting::Blocking(reads)).await
    }

    /// A polling reader on `commands` (see `Waiting::Polling`); makes the group unless it
    /// exists.
    pub async fn polling(
        commands: Connection,
        stream: String,
        group: &'static str,
        consumer: String,
    ) -> RedisResult<Self> {
        let waiting = Waiting::Polling {
            idle: Duration::ZERO,
            bell: Arc::default(),
        };
        Self::with(commands, stream, group, consumer, waiting).await
    }

    async fn with(
        commands: Connection,
        stream: String,
        group: &'static str,
        consumer: String,
        waiting: Waiting,
    ) -> RedisResult<Self> {
        let mut reader = Self {
            stream,
            group,
            consumer,
            waiting,
            commands,
        };
        reader.ensure_group().await?;
        Ok(reader)
    }

    /// For a polling reader: a pause after an empty read ends when `bell` is notified (the
    /// stream's doorbell, see `stream::doorbell`).
    pub fn wake_on(&mut self, rung: Arc<Notify>) {
        if let Waiting::Polling { bell, .. } = &mut self.waiting {
            *bell = rung;
        }
    }

    /// Makes the group again (after Redis lost its data, see `conn::group_is_gone`).
    pub async fn ensure_group(&mut self) -> RedisResult<()> {
        conn::ensure_group(&mut self.commands, &self.stream, self.group).await
    }

    /// Up to `count` entries never read by the group, waiting up to `block_ms` for the first
    /// (a polling reader: pausing up to `block_ms` after finding none).
    pub async fn read(&mut self, count: usize, block_ms: u64) -> RedisResult<Vec<Read>> {
        let options = StreamReadOptions::default()
            .group(self.group, &self.consumer)
            .count(count.max(1));
        let (connection, options) = match &mut self.waiting {
            Waiting::Blocking(reads) => (reads, options.block(block_ms as usize)),
            Waiting::Polling { .. } => (&mut self.commands, options),
        };
        let reply: redis::Value = connection
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        let read = reads_of(reply)?;
        if let Waiting::Polling { idle, bell } = &mut self.waiting {
            if read.is_empty() {
                *idle = (*idle * 2)
                    .max(FIRST_IDLE)
                    .min(Duration::from_millis(block_ms));
                tokio::select! {
                    _ = tokio::time::sleep(*idle) => {}
                    _ = bell.notified() => *idle = Duration::ZERO,
                }
            } else {
                *idle = Duration::ZERO;
            }
        }
        Ok(read)
    }

    /// Takes over up to `count` entries pending for at least `min_idle` on any consumer.
    pub async fn claim(&mut self, min_idle: Duration, count: usize) -> RedisResult<Vec<Read>> {
        Ok(self.claim_page(min_idle, "0-0", count).await?.0)
    }

    /// Takes over every entry pending on the group, whoever read it.
    pub async fn claim_all(&mut self) -> RedisResult<Vec<Read>> {
        let mut start = "0-0".to_owned();
        let mut claimed = Vec::new();
        loop {
            let (page, next) = self.claim_page(Duration::ZERO, &start, 500).await?;
            claimed.extend(page);
            if next == "0-0" {
                return Ok(claimed);
            }
            start = next;
        }
    }

    async fn claim_page(
        &mut self,
        min_idle: Duration,
        start: &str,
        count: usize,
    ) -> RedisResult<(Vec<Read>, String)> {
        let reply: StreamAutoClaimReply = self
            .commands
            .xautoclaim_options(
                &self.stream,
                self.group,
                &self.consumer,
                min_idle.as_millis() as u64,
                start,
                StreamAutoClaimOptions::default().count(count.max(1)),
            )
            .await?;
        let page = reply.claimed.into_iter().map(Read::from).collect();
        Ok((page, reply.next_stream_id))
    }

    /// Acknowledges and deletes entries that are done with.
    pub async fn ack(&mut self, ids: &[&str]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::pipe()
            .atomic()
            .xack(&self.stream, self.group, ids)
            .ignore()
            .xdel(&self.stream, ids)
            .ignore()
            .query_async(&mut self.commands)
            .await
    }
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: Value) -> Value {
        Value::Array(vec![bulk(id), fields])
    }

    #[test]
    fn a_read_reply_gives_each_entry_its_id_and_its_one_field() {
        let entries = Value::Array(vec![
            entry("1-0", Value::Array(vec![bulk("e"), bulk("first")])),
            // Written by something else than Herald: no `e` field.
            entry("2-0", Value::Array(vec![bulk("x"), bulk("other")])),
            // Deleted while pending.
            entry("3-0", Value::Nil),
            entry(
                "4-0",
                Value::Array(vec![bulk("x"), bulk("y"), bulk("e"), bulk("last")]),
            ),
        ]);
        let expected = vec![
            Read {
                id: "1-0".into(),
                body: Some(b"first".to_vec()),
            },
            Read {
                id: "2-0".into(),
                body: None,
            },
            Read {
                id: "3-0".into(),
                body: None,
            },
            Read {
                id: "4-0".into(),
                body: Some(b"last".to_vec()),
            },
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]);
        assert_eq!(reads_of(resp2).unwrap(), expected);
        let resp3 = Value::Map(vec![(bulk("s"), entries)]);
        assert_eq!(reads_of(resp3).unwrap(), expected);
        assert_eq!(reads_of(Value::Nil).unwrap(), vec![]);
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error_not_an_empty_read() {
        for reply in [
            Value::Int(3),
            Value::Array(vec![Value::Int(3)]),
            Value::Array(vec![Value::Array(vec![bulk("s"), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                bulk("s"),
                Value::Array(vec![Value::Int(1)]),
            ])]),
        ] {
            assert!(reads_of(reply).is_err());
        }
    }
}
