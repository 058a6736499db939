//! One number's queue around its stream: the retry set (due time as score), the parked set
//! (entries of paused campaigns, message id as score) and the handback set (entries an owner
//! read but never started). Every move between the stream and a set is atomic with the
//! entry's acknowledgement, so an entry is always in exactly one place.

use std::collections::HashSet;
use std::sync::Arc;

use redis::AsyncCommands;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};

use super::scripts::{MOVE_DUE_RETRIES, UNPARK};
use super::{Connection, Entry, NumberKeys, RedisResult, SENDER_GROUP};
use crate::domain::{CampaignId, MessageId};

/// Where an entry taken out of the stream waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    /// Until its campaign runs again.
    Parked,
    /// Until the Unix ms given.
    Retry { due_ms: i64 },
}

/// A number's queue, for operators (and autoscalers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    /// Entries in the stream: pending or not yet read.
    pub length: u64,
    /// Read and not yet acknowledged.
    pub pending: u64,
    /// When the oldest entry was added, Unix ms.
    pub oldest_ms: Option<i64>,
    pub retries: u64,
    pub parked: u64,
}

impl QueueGauges {
    /// Entries waiting to be read. Acknowledged entries are deleted, so the stream holds
    /// exactly what is pending or not yet read (Redis's own `lag` is unknown once entries are
    /// deleted).
    pub fn lag(&self) -> u64 {
        self.length.saturating_sub(self.pending)
    }
}

/// One number's queue; cheap to clone.
#[derive(Clone)]
pub struct NumberQueue {
    keys: Arc<NumberKeys>,
    conn: Connection,
}

impl std::fmt::Debug for NumberQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberQueue")
            .field("number", &self.keys.number)
            .finish_non_exhaustive()
    }
}

impl NumberQueue {
    pub fn new(keys: Arc<NumberKeys>, conn: Connection) -> Self {
        Self { keys, conn }
    }

    /// Moves up to `batch` retries due by `now_ms` back into the stream.
    pub async fn promote_due(&mut self, now_ms: i64, batch: usize) -> RedisResult<usize> {
        MOVE_DUE_RETRIES
            .key(&self.keys.retry)
            .key(&self.keys.stream)
            .arg(now_ms)
            .arg(batch)
            .invoke_async(&mut self.conn)
            .await
    }

    /// Moves an entry from the stream (acknowledging it) to where `aside` says.
    pub async fn set_aside(
        &mut self,
        aside: Aside,
        entry: &Entry,
        stream_id: &str,
    ) -> RedisResult<()> {
        let (set, score) = match aside {
            Aside::Parked => (self.keys.parked.clone(), entry.message.0),
            Aside::Retry { due_ms } => (self.keys.retry.clone(), due_ms),
        };
        self.ack_into(&set, &[(score, entry.encode())], &[stream_id])
            .await
    }

    /// The recorder's step for a batch of this number's outcomes, atomically: schedule the
    /// retries (`(due ms, encoded entry)`), acknowledge and delete the entries.
    pub async fn settle(&mut self, retries: &[(i64, Vec<u8>)], acks: &[String]) -> RedisResult<()> {
        let retry = self.keys.retry.clone();
        self.ack_into(&retry, retries, acks).await
    }

    /// Atomically: adds `members` (score, member) to the sorted set `set`, and acknowledges
    /// and deletes the stream entries `ids`.
    async fn ack_into<I: redis::ToRedisArgs>(
        &mut self,
        set: &str,
        members: &[(i64, Vec<u8>)],
        ids: &[I],
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (score, member) in members {
            pipe.zadd(set, member, *score).ignore();
        }
        pipe.xack(&self.keys.stream, SENDER_GROUP, ids)
            .ignore()
            .xdel(&self.keys.stream, ids)
            .ignore();
        pipe.query_async(&mut self.conn).await
    }

    /// Moves the parked entries of campaigns not in `held` back into the stream.
    pub async fn unpark(&mut self, held: &[CampaignId]) -> RedisResult<usize> {
        let parked: usize = self.conn.zcard(&self.keys.parked).await?;
        if parked == 0 {
            return Ok(0);
        }
        let mut script = UNPARK.key(&self.keys.parked);
        script.key(&self.keys.stream);
        for campaign in held {
            script.arg(campaign.to_string());
        }
        script.invoke_async(&mut self.conn).await
    }

    /// Lists entries read and never started, for the number's next owner.
    pub async fn hand_back(&mut self, ids: &[&str]) -> RedisResult<()> {
        self.conn.sadd(&self.keys.handback, ids).await
    }

    /// What the last owner handed back, emptying the set.
    pub async fn take_handback(&mut self) -> RedisResult<HashSet<String>> {
        let (ids, ()): (HashSet<String>, ()) = redis::pipe()
            .atomic()
            .smembers(&self.keys.handback)
            .del(&self.keys.handback)
            .query_async(&mut self.conn)
            .await?;
        Ok(ids)
    }

    /// The messages of `campaign` the queue holds anywhere (its stream, read or not, its retry
    /// and parked sets), read at one instant.
    pub async fn held_messages(&mut self, campaign: CampaignId) -> RedisResult<HashSet<MessageId>> {
        let keys = &self.keys;
        let (stream, retries, parked): (StreamRangeReply, Vec<Vec<u8>>, Vec<Vec<u8>>) =
            redis::pipe()
                .atomic()
                .xrange_all(&keys.stream)
                .zrange(&keys.retry, 0, -1)
                .zrange(&keys.parked, 0, -1)
                .query_async(&mut self.conn)
                .await?;
        let in_stream = stream
            .ids
            .iter()
            .filter_map(|e| super::conn::entry_field(e, super::ENTRY_FIELD));
        let aside = retries.iter().chain(&parked).map(Vec::as_slice);
        Ok(in_stream
            .chain(aside)
            .filter_map(|raw| Entry::decode(raw).ok())
            .filter(|entry| entry.campaign == campaign)
            .map(|entry| entry.message)
            .collect())
    }

    pub async fn gauges(&mut self) -> RedisResult<QueueGauges> {
        let keys = &self.keys;
        let (length, oldest, retries, parked): (u64, StreamRangeReply, u64, u64) = redis::pipe()
            .xlen(&keys.stream)
            .xrange_count(&keys.stream, "-", "+", 1)
            .zcard(&keys.retry)
            .zcard(&keys.parked)
            .query_async(&mut self.conn)
            .await?;
        // A number that never had a stream has no group to ask (XINFO fails on a missing
        // key); an empty stream has nothing pending either.
        let pending = if length == 0 {
            0
        } else {
            let groups: StreamInfoGroupsReply = self.conn.xinfo_groups(&keys.stream).await?;
            groups
                .groups
                .iter()
                .find(|g| g.name == SENDER_GROUP)
                .map_or(0, |g| g.pending as u64)
        };
        let oldest_ms = oldest
            .ids
            .first()
            .and_then(|e| e.id.split_once('-')?.0.parse::<i64>().ok());
        Ok(QueueGauges {
            length,
            pending,
            oldest_ms,
            retries,
            parked,
        })
    }
}
