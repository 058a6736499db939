//! Messages and the one statement that changes their status.
//!
//! Invariant: a campaign's counters equal a `GROUP BY status` over its messages. Only
//! `insert_recipients` (which adds `pending` or `suppressed` rows) and `apply_transitions` (which moves
//! rows between statuses) change either, and each changes both in the same statement.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::{CampaignId, MessageId, MessageStatus, NumberId};

/// A recipient to insert.
pub struct NewMessage {
    pub number: NumberId,
    pub recipient: String,
    pub variables: serde_json::Value,
}

/// What `insert_recipients` added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// New rows, `pending` to send…
    pub pending: i64,
    /// …or `suppressed`: the tenant's suppressions hold them (opted out), never sent.
    pub suppressed: i64,
}

/// Inserts recipients as `pending`, or as `suppressed` when the campaign's tenant suppresses
/// them, skipping any the campaign already has. `total` and the two counters grow by the same
/// amounts in the same statement.
pub async fn insert_recipients(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    rows: &[NewMessage],
) -> sqlx::Result<Inserted> {
    let numbers: Vec<uuid::Uuid> = rows.iter().map(|r| r.number.0).collect();
    let recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    let variables: Vec<sqlx::types::Json<&serde_json::Value>> = rows
        .iter()
        .map(|r| sqlx::types::Json(&r.variables))
        .collect();
    let (pending, suppressed): (i64, i64) = sqlx::query_as(
        "WITH held AS (
            SELECT s.recipient FROM suppressions s JOIN campaigns c ON c.tenant_id = s.tenant_id
            WHERE c.id = $1 AND s.recipient = ANY($3)
         ), inserted AS (
            INSERT INTO messages (campaign_id, sender_number_id, recipient, variables, status)
            SELECT $1, n, r, v,
                   CASE WHEN r IN (SELECT recipient FROM held) THEN 'suppressed'::message_status
                        ELSE 'pending'::message_status END
            FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[]) AS t(n, r, v)
            ON CONFLICT (campaign_id, recipient) DO NOTHING
            RETURNING status
         ), counted AS (
            SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'suppressed') AS suppressed
            FROM inserted
         )
         UPDATE campaigns c SET total = c.total + counted.pending + counted.suppressed,
                                pending = c.pending + counted.pending,
                                suppressed = c.suppressed + counted.suppressed
         FROM counted WHERE c.id = $1
         RETURNING counted.pending, counted.suppressed",
    )
    .bind(campaign)
    .bind(numbers)
    .bind(recipients)
    .bind(variables)
    .fetch_one(db)
    .await?;
    Ok(Inserted {
        pending,
        suppressed,
    })
}

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
}

/// Applies a batch of transitions in one statement: statuses move only forward (the Postgres
/// function `message_status_advances`), timestamps and Meta's id are recorded even when the
/// status does not move (a late `sent` after a `delivered`), every affected campaign's
/// counters change by exactly the transitions that happened, and a running campaign left with
/// nothing pending or queued becomes `completed`.
///
/// Rows are locked in id order and campaigns in id order, so concurrent batches (the sender's
/// recorder and the webhook processor) cannot deadlock. A batch should name each message once;
/// reduce it first with `reduce`.
pub async fn apply_transitions(
    db: impl PgExecutor<'_>,
    batch: &[Transition],
) -> sqlx::Result<Applied> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut wa_ids = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut ats = Vec::with_capacity(batch.len());
    let mut codes = Vec::with_capacity(batch.len());
    let mut titles = Vec::with_capacity(batch.len());
    let mut attempts = Vec::with_capacity(batch.len());
    for t in batch {
        let (id, wa) = match &t.message {
            MessageRef::Id(id) => (Some(id.0), t.wa_message_id.clone()),
            MessageRef::WaId(wa) => (None, Some(wa.clone())),
        };
        ids.push(id);
        wa_ids.push(wa);
        statuses.push(t.status);
        ats.push(t.at);
        codes.push(t.error_code);
        titles.push(t.error_title.clone());
        attempts.push(t.attempts);
    }
    let (changed, unmatched, unmatched_wamids): (i64, i64, Vec<String>) = sqlx::query_as(
        "WITH input AS (
            SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::message_status[],
                                 $4::timestamptz[], $5::int[], $6::text[], $7::int[])
                AS t(id, wa_id, status, at, error_code, error_title, attempts)
         ), resolved AS (
            SELECT coalesce(i.id, w.message_id) AS id, i.id IS NOT NULL AS by_id, i.wa_id,
                   i.status, i.at, i.error_code, i.error_title, i.attempts
            FROM input i
            LEFT JOIN message_wamids w ON i.id IS NULL AND w.wa_message_id = i.wa_id
         ), locked AS (
            -- Only rows the transition changes: a repeated receipt (Meta repeats them) must
            -- cost a lookup, not a lock and a new row version. Statuses only advance and
            -- timestamps are only ever set, so a row that needs nothing now never will.
            SELECT m.id, m.status AS old_status FROM messages m JOIN resolved r ON r.id = m.id
            WHERE message_status_advances(m.status, r.status)
               OR r.attempts <> 0
               OR (r.status IN ('sent', 'delivered', 'read') AND m.sent_at IS NULL)
               OR (r.status IN ('delivered', 'read') AND m.delivered_at IS NULL)
               OR (r.status = 'read' AND m.read_at IS NULL)
            ORDER BY m.id FOR UPDATE OF m
         ), plan AS (
            SELECT r.*, l.old_status, message_status_advances(l.old_status, r.status) AS moves
            FROM resolved r JOIN locked l ON l.id = r.id
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
            FROM plan p WHERE m.id = p.id
            RETURNING m.campaign_id, p.old_status, m.status AS new_status
         ), wamids AS (
            INSERT INTO message_wamids (wa_message_id, message_id)
            SELECT r.wa_id, r.id FROM resolved r
            WHERE r.by_id AND r.wa_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM messages m WHERE m.id = r.id)
            ON CONFLICT DO NOTHING
         ), deltas AS (
            SELECT campaign_id,
                count(*) FILTER (WHERE new_status = 'pending')
                    - count(*) FILTER (WHERE old_status = 'pending') AS pending,
                count(*) FILTER (WHERE new_status = 'queued')
                    - count(*) FILTER (WHERE old_status = 'queued') AS queued,
                count(*) FILTER (WHERE new_status = 'sent')
                    - count(*) FILTER (WHERE old_status = 'sent') AS sent,
                count(*) FILTER (WHERE new_status = 'delivered')
                    - count(*) FILTER (WHERE old_status = 'delivered') AS delivered,
                count(*) FILTER (WHERE new_status = 'read')
                    - count(*) FILTER (WHERE old_status = 'read') AS read,
                count(*) FILTER (WHERE new_status = 'failed')
                    - count(*) FILTER (WHERE old_status = 'failed') AS failed,
                count(*) FILTER (WHERE new_status = 'cancelled')
                    - count(*) FILTER (WHERE old_status = 'cancelled') AS cancelled,
                count(*) FILTER (WHERE new_status = 'suppressed')
                    - count(*) FILTER (WHERE old_status = 'suppressed') AS suppressed
            FROM changed WHERE old_status <> new_status GROUP BY campaign_id
         ), campaign_locks AS (
            SELECT c.id FROM campaigns c WHERE c.id IN (SELECT campaign_id FROM deltas)
            ORDER BY c.id FOR UPDATE
         ), counters AS (
            UPDATE campaigns c SET
                pending = c.pending + d.pending, queued = c.queued + d.queued,
                sent = c.sent + d.sent, delivered = c.delivered + d.delivered,
                read = c.read + d.read, failed = c.failed + d.failed,
                cancelled = c.cancelled + d.cancelled, suppressed = c.suppressed + d.suppressed,
                -- A running campaign with nothing left to send is complete; receipts keep
                -- moving its counters afterwards.
                state = CASE WHEN c.state = 'running' AND c.pending + d.pending = 0
                                  AND c.queued + d.queued = 0
                             THEN 'completed' ELSE c.state END,
                completed_at = CASE WHEN c.state = 'running' AND c.pending + d.pending = 0
                                         AND c.queued + d.queued = 0
                                    THEN now() ELSE c.completed_at END
            FROM deltas d JOIN campaign_locks l ON l.id = d.campaign_id
            WHERE c.id = d.campaign_id
            RETURNING 1
         ), unmatched AS (
            SELECT r.by_id, r.wa_id FROM resolved r
            WHERE r.id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = r.id)
         )
         SELECT (SELECT count(*) FROM changed WHERE old_status <> new_status),
                (SELECT count(*) FROM unmatched),
                (SELECT coalesce(array_agg(wa_id), '{}') FROM unmatched WHERE NOT by_id)",
    )
    .bind(ids)
    .bind(wa_ids)
    .bind(statuses)
    .bind(ats)
    .bind(codes)
    .bind(titles)
    .bind(attempts)
    .fetch_one(db)
    .await?;
    Ok(Applied {
        changed,
        unmatched,
        unmatched_wamids,
    })
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
            message: MessageRef::Id(sent.message),
            status: MessageStatus::Sent,
            wa_message_id: Some(sent.wa_message_id),
            at: sent.at,
            error_code: None,
            error_title: None,
            attempts: 1,
        }
    }
}

/// Moves still-`queued` (or still-`pending`, when the fan-out's marking has not landed yet)
/// messages to `sent` with one attempt more and records their wamids; `moved` gives, per row,
/// its campaign and whether it left `queued` (1) or `pending` (0). Sorted by id first, so rows
/// are locked in the order `apply_transitions` locks them.
const SENT_ROWS: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[]) AS t(id, wa_id, at)
     ), from_queued AS (
        UPDATE messages m SET status = 'sent', attempts = m.attempts + 1, sent_at = i.at
        FROM input i WHERE m.id = i.id AND m.status = 'queued'
        RETURNING m.id, m.campaign_id
     ), from_pending AS (
        UPDATE messages m SET status = 'sent', attempts = m.attempts + 1, sent_at = i.at
        FROM input i WHERE m.id = i.id AND m.status = 'pending'
        RETURNING m.id, m.campaign_id
     ), moved AS (
        SELECT id, campaign_id, 1 AS queued FROM from_queued
        UNION ALL SELECT id, campaign_id, 0 FROM from_pending
     ), wamids AS (
        INSERT INTO message_wamids (wa_message_id, message_id)
        SELECT i.wa_id, i.id FROM input i JOIN moved USING (id)
        ON CONFLICT DO NOTHING
     )";

/// Adds a `deltas` CTE's sends (`campaign_id`, `queued`, `pending`: how many left each,
/// `sent`) to the campaigns' counters, locking them in id order, and completes a running
/// campaign left with nothing to send.
const SENT_COUNTERS: &str = ", campaign_locks AS (
        SELECT c.id FROM campaigns c WHERE c.id IN (SELECT campaign_id FROM deltas)
        ORDER BY c.id FOR UPDATE
     ), counters AS (
        UPDATE campaigns c SET
            queued = c.queued - d.queued, pending = c.pending - d.pending,
            sent = c.sent + d.sent,
            state = CASE WHEN c.state = 'running' AND c.pending - d.pending = 0
                              AND c.queued - d.queued = 0
                         THEN 'completed' ELSE c.state END,
            completed_at = CASE WHEN c.state = 'running' AND c.pending - d.pending = 0
                                     AND c.queued - d.queued = 0
                                THEN now() ELSE c.completed_at END
        FROM deltas d JOIN campaign_locks l ON l.id = d.campaign_id
        WHERE c.id = d.campaign_id
        RETURNING 1
     )";

/// What `record_sent_rows` moved, per campaign: `(campaign, from queued, from pending)`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SentMoves(pub Vec<(CampaignId, i64, i64)>);

impl SentMoves {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `sent` in id order.
fn sorted(sent: &[Sent]) -> Vec<Sent> {
    let mut sent = sent.to_vec();
    sent.sort_unstable_by_key(|s| s.message.0);
    sent
}

/// `sent`'s columns for `SENT_ROWS`: ids, wamids, times.
fn columns(sent: &[Sent]) -> (Vec<i64>, Vec<&str>, Vec<DateTime<Utc>>) {
    let ids = sent.iter().map(|s| s.message.0).collect();
    let wa_ids = sent.iter().map(|s| s.wa_message_id.as_str()).collect();
    let ats = sent.iter().map(|s| s.at).collect();
    (ids, wa_ids, ats)
}

static RECORD_SENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{SENT_ROWS}, deltas AS (
            SELECT campaign_id, sum(queued) AS queued, count(*) - sum(queued) AS pending,
                   count(*) AS sent
            FROM moved GROUP BY campaign_id
         ){SENT_COUNTERS}
         SELECT id FROM moved"
    )
});

static RECORD_SENT_ROWS: LazyLock<String> =
    LazyLock::new(|| format!("{SENT_ROWS} SELECT id, campaign_id, queued FROM moved"));

static ADD_SENT_COUNTERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH deltas AS (
            SELECT d.*, d.queued + d.pending AS sent
            FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS d(campaign_id, queued, pending)
         ){SENT_COUNTERS}
         SELECT count(*) FROM counters"
    )
});

/// The recorder's common case, lean and in one statement: the rows of `SENT_ROWS` and their
/// counters. Because the old status is known, no row is locked ahead and no wamid looked up:
/// this is the one statement per batch a campaign's send rate rests on. Returns the sends it
/// did not record (their message had moved on, say a receipt got there first), for
/// `apply_transitions`. The recorder, which applies those in the same transaction, uses
/// `record_sent_rows` and `add_sent_counters` instead, so that it locks every message before
/// any campaign, as the webhook processor does.
pub async fn record_sent(db: impl PgExecutor<'_>, sent: &[Sent]) -> sqlx::Result<Vec<Sent>> {
    let sent = sorted(sent);
    let (ids, wa_ids, ats) = columns(&sent);
    let recorded: Vec<i64> = sqlx::query_scalar(RECORD_SENT.as_str())
        .bind(ids)
        .bind(wa_ids)
        .bind(ats)
        .fetch_all(db)
        .await?;
    Ok(unrecorded(&sent, recorded))
}

/// `record_sent` without the counters: the moves for `add_sent_counters`, and the sends it
/// did not record.
pub async fn record_sent_rows(
    db: impl PgExecutor<'_>,
    sent: &[Sent],
) -> sqlx::Result<(SentMoves, Vec<Sent>)> {
    let sent = sorted(sent);
    let (ids, wa_ids, ats) = columns(&sent);
    let rows: Vec<(i64, CampaignId, i32)> = sqlx::query_as(RECORD_SENT_ROWS.as_str())
        .bind(ids)
        .bind(wa_ids)
        .bind(ats)
        .fetch_all(db)
        .await?;
    let mut moves: Vec<(CampaignId, i64, i64)> = Vec::new();
    for (_, campaign, queued) in &rows {
        let at = match moves.iter().position(|(c, _, _)| c == campaign) {
            Some(at) => at,
            None => {
                moves.push((*campaign, 0, 0));
                moves.len() - 1
            }
        };
        if *queued == 1 {
            moves[at].1 += 1;
        } else {
            moves[at].2 += 1;
        }
    }
    let recorded = rows.into_iter().map(|(id, _, _)| id).collect();
    Ok((SentMoves(moves), unrecorded(&sent, recorded)))
}

/// Adds what `record_sent_rows` moved to the campaigns' counters (see `SENT_COUNTERS`).
pub async fn add_sent_counters(db: impl PgExecutor<'_>, moves: &SentMoves) -> sqlx::Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let campaigns: Vec<CampaignId> = moves.0.iter().map(|m| m.0).collect();
    let queued: Vec<i64> = moves.0.iter().map(|m| m.1).collect();
    let pending: Vec<i64> = moves.0.iter().map(|m| m.2).collect();
    sqlx::query(ADD_SENT_COUNTERS.as_str())
        .bind(campaigns)
        .bind(queued)
        .bind(pending)
        .execute(db)
        .await?;
    Ok(())
}

fn unrecorded(sent: &[Sent], recorded: Vec<i64>) -> Vec<Sent> {
    let recorded: std::collections::HashSet<i64> = recorded.into_iter().collect();
    sent.iter()
        .filter(|s| !recorded.contains(&s.message.0))
        .cloned()
        .collect()
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

/// The current status of each of `ids` that exists.
pub async fn statuses(
    db: impl PgExecutor<'_>,
    ids: &[MessageId],
) -> sqlx::Result<Vec<(MessageId, MessageStatus)>> {
    let ids: Vec<i64> = ids.iter().map(|m| m.0).collect();
    sqlx::query_as("SELECT id, status FROM messages WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// The messages of a campaign not yet sent (pending or queued), by id.
pub async fn unsent(db: impl PgExecutor<'_>, campaign: CampaignId) -> sqlx::Result<Vec<MessageId>> {
    sqlx::query_scalar(
        "SELECT id FROM messages WHERE campaign_id = $1 AND status = ANY($2) ORDER BY id",
    )
    .bind(campaign)
    .bind([MessageStatus::Pending, MessageStatus::Queued])
    .fetch_all(db)
    .await
}

/// Marks appended messages `queued`, those still `pending`, and moves the counters: the cheap
/// form of `apply_transitions` for the one transition whose old status is known, so it needs
/// no row locks taken ahead. Returns how many moved.
pub async fn mark_queued(
    db: impl PgExecutor<'_>,
    ids: &[MessageId],
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let ids: Vec<i64> = ids.iter().map(|m| m.0).collect();
    sqlx::query_scalar(
        "WITH changed AS (
            UPDATE messages SET status = $3, queued_at = $2
            WHERE id = ANY($1) AND status = $4
            RETURNING campaign_id
         ), deltas AS (
            SELECT campaign_id, count(*) AS n FROM changed GROUP BY campaign_id
         ), counters AS (
            UPDATE campaigns c SET pending = c.pending - d.n, queued = c.queued + d.n
            FROM deltas d WHERE c.id = d.campaign_id
            RETURNING 1
         )
         SELECT coalesce(sum(n), 0)::bigint FROM deltas",
    )
    .bind(ids)
    .bind(at)
    .bind(MessageStatus::Queued)
    .bind(MessageStatus::Pending)
    .fetch_one(db)
    .await
}
