//! Campaigns: creation, state, counters and the fan-out cursors.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use super::templates;
pub use super::templates::CampaignTemplate;
use crate::domain::{CampaignId, CampaignState, MessageId, MessageStatus, NumberId, TenantId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub name: String,
    pub state: CampaignState,
    pub state_reason: Option<String>,
    pub template_name: String,
    pub template_language: String,
    #[sqlx(flatten)]
    pub counters: Counters,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// `start` or `expire`: what a scheduled start missed while Herald was down does.
    pub overdue: String,
}

/// A campaign's counters: one per message status (always equal to a `GROUP BY status` over
/// its messages), plus engagement counts that are not statuses.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sqlx::FromRow,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(default)]
pub struct Counters {
    pub total: i64,
    pub pending: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub suppressed: i64,
    /// Not sent: a free-form message to a user outside their 24-hour window.
    pub skipped: i64,
    pub clicked: i64,
    pub replied: i64,
}

impl Counters {
    /// The counter kept for messages in `status`.
    pub fn of(&self, status: MessageStatus) -> i64 {
        match status {
            MessageStatus::Pending => self.pending,
            MessageStatus::Queued => self.queued,
            MessageStatus::Sent => self.sent,
            MessageStatus::Delivered => self.delivered,
            MessageStatus::Read => self.read,
            MessageStatus::Failed => self.failed,
            MessageStatus::Cancelled => self.cancelled,
            MessageStatus::Suppressed => self.suppressed,
            MessageStatus::Skipped => self.skipped,
        }
    }
}

pub struct NewCampaign<'a> {
    pub id: CampaignId,
    pub tenant: TenantId,
    pub name: &'a str,
    /// At least one; the first is also the campaign's `template_name` and `_language`.
    pub templates: &'a [CampaignTemplate],
    pub numbers: &'a [NumberId],
    /// Starts it then (the campaign is `scheduled`); a draft when `None`.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub overdue: &'a str,
}

pub async fn insert_campaign(
    tx: &mut Transaction<'_, Postgres>,
    c: &NewCampaign<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO campaigns
             (id, tenant_id, name, template_name, template_language, scheduled_at, overdue, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7,
                 CASE WHEN $6 IS NULL THEN 'draft' ELSE 'scheduled' END::campaign_state)",
    )
    .bind(c.id)
    .bind(c.tenant)
    .bind(c.name)
    .bind(&c.templates[0].name)
    .bind(&c.templates[0].language)
    .bind(c.scheduled_at)
    .bind(c.overdue)
    .execute(&mut **tx)
    .await?;
    templates::insert_campaign_templates(tx, c.id, c.templates).await?;
    let numbers: Vec<uuid::Uuid> = c.numbers.iter().map(|n| n.0).collect();
    sqlx::query(
        "INSERT INTO campaign_numbers (campaign_id, sender_number_id, position)
         SELECT $1, n, ord::int FROM UNNEST($2::uuid[]) WITH ORDINALITY AS t(n, ord)",
    )
    .bind(c.id)
    .bind(numbers)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get_campaign(
    pool: &PgPool,
    tenant: TenantId,
    id: CampaignId,
) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as("SELECT * FROM campaigns WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(pool)
        .await
}

/// The campaign's sender numbers, in the order they were given.
/// A page of `tenant`'s campaigns, newest first, before `before`, in `state` when given.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    state: Option<CampaignState>,
    before: Option<CampaignId>,
    limit: i64,
) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(
        "SELECT * FROM campaigns
         WHERE tenant_id = $1 AND ($2::campaign_state IS NULL OR state = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(state)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn campaign_numbers(pool: &PgPool, id: CampaignId) -> sqlx::Result<Vec<NumberId>> {
    sqlx::query_scalar(
        "SELECT sender_number_id FROM campaign_numbers WHERE campaign_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Moves a campaign from `from` to `to`; `false` when it was not in `from`.
pub async fn transition_campaign(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    id: CampaignId,
    from: &[CampaignState],
    to: CampaignState,
) -> sqlx::Result<bool> {
    // A campaign that would run with nothing to send (every recipient suppressed, or every
    // message settled while it was paused) completes at once: no message status will move
    // again to complete it later.
    let done = sqlx::query(
        "UPDATE campaigns
         SET state = CASE WHEN $4 = $5 AND pending = 0 AND queued = 0 THEN $8 ELSE $4 END,
             started_at = CASE WHEN $4 = $5
                               THEN coalesce(started_at, now()) ELSE started_at END,
             completed_at = CASE WHEN $4 = $6 OR ($4 = $5 AND pending = 0 AND queued = 0)
                                 THEN now() ELSE completed_at END,
             state_reason = CASE WHEN $4 = $5 THEN NULL ELSE state_reason END,
             resumed_at = CASE WHEN $4 = $5 AND state = $7 THEN now() ELSE resumed_at END
         WHERE id = $1 AND tenant_id = $2 AND state = ANY($3)",
    )
    .bind(id)
    .bind(tenant)
    .bind(from)
    .bind(to)
    .bind(CampaignState::Running)
    .bind(CampaignState::Cancelled)
    .bind(CampaignState::Paused)
    .bind(CampaignState::Completed)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Schedules a draft (or reschedules a scheduled) campaign of `tenant`; `false` when it is
/// neither.
pub async fn schedule(
    pool: &PgPool,
    tenant: TenantId,
    id: CampaignId,
    at: DateTime<Utc>,
    overdue: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE campaigns SET state = 'scheduled', scheduled_at = $3,
             overdue = coalesce($4, overdue), state_reason = NULL
         WHERE id = $1 AND tenant_id = $2 AND state IN ('draft', 'scheduled')",
    )
    .bind(id)
    .bind(tenant)
    .bind(at)
    .bind(overdue)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a scheduled campaign of `tenant` a draft again; `false` when it is not scheduled.
pub async fn unschedule(pool: &PgPool, tenant: TenantId, id: CampaignId) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE campaigns SET state = 'draft', scheduled_at = NULL
         WHERE id = $1 AND tenant_id = $2 AND state = 'scheduled'",
    )
    .bind(id)
    .bind(tenant)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A scheduled campaign whose time has come.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub scheduled_at: DateTime<Utc>,
    pub overdue: String,
}

/// The scheduled campaign due longest, locked for this transaction; one that another
/// scheduler holds is skipped (`SKIP LOCKED`), so each starts once whatever the replicas.
pub async fn claim_due(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<Option<Due>> {
    sqlx::query_as(
        "SELECT id, tenant_id, scheduled_at, overdue FROM campaigns
         WHERE state = 'scheduled' AND scheduled_at <= now()
         ORDER BY scheduled_at LIMIT 1
         FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Sets a claimed scheduled campaign's state and reason (a draft again, cancelled as
/// expired).
pub async fn settle_due(
    tx: &mut Transaction<'_, Postgres>,
    id: CampaignId,
    state: CampaignState,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE campaigns SET state = $2, state_reason = $3,
             completed_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE completed_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Campaigns that are running and may still have messages to fan out.
pub async fn running_campaigns(pool: &PgPool) -> sqlx::Result<Vec<CampaignId>> {
    sqlx::query_scalar("SELECT id FROM campaigns WHERE state = $1 AND pending > 0")
        .bind(CampaignState::Running)
        .fetch_all(pool)
        .await
}

/// A message ready to be rendered and fanned out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FanoutRow {
    pub id: MessageId,
    pub recipient: String,
    pub variables: sqlx::types::Json<crate::template::Values>,
    /// Which of the campaign's templates (its position).
    pub template: i16,
}

/// A campaign's number and how far its fan-out has gone (every message of the campaign for
/// that number at or below the cursor was handled), with the highest id it appended.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Lane {
    pub number: NumberId,
    pub cursor: i64,
    pub appended: i64,
}

/// The campaign's lanes, but those under repair (`db::repairs`): nothing is appended to a
/// stream that lost entries until they are appended again.
pub async fn fanout_lanes(pool: &PgPool, campaign: CampaignId) -> sqlx::Result<Vec<Lane>> {
    sqlx::query_as(
        "SELECT sender_number_id AS number, fanout_cursor AS cursor, fanout_appended AS appended
         FROM campaign_numbers
         WHERE campaign_id = $1 AND repair_since IS NULL ORDER BY position",
    )
    .bind(campaign)
    .fetch_all(pool)
    .await
}

/// The campaign's highest message id, if it has messages.
///
/// `ORDER BY id … LIMIT 1` rather than `max(id)` (and `min(id)` below): with an upload's
/// statistics not yet gathered the planner aggregated every one of the campaign's rows for
/// `max`; a limited index scan reads one entry whatever the estimates.
pub async fn last_message_id(pool: &PgPool, campaign: CampaignId) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(campaign)
        .fetch_optional(pool)
        .await
}

/// The campaign's first message for `number` after `after`, if any.
pub async fn next_message_id(
    pool: &PgPool,
    campaign: CampaignId,
    number: NumberId,
    after: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM messages
         WHERE campaign_id = $1 AND sender_number_id = $2 AND id > $3 ORDER BY id LIMIT 1",
    )
    .bind(campaign)
    .bind(number)
    .bind(after)
    .fetch_optional(pool)
    .await
}

/// Messages per status, counted from `messages` itself: what the counters must equal.
pub async fn count_by_status(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
) -> sqlx::Result<Vec<(MessageStatus, i64)>> {
    sqlx::query_as(
        "SELECT message_status_now(m.status, m.id, cn.fanout_appended), count(*)
         FROM messages m LEFT JOIN campaign_numbers cn
             ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
         WHERE m.campaign_id = $1 GROUP BY 1",
    )
    .bind(campaign)
    .fetch_all(db)
    .await
}

/// Every campaign running or paused, of every tenant, oldest first (`herald top`).
pub async fn active_campaigns(pool: &PgPool) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(
        "SELECT * FROM campaigns WHERE state IN ('running', 'paused') ORDER BY started_at, id",
    )
    .fetch_all(pool)
    .await
}

/// The counters of every running campaign.
pub async fn running_counters(pool: &PgPool) -> sqlx::Result<Vec<(CampaignId, Counters)>> {
    let rows: Vec<CampaignRow> = sqlx::query_as("SELECT * FROM campaigns WHERE state = 'running'")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|c| (c.id, c.counters)).collect())
}

/// How one sender number is doing in a campaign.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NumberShare {
    pub id: NumberId,
    pub display_number: String,
    pub state: crate::domain::NumberState,
    /// The rate it is paced at now (msg/s).
    pub rate: i32,
    /// Messages of the campaign it sent (sent, delivered or read).
    pub sent: i64,
    pub failed: i64,
    /// Messages of the campaign still to send from it (pending or queued).
    pub waiting: i64,
}

/// The campaign's messages by sender number: each lane's counts (`lane_counts`), kept with
/// the campaign's counters.
pub async fn by_number(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
) -> sqlx::Result<Vec<NumberShare>> {
    sqlx::query_as(
        "SELECT n.id, n.display_number, n.state, n.current_rate AS rate, l.sent, l.failed,
                l.waiting
         FROM lane_counts l JOIN sender_numbers n ON n.id = l.sender_number_id
         WHERE l.campaign_id = $1 AND l.total > 0
         ORDER BY n.id",
    )
    .bind(campaign)
    .fetch_all(db)
    .await
}

/// A campaign's failed messages with one error code.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    sqlx::FromRow,
    utoipa::ToSchema,
)]
pub struct FailureGroup {
    /// The Cloud API's error code; `null` for failures that carried none.
    pub code: Option<i32>,
    /// The error's title as Meta gave it (the most frequent, when they differ).
    pub title: Option<String>,
    pub count: i64,
}

/// A campaign's failed messages by error code, most first.
pub async fn failures_by_code(pool: &PgPool, id: CampaignId) -> sqlx::Result<Vec<FailureGroup>> {
    sqlx::query_as(
        "SELECT error_code AS code, mode() WITHIN GROUP (ORDER BY error_title) AS title,
                count(*) AS count
         FROM messages
         WHERE campaign_id = $1 AND status = 'failed'
         GROUP BY error_code ORDER BY count DESC, error_code",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// The tenant a campaign belongs to.
pub async fn tenant_of(pool: &PgPool, id: CampaignId) -> sqlx::Result<Option<TenantId>> {
    sqlx::query_scalar("SELECT tenant_id FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Campaigns whose messages must not be sent now (paused or cancelled), with their state.
pub async fn held_campaigns(pool: &PgPool) -> sqlx::Result<Vec<(CampaignId, CampaignState)>> {
    sqlx::query_as("SELECT id, state FROM campaigns WHERE state = ANY($1)")
        .bind([CampaignState::Paused, CampaignState::Cancelled])
        .fetch_all(pool)
        .await
}

/// Pauses a running campaign with a reason, for a send that began at `send_started`; `false`
/// when it was not running, or was resumed after that send began (the error is stale: the
/// operator fixed what it was about, and a send begun since will pause it again if not).
pub async fn pause_campaign(
    db: impl PgExecutor<'_>,
    id: CampaignId,
    reason: &str,
    send_started: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE campaigns SET state = $2, state_reason = $3
         WHERE id = $1 AND state = $4 AND (resumed_at IS NULL OR resumed_at < $5)",
    )
    .bind(id)
    .bind(CampaignState::Paused)
    .bind(reason)
    .bind(CampaignState::Running)
    .bind(send_started)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The running campaigns that send template `name` (in `language`, or any when `None`) from a
/// number of WABA `waba`.
pub async fn running_with_template(
    db: impl PgExecutor<'_>,
    waba: &str,
    name: &str,
    language: Option<&str>,
) -> sqlx::Result<Vec<CampaignId>> {
    sqlx::query_scalar(
        "SELECT c.id FROM campaigns c
         WHERE c.state = $4
           AND EXISTS (SELECT 1 FROM campaign_templates ct
                       WHERE ct.campaign_id = c.id AND ct.name = $2 AND ct.message IS NULL
                         AND ($3::text IS NULL OR ct.language = $3))
           AND EXISTS (SELECT 1 FROM campaign_numbers cn
                       JOIN sender_numbers n ON n.id = cn.sender_number_id
                       WHERE cn.campaign_id = c.id AND n.waba_id = $1)
         ORDER BY c.id",
    )
    .bind(waba)
    .bind(name)
    .bind(language)
    .bind(CampaignState::Running)
    .fetch_all(db)
    .await
}

/// Pauses those of `ids` still running, with a reason. Returns how many. The caller has locked
/// them (see `transitions`).
pub async fn pause_running(
    db: impl PgExecutor<'_>,
    ids: &[CampaignId],
    reason: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE campaigns SET state = $2, state_reason = $3 WHERE id = ANY($1) AND state = $4",
    )
    .bind(ids)
    .bind(CampaignState::Paused)
    .bind(reason)
    .bind(CampaignState::Running)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// One change of a campaign's state (`campaign_state_changes`).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    pub id: i64,
    pub state: CampaignState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The campaign's state changes after `after`, oldest first.
pub async fn state_changes(
    pool: &PgPool,
    campaign: CampaignId,
    after: i64,
) -> sqlx::Result<Vec<StateChange>> {
    sqlx::query_as(
        "SELECT id, state, reason, at FROM campaign_state_changes
         WHERE campaign_id = $1 AND id > $2 ORDER BY id",
    )
    .bind(campaign)
    .bind(after)
    .fetch_all(pool)
    .await
}
