//! Lanes whose stream lost entries (Redis lost data) and their repair.
//!
//! Invariant: a lane's `fanout_appended` (what Postgres knows fan-out appended) is never above
//! the stream's own record of it unless Redis lost data. A lane found behind is opened for
//! repair with `repair_from`, what Redis still had; fan-out appends nothing to it meanwhile.
//! Once the reconciliation window has passed (sends in flight recorded, receipts carrying the
//! message id applied), its messages in `repair_from..=fanout_appended` still `pending` or
//! `queued` are appended again and the repair closed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::campaigns::FanoutRow;
use crate::domain::{CampaignId, MessageStatus, NumberId};

/// A lane of a campaign under way that appended something, for checking against its stream.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Appended {
    pub campaign: CampaignId,
    pub number: NumberId,
    pub appended: i64,
}

/// The lanes of running and paused campaigns that appended something and are not under repair.
pub async fn lanes_to_check(pool: &PgPool) -> sqlx::Result<Vec<Appended>> {
    sqlx::query_as(
        "SELECT cn.campaign_id AS campaign, cn.sender_number_id AS number,
                cn.fanout_appended AS appended
         FROM campaign_numbers cn JOIN campaigns c ON c.id = cn.campaign_id
         WHERE c.state IN ('running', 'paused') AND cn.fanout_appended > 0
           AND cn.repair_since IS NULL",
    )
    .fetch_all(pool)
    .await
}

/// Opens a repair of the lane, whose stream still has what was appended up to `from`; `false`
/// when one is open already.
pub async fn open(
    pool: &PgPool,
    campaign: CampaignId,
    number: NumberId,
    from: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE campaign_numbers SET repair_from = $3, repair_since = now()
         WHERE campaign_id = $1 AND sender_number_id = $2 AND repair_since IS NULL",
    )
    .bind(campaign)
    .bind(number)
    .bind(from)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A lane under repair.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Repair {
    pub campaign: CampaignId,
    pub number: NumberId,
    /// What its stream still had (its record of what was appended), and what had been.
    pub lost_after: i64,
    pub through: i64,
    pub since: DateTime<Utc>,
}

/// Every open repair, oldest first.
pub async fn open_repairs(pool: &PgPool) -> sqlx::Result<Vec<Repair>> {
    sqlx::query_as(
        "SELECT campaign_id AS campaign, sender_number_id AS number, repair_from AS lost_after,
                fanout_appended AS through, repair_since AS since
         FROM campaign_numbers WHERE repair_since IS NOT NULL ORDER BY repair_since",
    )
    .fetch_all(pool)
    .await
}

/// Whether `repair` has waited `window`.
pub fn is_due(repair: &Repair, window: Duration, now: DateTime<Utc>) -> bool {
    now - repair.since >= chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
}

/// Up to `limit` of the repair's messages after `after` not yet sent (`pending` or `queued`),
/// by id.
pub async fn unsent(
    pool: &PgPool,
    repair: &Repair,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<FanoutRow>> {
    sqlx::query_as(
        "SELECT id, recipient, variables, template FROM messages
         WHERE campaign_id = $1 AND sender_number_id = $2 AND id > $3 AND id <= $4
           AND status IN ($5, $6)
         ORDER BY id LIMIT $7",
    )
    .bind(repair.campaign)
    .bind(repair.number)
    .bind(after)
    .bind(repair.through)
    .bind(MessageStatus::Pending)
    .bind(MessageStatus::Queued)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Closes the lane's repair: fan-out goes on.
pub async fn close(pool: &PgPool, repair: &Repair) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE campaign_numbers SET repair_from = NULL, repair_since = NULL
         WHERE campaign_id = $1 AND sender_number_id = $2",
    )
    .bind(repair.campaign)
    .bind(repair.number)
    .execute(pool)
    .await?;
    Ok(())
}
