//! Messages: uploads add them, fan-out claims them (`queued`), a stream's repair marks them
//! `queued` again. Every other status change goes through the transition engine
//! (`transitions`).
//!
//! Every write here keeps the engine's lock order: message rows first (new ones, or existing
//! ones in id order), then the campaign's counters through `apply_campaign_deltas` (in the
//! same statement, or for a claimed page in the same transaction).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::campaigns::FanoutRow;

use crate::domain::{CampaignId, MessageId, MessageStatus, NumberId};

/// A recipient to insert.
pub struct NewMessage {
    pub number: NumberId,
    pub recipient: String,
    pub variables: serde_json::Value,
    /// Which of the campaign's templates it sends (its position).
    pub template: i16,
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
    let templates: Vec<i16> = rows.iter().map(|r| r.template).collect();
    // Suppressions are kept by canonical key (Mexico's and Brazil's forms met).
    let keys: Vec<String> = rows
        .iter()
        .map(|r| crate::suppress::key(&r.recipient))
        .collect();
    let (pending, suppressed, _): (i64, i64, i64) = sqlx::query_as(
        "WITH held AS (
            SELECT s.recipient FROM suppressions s JOIN campaigns c ON c.tenant_id = s.tenant_id
            WHERE c.id = $1 AND s.recipient = ANY($6) AND s.active
         ), inserted AS (
            INSERT INTO messages
                (campaign_id, sender_number_id, recipient, variables, template, status)
            SELECT $1, n, r, v, t,
                   CASE WHEN k IN (SELECT recipient FROM held) THEN 'suppressed'::message_status
                        ELSE 'pending'::message_status END
            FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[], $5::smallint[], $6::text[])
                 AS u(n, r, v, t, k)
            ON CONFLICT (campaign_id, recipient) DO NOTHING
            RETURNING status
         ), counted AS (
            SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'suppressed') AS suppressed
            FROM inserted
         )
         SELECT counted.pending, counted.suppressed,
                apply_campaign_deltas(jsonb_build_array(jsonb_build_object(
                    'id', $1::uuid, 'total', counted.pending + counted.suppressed,
                    'pending', counted.pending, 'suppressed', counted.suppressed)))
         FROM counted",
    )
    .bind(campaign)
    .bind(numbers)
    .bind(recipients)
    .bind(variables)
    .bind(templates)
    .bind(keys)
    .fetch_one(db)
    .await?;
    Ok(Inserted {
        pending,
        suppressed,
    })
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

/// Claims a page of a lane for fan-out: the campaign's `pending` messages for `number` with
/// ids in `after..=through`, locked in id order and marked `queued`, returned by id. Runs in
/// the transaction that commits once the page is in its stream (`count_queued` moves the
/// counters just before), so a message is never `queued` without being there, and the sender
/// recording a send waits for that commit rather than racing a marking of its own row.
///
/// Bounded by id rather than by `LIMIT`: right after an upload the table's statistics still
/// say the campaign has no rows, and with a `LIMIT` the planner then chose to read all of the
/// campaign's rows and sort them, for every page (quadratic in the campaign's size). A range
/// costs at most its width whatever the plan.
pub async fn claim_page(
    tx: &mut PgConnection,
    campaign: CampaignId,
    number: NumberId,
    after: i64,
    through: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<Vec<FanoutRow>> {
    sqlx::query_as(
        "WITH page AS (
            SELECT id, recipient, variables, template FROM messages
            WHERE campaign_id = $1 AND sender_number_id = $2 AND id > $3 AND id <= $4
              AND status = $6
            ORDER BY id FOR UPDATE
         ), marked AS (
            UPDATE messages m SET status = $5, queued_at = $7 FROM page p WHERE m.id = p.id
         )
         SELECT * FROM page ORDER BY id",
    )
    .bind(campaign)
    .bind(number)
    .bind(after)
    .bind(through)
    .bind(MessageStatus::Queued)
    .bind(MessageStatus::Pending)
    .bind(at)
    .fetch_all(tx)
    .await
}

/// Marks claimed (`queued`) messages `skipped` for `reason` (kept as their `error_title`) and
/// moves the counters; in the claiming transaction, which holds their locks. Returns how many.
pub async fn skip(
    tx: &mut PgConnection,
    campaign: CampaignId,
    ids: &[MessageId],
    reason: &str,
) -> sqlx::Result<i64> {
    let ids: Vec<i64> = ids.iter().map(|m| m.0).collect();
    sqlx::query_scalar(
        "WITH skipped AS (
            UPDATE messages SET status = 'skipped', error_title = $3
            WHERE id = ANY($2) AND status = 'queued'
            RETURNING 1
         ), n AS (SELECT count(*) AS n FROM skipped)
         SELECT n.n FROM n, LATERAL (SELECT apply_campaign_deltas(jsonb_build_array(
            jsonb_build_object('id', $1::uuid, 'queued', -n.n, 'skipped', n.n)))) a",
    )
    .bind(campaign)
    .bind(ids)
    .bind(reason)
    .fetch_one(&mut *tx)
    .await
}

/// Moves `n` of the campaign's messages from `pending` to `queued` in its counters: the
/// claimed page's, last before its transaction commits (the engine's lock order: messages,
/// then the campaign).
pub async fn count_queued(tx: &mut PgConnection, campaign: CampaignId, n: i64) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT apply_campaign_deltas(jsonb_build_array(jsonb_build_object(
            'id', $1::uuid, 'pending', -$2::bigint, 'queued', $2::bigint)))",
    )
    .bind(campaign)
    .bind(n)
    .execute(tx)
    .await?;
    Ok(())
}

/// Marks appended messages `queued`, those still `pending`, and moves the counters: the cheap
/// form of the engine's `apply` for the one transition whose old status is known. Returns how
/// many moved.
pub async fn mark_queued(
    db: impl PgExecutor<'_>,
    ids: &[MessageId],
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let ids: Vec<i64> = ids.iter().map(|m| m.0).collect();
    let (moved, _): (i64, i64) = sqlx::query_as(
        "WITH locked AS (
            SELECT id FROM messages WHERE id = ANY($1) AND status = $4 ORDER BY id FOR UPDATE
         ), changed AS (
            UPDATE messages m SET status = $3, queued_at = $2
            FROM locked l WHERE m.id = l.id AND m.status = $4
            RETURNING m.campaign_id
         ), deltas AS (
            SELECT campaign_id, count(*) AS n FROM changed GROUP BY campaign_id
         )
         SELECT coalesce(sum(n), 0)::bigint,
                apply_campaign_deltas(coalesce(jsonb_agg(jsonb_build_object(
                    'id', campaign_id, 'pending', -n, 'queued', n)), '[]'))
         FROM deltas",
    )
    .bind(ids)
    .bind(at)
    .bind(MessageStatus::Queued)
    .bind(MessageStatus::Pending)
    .fetch_one(db)
    .await?;
    Ok(moved)
}

/// A message as the API lists and exports it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub recipient: String,
    pub status: MessageStatus,
    pub attempts: i32,
    pub error_code: Option<i32>,
    pub error_title: Option<String>,
    /// Meta's id of its send (the last one, if it was sent again).
    pub wamid: Option<String>,
    /// The sender number it goes from.
    pub number: NumberId,
    /// Its template's name.
    pub template: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

/// The listing's query: `campaign`'s messages by id after `$3`, in status `$2` when given.
const LISTING: &str = "SELECT m.id, m.recipient, m.status, m.attempts, m.error_code, m.error_title,
        (SELECT max(w.wa_message_id) FROM message_wamids w WHERE w.message_id = m.id) AS wamid,
        m.sender_number_id AS number, t.name AS template, m.created_at, m.queued_at,
        m.sent_at, m.delivered_at, m.read_at, m.failed_at
 FROM messages m
 LEFT JOIN campaign_templates t ON t.campaign_id = m.campaign_id AND t.position = m.template
 WHERE m.campaign_id = $1 AND ($2::message_status IS NULL OR m.status = $2) AND m.id > $3
 ORDER BY m.id LIMIT $4";

/// A page of `campaign`'s messages by id, after `after`, in `status` when given.
pub async fn page(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    status: Option<MessageStatus>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<MessageView>> {
    sqlx::query_as(LISTING)
        .bind(campaign)
        .bind(status)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// Every message of `campaign` (in `status` when given), by id, as rows arrive: one query,
/// nothing held but the row at hand.
pub fn all<'e>(
    db: impl PgExecutor<'e> + 'e,
    campaign: CampaignId,
    status: Option<MessageStatus>,
) -> futures::stream::BoxStream<'e, sqlx::Result<MessageView>> {
    sqlx::query_as(LISTING)
        .bind(campaign)
        .bind(status)
        .bind(0i64)
        .bind(i64::MAX)
        .fetch(db)
}
