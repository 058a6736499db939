//! The transition engine: the one way message statuses move, with their campaigns' counters.
//!
//! Lock order (why no two writers can deadlock): within a transaction, every message row is
//! locked before any campaign row; message rows are locked in id order by the transaction's
//! first statement that touches them (`Engine::record_sent` locks the whole batch it is given,
//! `Engine::apply` the rows it changes); campaigns are locked once, all together and in id
//! order, by `Engine::finish` (the SQL function `apply_campaign_deltas`). A statement that
//! changes a campaign's state after that (a pause) touches only campaigns it locked. Rows that
//! reference a campaign (a reply, an event) take a key-share lock on it whenever they are
//! written; the counters' lock (`FOR NO KEY UPDATE`) does not wait for those.
//!
//! Lanes (`campaign_numbers`, which say how far fan-out appended, and so whether a `pending`
//! row is `queued`) are read under a share lock by whoever moves a `pending` row; the one
//! writer that takes them exclusively while messages move (`record_fanout_page`) holds no
//! message row and locks its campaign after, so a lane is never part of a cycle.
//!
//! Statuses only move forward (the Postgres function `message_status_advances`); timestamps
//! and Meta's ids are recorded even when the status does not move (a late `sent` after a
//! `delivered`); counters move by exactly the transitions that happened.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::db::counters::{self, Deltas, Row};
use crate::domain::{CampaignId, MessageId, MessageStatus, NumberId};

/// Which message a transition is about: Herald's id when known (our own results, or a
/// receipt carrying `biz_opaque_callback_data`), else Meta's wamid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageRef {
    Id(MessageId),
    WaId(String),
}

/// A status a message should move to, with what came with it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub message: MessageRef,
    pub status: MessageStatus,
    /// Meta's id for a message named by `MessageRef::Id`, recorded in `message_wamids` (a
    /// resent message may have more than one).
    pub wa_message_id: Option<String>,
    pub at: DateTime<Utc>,
    pub error_code: Option<i32>,
    pub error_title: Option<String>,
    /// Added to `attempts` (1 for a send Herald made, 0 for a receipt).
    pub attempts: i32,
    /// For a receipt: the business `phone_number_id` Meta sent it for. It applies only to a
    /// message sent from that number, so that another sender on the same Meta app cannot move
    /// a tenant's statuses by naming its message ids.
    pub number: Option<String>,
}

impl Transition {
    /// A move Herald decides itself (no wamid, no error, no attempt).
    pub fn to(message: MessageId, status: MessageStatus, at: DateTime<Utc>) -> Self {
        Self {
            message: MessageRef::Id(message),
            status,
            wa_message_id: None,
            at,
            error_code: None,
            error_title: None,
            attempts: 0,
            number: None,
        }
    }

    /// A send that failed for good.
    pub fn failed(message: MessageId, code: i32, title: String, at: DateTime<Utc>) -> Self {
        Self {
            error_code: Some(code),
            error_title: Some(title),
            attempts: 1,
            ..Self::to(message, MessageStatus::Failed, at)
        }
    }

    /// A send that will be tried again: one attempt more, still `queued`.
    pub fn retried(message: MessageId, at: DateTime<Utc>) -> Self {
        Self {
            attempts: 1,
            ..Self::to(message, MessageStatus::Queued, at)
        }
    }

    /// A status Meta reported for a message (its error, if any, set by the caller).
    pub fn receipt(
        message: MessageRef,
        status: MessageStatus,
        wa_message_id: String,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            message,
            status,
            wa_message_id: Some(wa_message_id),
            at,
            error_code: None,
            error_title: None,
            attempts: 0,
            number: None,
        }
    }
}

/// A send Meta accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: MessageId,
    pub wa_message_id: String,
    pub at: DateTime<Utc>,
}

impl From<Sent> for Transition {
    fn from(sent: Sent) -> Self {
        Transition {
            wa_message_id: Some(sent.wa_message_id),
            attempts: 1,
            ..Transition::to(sent.message, MessageStatus::Sent, sent.at)
        }
    }
}

/// What a batch of transitions did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Messages whose status changed.
    pub changed: i64,
    /// Transitions whose message was not found.
    pub unmatched: i64,
    /// The wamids of those named by wamid (`MessageRef::WaId`): perhaps receipts that came
    /// before the sender recorded the send.
    pub unmatched_wamids: Vec<String>,
    /// Receipts for a message that another number sent: ignored.
    pub foreign: i64,
}

/// What `APPLY` answers.
#[derive(sqlx::FromRow)]
struct ApplyOutcome {
    changed: i64,
    unmatched: i64,
    unmatched_wamids: Vec<String>,
    foreign: i64,
    deltas: sqlx::types::Json<Vec<Row>>,
    /// The messages that failed, as JSON rows; null when none did.
    failures: Option<sqlx::types::Json<Vec<serde_json::Value>>>,
}

/// One transaction's changes to messages and campaigns, in the lock order above.
#[derive(Debug, Default)]
pub struct Engine {
    deltas: Deltas,
    /// The messages that failed, as JSON rows for `message.failed` events.
    failures: Vec<serde_json::Value>,
}

impl Engine {
    /// The recorder's common case, lean: moves still-`queued` (or still-`pending`, when the
    /// fan-out's page is not recorded yet) messages to `sent` with one attempt more and
    /// records their wamids. It first locks, in id order, the messages of `sent` and those of
    /// `also`: the rest of the batch, for `apply` in the same transaction. Returns the sends it
    /// did not record (their message had moved on: a receipt got there first), for `apply`.
    pub async fn record_sent(
        &mut self,
        conn: &mut PgConnection,
        sent: &[Sent],
        also: &[MessageId],
    ) -> sqlx::Result<Vec<Sent>> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let mut locks: Vec<i64> = sent.iter().map(|s| s.message.0).collect();
        locks.extend(also.iter().map(|m| m.0));
        locks.sort_unstable();
        locks.dedup();
        let ids: Vec<i64> = sent.iter().map(|s| s.message.0).collect();
        let wa_ids: Vec<&str> = sent.iter().map(|s| s.wa_message_id.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = sent.iter().map(|s| s.at).collect();
        let moved: Vec<(i64, CampaignId, NumberId, MessageStatus)> = sqlx::query_as(RECORD_SENT)
            .bind(locks)
            .bind(ids)
            .bind(wa_ids)
            .bind(ats)
            .fetch_all(&mut *conn)
            .await?;
        let mut recorded = std::collections::HashSet::with_capacity(moved.len());
        for (id, campaign, number, old) in moved {
            self.deltas
                .moved(campaign, number, old, MessageStatus::Sent);
            recorded.insert(id);
        }
        Ok(sent
            .iter()
            .filter(|s| !recorded.contains(&s.message.0))
            .cloned()
            .collect())
    }

    /// Applies a batch of transitions in one statement, locking the rows it changes in id
    /// order. A batch should name each message once; reduce it first with `reduce`.
    pub async fn apply(
        &mut self,
        conn: &mut PgConnection,
        batch: &[Transition],
    ) -> sqlx::Result<Applied> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        let mut ids = Vec::with_capacity(batch.len());
        let mut wa_ids = Vec::with_capacity(batch.len());
        let mut statuses = Vec::with_capacity(batch.len());
        let mut ats = Vec::with_capacity(batch.len());
        let mut codes = Vec::with_capacity(batch.len());
        let mut titles = Vec::with_capacity(batch.len());
        let mut attempts = Vec::with_capacity(batch.len());
        let mut numbers = Vec::with_capacity(batch.len());
        for t in batch {
            let (id, wa) = match &t.message {
                MessageRef::Id(id) => (Some(id.0), t.wa_message_id.as_deref()),
                MessageRef::WaId(wa) => (None, Some(wa.as_str())),
            };
            ids.push(id);
            wa_ids.push(wa);
            statuses.push(t.status);
            ats.push(t.at);
            codes.push(t.error_code);
            titles.push(t.error_title.as_deref());
            attempts.push(t.attempts);
            numbers.push(t.number.as_deref());
        }
        let outcome: ApplyOutcome = sqlx::query_as(APPLY)
            .bind(ids)
            .bind(wa_ids)
            .bind(statuses)
            .bind(ats)
            .bind(codes)
            .bind(titles)
            .bind(attempts)
            .bind(numbers)
            .fetch_one(&mut *conn)
            .await?;
        self.deltas.extend(outcome.deltas.0);
        self.failures
            .extend(outcome.failures.into_iter().flat_map(|f| f.0));
        Ok(Applied {
            changed: outcome.changed,
            unmatched: outcome.unmatched,
            unmatched_wamids: outcome.unmatched_wamids,
            foreign: outcome.foreign,
        })
    }

    /// The campaigns' deltas so far; a caller adds its own (engagement counts, campaigns to
    /// lock for a pause).
    pub fn deltas(&mut self) -> &mut Deltas {
        &mut self.deltas
    }

    /// Writes the `message.failed` events of the messages that failed (before the counters,
    /// so that a campaign's failures precede its completion), then locks the campaigns and
    /// moves their counters: the transaction's last change to messages or counters.
    pub async fn finish(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        if !self.failures.is_empty() {
            sqlx::query(EMIT_FAILURES)
                .bind(sqlx::types::Json(&self.failures))
                .execute(&mut *conn)
                .await?;
        }
        counters::apply(conn, &self.deltas).await
    }
}

/// Applies one batch of transitions in a transaction of its own.
pub async fn apply(pool: &PgPool, batch: &[Transition]) -> sqlx::Result<Applied> {
    let mut tx = pool.begin().await?;
    let mut engine = Engine::default();
    let applied = engine.apply(&mut tx, batch).await?;
    engine.finish(&mut tx).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Records sends in a transaction of their own (`Engine::record_sent`, then the counters);
/// returns those it did not record, for the caller to `apply` or drop. For seeding sent
/// messages (benchmarks, tests); the recorder applies the rest in the same transaction.
pub async fn record_sent(pool: &PgPool, sent: &[Sent]) -> sqlx::Result<Vec<Sent>> {
    let mut tx = pool.begin().await?;
    let mut engine = Engine::default();
    let unrecorded = engine.record_sent(&mut tx, sent, &[]).await?;
    engine.finish(&mut tx).await?;
    tx.commit().await?;
    Ok(unrecorded)
}

/// Reduces a batch so that each message appears once, keeping the furthest status (and the
/// first wamid, error and timestamp that came with it), in first-seen order.
pub fn reduce(batch: Vec<Transition>) -> Vec<Transition> {
    let mut index = std::collections::HashMap::with_capacity(batch.len());
    let mut out: Vec<Transition> = Vec::with_capacity(batch.len());
    for t in batch {
        match index.get(&t.message) {
            None => {
                index.insert(t.message.clone(), out.len());
                out.push(t);
            }
            Some(&i) => {
                let kept = &mut out[i];
                kept.attempts += t.attempts;
                if kept.wa_message_id.is_none() {
                    kept.wa_message_id = t.wa_message_id.clone();
                }
                if t.status.rank() > kept.status.rank() {
                    kept.status = t.status;
                    kept.at = t.at;
                    kept.error_code = t.error_code;
                    kept.error_title = t.error_title;
                }
            }
        }
    }
    out
}

/// `Engine::record_sent`'s statement. $1: every id the batch will touch, sorted; $2–$4: the
/// sends. Returns each moved row's id, campaign and old status. The old status is the one
/// locked, which is the row's latest, read against its lane under a share lock (so a page
/// fan-out is recording meanwhile is either counted before or sees this send), and the update
/// then applies to that latest version. Its wamids are inserted plainly, unlooked (the hash
/// index has no uniqueness to check): a receipt that got there first and already inserted one
/// leaves the pair twice, which no lookup can tell from once.
const RECORD_SENT: &str = "WITH locked AS (
        SELECT m.id, m.status, m.campaign_id, m.sender_number_id FROM messages m
        WHERE m.id = ANY($1) ORDER BY m.id FOR UPDATE
     ), lanes AS (
        SELECT cn.campaign_id, cn.sender_number_id, cn.fanout_appended FROM campaign_numbers cn
        WHERE (cn.campaign_id, cn.sender_number_id) IN
              (SELECT campaign_id, sender_number_id FROM locked WHERE status = 'pending')
        ORDER BY 1, 2 FOR SHARE
     ), input AS (
        -- A pending row's lane read by a subquery, not a join: the planner, expecting two
        -- rows, joined every row to every lane in a nested loop.
        SELECT t.*, CASE WHEN l.status = 'pending' THEN message_status_now(l.status, l.id,
                   (SELECT n.fanout_appended FROM lanes n WHERE n.campaign_id = l.campaign_id
                      AND n.sender_number_id = l.sender_number_id)) ELSE l.status END AS old
        FROM UNNEST($2::bigint[], $3::text[], $4::timestamptz[]) AS t(id, wa_id, at)
        JOIN locked l USING (id)
        WHERE l.status IN ('queued', 'pending')
     ), moved AS (
        UPDATE messages m SET status = 'sent', attempts = m.attempts + 1, sent_at = i.at
        FROM input i WHERE m.id = i.id
        RETURNING m.id, m.campaign_id, m.sender_number_id, i.old, i.wa_id
     ), wamids AS (
        INSERT INTO message_wamids (wa_message_id, message_id)
        SELECT wa_id, id FROM moved
     )
     SELECT id, campaign_id, sender_number_id, old FROM moved";

/// `Engine::apply`'s statement: changes messages and returns, besides what it did, the
/// campaigns' deltas, by number, as JSON rows (`counters::Row`).
const APPLY: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::message_status[],
                             $4::timestamptz[], $5::int[], $6::text[], $7::int[], $8::text[])
            AS t(id, wa_id, status, at, error_code, error_title, attempts, number)
     ), named AS (
        SELECT coalesce(i.id, w.message_id) AS id, i.id IS NOT NULL AS by_id, i.wa_id,
               i.status, i.at, i.error_code, i.error_title, i.attempts, i.number
        FROM input i
        LEFT JOIN LATERAL (
            SELECT w.message_id FROM message_wamids w
            WHERE i.id IS NULL AND w.wa_message_id = i.wa_id
            ORDER BY w.message_id LIMIT 1
        ) w ON true
     ), looked AS (
        -- One lookup of each named message: whether it exists, and which number sent it.
        SELECT n.*, m.id IS NOT NULL AS known, s.phone_number_id AS sender
        FROM named n
        LEFT JOIN messages m ON m.id = n.id
        LEFT JOIN sender_numbers s ON s.id = m.sender_number_id
     ), resolved AS (
        -- A receipt applies only to a message its number sent.
        SELECT * FROM looked WHERE number IS NULL OR NOT known OR sender = number
     ), plan AS (
        -- Only rows the transition changes: a repeated receipt (Meta repeats them) must
        -- cost a lookup, not a lock and a new row version. Statuses only advance and
        -- timestamps are only ever set, so a row that needs nothing now never will. A row
        -- another transaction changed meanwhile is judged, and its old status read, in its
        -- latest version once locked. The plan carries what the update needs, so that no
        -- later step joins two of these steps' results: the planner cannot estimate their
        -- sizes and would join them by comparing every row with every other.
        SELECT r.*, m.status AS stored, m.campaign_id, m.sender_number_id
        FROM messages m JOIN resolved r ON r.id = m.id
        WHERE message_status_advances(m.status, r.status)
           OR r.attempts <> 0
           OR (r.status IN ('sent', 'delivered', 'read') AND m.sent_at IS NULL)
           OR (r.status IN ('delivered', 'read') AND m.delivered_at IS NULL)
           OR (r.status = 'read' AND m.read_at IS NULL)
        ORDER BY m.id FOR UPDATE OF m
     ), lanes AS (
        -- A pending row's lane, under a share lock: whether it is `queued` (see RECORD_SENT).
        SELECT cn.campaign_id, cn.sender_number_id, cn.fanout_appended FROM campaign_numbers cn
        WHERE (cn.campaign_id, cn.sender_number_id) IN
              (SELECT campaign_id, sender_number_id FROM plan WHERE stored = 'pending')
        ORDER BY 1, 2 FOR SHARE
     ), judged AS (
        SELECT p.*, s.old AS old_status, message_status_advances(s.old, p.status) AS moves
        FROM plan p LEFT JOIN lanes l USING (campaign_id, sender_number_id),
             LATERAL (SELECT message_status_now(p.stored, p.id, l.fanout_appended) AS old) s
     ), changed AS (
        UPDATE messages m SET
            status = CASE WHEN p.moves THEN p.status ELSE m.status END,
            attempts = m.attempts + p.attempts,
            queued_at = coalesce(m.queued_at,
                CASE WHEN p.moves AND p.status = 'queued' THEN p.at END),
            sent_at = coalesce(m.sent_at,
                CASE WHEN p.status IN ('sent', 'delivered', 'read') THEN p.at END),
            delivered_at = coalesce(m.delivered_at,
                CASE WHEN p.status IN ('delivered', 'read') THEN p.at END),
            read_at = coalesce(m.read_at, CASE WHEN p.status = 'read' THEN p.at END),
            failed_at = CASE WHEN p.moves AND p.status = 'failed' THEN p.at
                             ELSE m.failed_at END,
            error_code = CASE WHEN p.moves AND p.status = 'failed' THEN p.error_code
                              ELSE m.error_code END,
            error_title = CASE WHEN p.moves AND p.status = 'failed' THEN p.error_title
                               ELSE m.error_title END
        FROM judged p WHERE m.id = p.id
        RETURNING m.id, m.campaign_id, m.sender_number_id, p.old_status,
                  CASE WHEN p.moves THEN p.status ELSE p.old_status END AS new_status, m.recipient,
                  m.error_code, m.error_title, m.failed_at
     ), wamids AS (
        -- Receipts repeat their wamid (sent, delivered, read): only a new one goes in, and
        -- for a wamid claimed twice in the batch, once.
        INSERT INTO message_wamids (wa_message_id, message_id)
        SELECT DISTINCT ON (r.wa_id) r.wa_id, r.id FROM resolved r
        WHERE r.by_id AND r.wa_id IS NOT NULL AND r.known
          AND NOT EXISTS (SELECT 1 FROM message_wamids w WHERE w.wa_message_id = r.wa_id)
        ORDER BY r.wa_id, r.id
     ), moves AS (
        SELECT campaign_id, sender_number_id, old_status, new_status, count(*) AS n
        FROM changed WHERE old_status <> new_status GROUP BY 1, 2, 3, 4
     ), deltas AS (
        SELECT campaign_id AS id, sender_number_id AS number, s.status, sum(s.n)::bigint AS n
        FROM moves, LATERAL (VALUES (old_status, -n), (new_status, n)) AS s(status, n)
        GROUP BY 1, 2, 3
     ), unmatched AS (
        SELECT r.by_id, r.wa_id FROM resolved r WHERE NOT r.known
     )
     SELECT (SELECT coalesce(sum(n), 0)::bigint FROM moves) AS changed,
            (SELECT count(*) FROM unmatched) AS unmatched,
            (SELECT coalesce(array_agg(wa_id), '{}') FROM unmatched WHERE NOT by_id)
                AS unmatched_wamids,
            (SELECT count(*) FROM named) - (SELECT count(*) FROM resolved) AS foreign,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'number', number) || counts),
                             '[]')
             FROM (SELECT id, number, jsonb_object_agg(status::text, n) AS counts
                   FROM deltas GROUP BY id, number) g) AS deltas,
            (SELECT jsonb_agg(jsonb_build_object('campaign_id', campaign_id, 'message_id', id,
                        'recipient', recipient, 'error_code', error_code,
                        'error_title', error_title, 'failed_at', failed_at))
             FROM changed WHERE new_status = 'failed' AND old_status <> 'failed') AS failures";

/// Writes `message.failed` events for the failures `Engine::apply` returned ($1): one per
/// campaign and 100 messages, ordered by message id, for the tenant's endpoints that subscribe
/// (`emit_event` writes nothing when none does).
const EMIT_FAILURES: &str = "WITH failed AS (
        SELECT f.*, (row_number() OVER (PARTITION BY f.campaign_id ORDER BY f.message_id) - 1)
                    / 100 AS chunk
        FROM jsonb_to_recordset($1) AS f(campaign_id uuid, message_id bigint, recipient text,
                                         error_code int, error_title text,
                                         failed_at timestamptz)
     ), events AS (
        SELECT campaign_id, chunk, count(*) AS n,
               jsonb_agg(jsonb_build_object('message_id', message_id, 'recipient', recipient,
                   'error_code', error_code, 'error_title', error_title,
                   'failed_at', failed_at) ORDER BY message_id) AS messages
        FROM failed GROUP BY campaign_id, chunk
     )
     SELECT emit_event(c.tenant_id, 'message.failed', c.id::text, jsonb_build_object(
                'campaign_id', c.id, 'name', c.name, 'count', e.n, 'messages', e.messages))
     FROM events e JOIN campaigns c ON c.id = e.campaign_id
     ORDER BY c.id, e.chunk";
