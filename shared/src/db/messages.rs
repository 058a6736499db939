//! Messages: uploads add them, fan-out records the pages it appended (which makes them
//! `queued`) and skips those it may not send. Every other status change goes through the
//! transition engine (`transitions`).
//!
//! A `pending` row whose lane (campaign, number) has appended up to its id is `queued`:
//! readers see statuses through the SQL function `message_status_now`.
//!
//! Every write here keeps the engine's lock order: message rows first (new ones, or existing
//! ones in id order), then lanes, then the campaign's counters through `apply_campaign_deltas`
//! (in the same statement).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

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
            RETURNING sender_number_id, status
         ), counted AS (
            SELECT sender_number_id AS number,
                   count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'suppressed') AS suppressed
            FROM inserted GROUP BY 1
         )
         SELECT coalesce(sum(pending), 0)::bigint, coalesce(sum(suppressed), 0)::bigint,
                apply_campaign_deltas(coalesce(jsonb_agg(jsonb_build_object(
                    'id', $1::uuid, 'number', number, 'total', pending + suppressed,
                    'pending', pending, 'suppressed', suppressed)), '[]'))
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
    sqlx::query_as(
        "SELECT m.id, message_status_now(m.status, m.id, cn.fanout_appended)
         FROM messages m LEFT JOIN campaign_numbers cn
             ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
         WHERE m.id = ANY($1)",
    )
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

/// A page of a lane for fan-out: the first `limit` of the campaign's `pending` messages for
/// `number` with ids in `after..=through`, by id. Nothing is written: the page becomes `queued`
/// when fan-out records it appended (`record_page`).
///
/// Bounded by an id range, not by `LIMIT` alone: right after an upload the table's statistics
/// still say the campaign has no rows, and with only a `LIMIT` the planner then chose to read
/// all of the campaign's rows and sort them, for every page (quadratic in the campaign's size).
/// A range costs at most its width whatever the plan.
pub async fn read_page(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    number: NumberId,
    after: i64,
    through: i64,
    limit: i64,
) -> sqlx::Result<Vec<FanoutRow>> {
    sqlx::query_as(
        "SELECT id, recipient, variables, template FROM messages
         WHERE campaign_id = $1 AND sender_number_id = $2 AND id > $3 AND id <= $4
           AND status = 'pending'
         ORDER BY id LIMIT $5",
    )
    .bind(campaign)
    .bind(number)
    .bind(after)
    .bind(through)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Records a page of the lane appended to its stream up to `highest` (the page reached
/// `through`): the lane's messages up to `highest` still `pending` are `queued` from now on,
/// and move so in the counters (the SQL function `record_fanout_page`). Returns how many.
pub async fn record_page(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    number: NumberId,
    through: i64,
    highest: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT record_fanout_page($1, $2, $3, $4)")
        .bind(campaign)
        .bind(number)
        .bind(through)
        .bind(highest)
        .fetch_one(db)
        .await
}

/// Marks messages of a page not yet appended `skipped` for `reason` (kept as their
/// `error_title`) and moves the counters. Only those still `pending` above what the lane has
/// appended (read under its share lock, so that a page being recorded meanwhile is seen):
/// another fan-out may have appended the rest. Returns how many.
pub async fn skip(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    number: NumberId,
    ids: &[MessageId],
    reason: &str,
) -> sqlx::Result<i64> {
    let ids: Vec<i64> = ids.iter().map(|m| m.0).collect();
    sqlx::query_scalar(
        "WITH lane AS (
            SELECT fanout_appended AS appended FROM campaign_numbers
            WHERE campaign_id = $1 AND sender_number_id = $2 FOR SHARE
         ), skipped AS (
            UPDATE messages SET status = 'skipped', error_title = $4
            WHERE id = ANY($3) AND status = 'pending' AND id > (SELECT appended FROM lane)
            RETURNING 1
         ), n AS (SELECT count(*) AS n FROM skipped)
         SELECT n.n FROM n, LATERAL (SELECT apply_campaign_deltas(jsonb_build_array(
            jsonb_build_object('id', $1::uuid, 'number', $2::uuid, 'pending', -n.n,
                               'skipped', n.n)))) a",
    )
    .bind(campaign)
    .bind(number)
    .bind(ids)
    .bind(reason)
    .fetch_one(db)
    .await
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
/// A message appended to its stream was queued when its lane's first page reaching it was
/// recorded (`fanout_pages`).
const LISTING: &str = "SELECT m.id, m.recipient, s.status, m.attempts, m.error_code, m.error_title,
        (SELECT max(w.wa_message_id) FROM message_wamids w WHERE w.message_id = m.id) AS wamid,
        m.sender_number_id AS number, t.name AS template, m.created_at,
        coalesce(m.queued_at, CASE WHEN m.id <= cn.fanout_appended
                                    AND m.status NOT IN ('suppressed', 'skipped') THEN
            (SELECT p.at FROM fanout_pages p
             WHERE p.campaign_id = m.campaign_id AND p.sender_number_id = m.sender_number_id
               AND p.through >= m.id
             ORDER BY p.through LIMIT 1) END) AS queued_at,
        m.sent_at, m.delivered_at, m.read_at, m.failed_at
 FROM messages m
 LEFT JOIN campaign_numbers cn
     ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
 LEFT JOIN campaign_templates t ON t.campaign_id = m.campaign_id AND t.position = m.template,
 LATERAL (SELECT message_status_now(m.status, m.id, cn.fanout_appended) AS status) s
 WHERE m.campaign_id = $1 AND ($2::message_status IS NULL OR s.status = $2) AND m.id > $3
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
