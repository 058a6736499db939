//! Sender numbers.

use sqlx::{PgExecutor, PgPool};

use crate::domain::{NumberId, NumberState, TenantId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NumberRow {
    pub id: NumberId,
    pub tenant_id: TenantId,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_number: String,
    /// Encrypted; see `crypto::TokenCipher`.
    pub access_token: Vec<u8>,
    pub state: NumberState,
    pub throughput_ceiling: i32,
    pub current_rate: i32,
    pub portfolio_id: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The portfolio's limit of unique recipients per rolling 24 h; `None` is unlimited.
    pub daily_recipient_limit: Option<i32>,
    /// Why the number is not active (the Cloud API error that paused it).
    pub state_reason: Option<String>,
    /// What the last connection test found.
    #[sqlx(flatten)]
    pub tested: TestFindings,
}

/// What a connection test (`GET /{phone_number_id}`) found, as stored.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct TestFindings {
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub messaging_limit: Option<String>,
    pub throughput_level: Option<String>,
    pub tested_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct NewNumber<'a> {
    pub tested: Option<&'a TestFindings>,
    pub id: NumberId,
    pub tenant: TenantId,
    pub phone_number_id: &'a str,
    pub waba_id: &'a str,
    pub display_number: &'a str,
    pub access_token: &'a [u8],
    pub throughput_ceiling: i32,
    pub current_rate: i32,
    pub portfolio_id: Option<&'a str>,
}

/// The highest fencing token recorded for `number` (0 when none was).
pub async fn fence(pool: &PgPool, number: NumberId) -> sqlx::Result<i64> {
    let fence: Option<i64> = sqlx::query_scalar("SELECT fence FROM sender_numbers WHERE id = $1")
        .bind(number)
        .fetch_optional(pool)
        .await?;
    Ok(fence.unwrap_or(0))
}

/// Records that `number`'s lease was taken with token `fence`.
pub async fn record_fence(pool: &PgPool, number: NumberId, fence: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE sender_numbers SET fence = greatest(fence, $2) WHERE id = $1")
        .bind(number)
        .bind(fence)
        .execute(pool)
        .await?;
    Ok(())
}

/// How many numbers `tenant` has registered (deleted ones aside).
pub async fn count_of_tenant(pool: &PgPool, tenant: TenantId) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM sender_numbers WHERE tenant_id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
}

/// Inserts a number; `Ok(false)` when its `phone_number_id` is already registered.
pub async fn insert_number(pool: &PgPool, n: &NewNumber<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO sender_numbers
            (id, tenant_id, phone_number_id, waba_id, display_number, access_token,
             throughput_ceiling, current_rate, portfolio_id, verified_name, quality_rating,
             messaging_limit, throughput_level, tested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (phone_number_id) WHERE deleted_at IS NULL DO NOTHING",
    )
    .bind(n.id)
    .bind(n.tenant)
    .bind(n.phone_number_id)
    .bind(n.waba_id)
    .bind(n.display_number)
    .bind(n.access_token)
    .bind(n.throughput_ceiling)
    .bind(n.current_rate)
    .bind(n.portfolio_id)
    .bind(n.tested.and_then(|t| t.verified_name.as_deref()))
    .bind(n.tested.and_then(|t| t.quality_rating.as_deref()))
    .bind(n.tested.and_then(|t| t.messaging_limit.as_deref()))
    .bind(n.tested.and_then(|t| t.throughput_level.as_deref()))
    .bind(n.tested.and_then(|t| t.tested_at))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get_number(pool: &PgPool, id: NumberId) -> sqlx::Result<Option<NumberRow>> {
    sqlx::query_as(
        "SELECT n.*, p.daily_recipient_limit FROM sender_numbers n
         LEFT JOIN portfolios p ON p.tenant_id = n.tenant_id AND p.id = n.portfolio_id
         WHERE n.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// `tenant`'s numbers (not deleted), oldest first.
pub async fn list_numbers(
    pool: &PgPool,
    tenant: TenantId,
    after: Option<NumberId>,
    limit: i64,
) -> sqlx::Result<Vec<NumberRow>> {
    sqlx::query_as(
        "SELECT n.*, p.daily_recipient_limit FROM sender_numbers n
         LEFT JOIN portfolios p ON p.tenant_id = n.tenant_id AND p.id = n.portfolio_id
         WHERE n.tenant_id = $1 AND n.deleted_at IS NULL AND ($2::uuid IS NULL OR n.id > $2)
         ORDER BY n.id LIMIT $3",
    )
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One of `tenant`'s numbers (not deleted).
pub async fn tenant_number(
    pool: &PgPool,
    tenant: TenantId,
    id: NumberId,
) -> sqlx::Result<Option<NumberRow>> {
    sqlx::query_as(
        "SELECT n.*, p.daily_recipient_limit FROM sender_numbers n
         LEFT JOIN portfolios p ON p.tenant_id = n.tenant_id AND p.id = n.portfolio_id
         WHERE n.id = $1 AND n.tenant_id = $2 AND n.deleted_at IS NULL",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// What `PATCH /v1/numbers/{id}` may change; `None` leaves a field alone.
pub struct NumberChanges<'a> {
    pub display_number: Option<&'a str>,
    pub throughput_ceiling: Option<i32>,
    /// `Some(None)` takes the number out of its portfolio.
    pub portfolio_id: Option<Option<&'a str>>,
}

/// Changes one of `tenant`'s numbers; the current rate is lowered to a lowered ceiling. Touches
/// `updated_at` so that its sender restarts with the change. `false` when there is no such
/// number.
pub async fn update_number(
    pool: &PgPool,
    tenant: TenantId,
    id: NumberId,
    c: &NumberChanges<'_>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sender_numbers SET
             display_number = coalesce($3, display_number),
             throughput_ceiling = coalesce($4, throughput_ceiling),
             current_rate = least(current_rate, coalesce($4, throughput_ceiling)),
             portfolio_id = CASE WHEN $5 THEN $6 ELSE portfolio_id END,
             updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(tenant)
    .bind(c.display_number)
    .bind(c.throughput_ceiling)
    .bind(c.portfolio_id.is_some())
    .bind(c.portfolio_id.flatten())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores what a connection test found.
pub async fn record_test(pool: &PgPool, id: NumberId, t: &TestFindings) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sender_numbers SET verified_name = $2, quality_rating = $3,
             messaging_limit = $4, throughput_level = $5, tested_at = $6
         WHERE id = $1",
    )
    .bind(id)
    .bind(&t.verified_name)
    .bind(&t.quality_rating)
    .bind(&t.messaging_limit)
    .bind(&t.throughput_level)
    .bind(t.tested_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// How deleting a number went.
#[derive(Debug, PartialEq)]
pub enum Deletion {
    Deleted,
    NotFound,
    /// Campaigns not yet finished that send from it, `(id, state)`.
    InUse(Vec<(uuid::Uuid, crate::domain::CampaignState)>),
}

/// Deletes one of `tenant`'s numbers unless a campaign that is not finished uses it. The row
/// stays (its messages refer to it), disabled and marked deleted; the number's lock is taken
/// first so that no campaign can start with it in between.
pub async fn delete_number(
    pool: &PgPool,
    tenant: TenantId,
    id: NumberId,
) -> sqlx::Result<Deletion> {
    use crate::domain::CampaignState::*;
    let mut tx = pool.begin().await?;
    let found: Option<NumberId> = sqlx::query_scalar(
        "SELECT id FROM sender_numbers
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(Deletion::NotFound);
    }
    let users: Vec<(uuid::Uuid, crate::domain::CampaignState)> = sqlx::query_as(
        "SELECT c.id, c.state FROM campaign_numbers cn JOIN campaigns c ON c.id = cn.campaign_id
         WHERE cn.sender_number_id = $1 AND c.state = ANY($2)
         ORDER BY c.created_at",
    )
    .bind(id)
    .bind([Draft, Scheduled, Running, Paused])
    .fetch_all(&mut *tx)
    .await?;
    if !users.is_empty() {
        return Ok(Deletion::InUse(users));
    }
    sqlx::query(
        "UPDATE sender_numbers SET state = $2, state_reason = 'deleted', deleted_at = now(),
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(NumberState::Disabled)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Deletion::Deleted)
}

/// The numbers among `ids` that belong to `tenant` (and are not deleted).
pub async fn owned_numbers(
    pool: &PgPool,
    tenant: TenantId,
    ids: &[NumberId],
) -> sqlx::Result<Vec<NumberId>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|n| n.0).collect();
    sqlx::query_scalar(
        "SELECT id FROM sender_numbers
         WHERE tenant_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Every number of every tenant (not deleted), for the operators' `herald lag`.
pub async fn all_numbers(pool: &PgPool) -> sqlx::Result<Vec<NumberRow>> {
    sqlx::query_as(
        "SELECT n.*, p.daily_recipient_limit FROM sender_numbers n
         LEFT JOIN portfolios p ON p.tenant_id = n.tenant_id AND p.id = n.portfolio_id
         WHERE n.deleted_at IS NULL
         ORDER BY n.display_number, n.id",
    )
    .fetch_all(pool)
    .await
}

/// The WABAs of `ids`.
pub async fn wabas(pool: &PgPool, ids: &[NumberId]) -> sqlx::Result<Vec<String>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|n| n.0).collect();
    sqlx::query_scalar(
        "SELECT DISTINCT waba_id FROM sender_numbers WHERE id = ANY($1) ORDER BY waba_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The WABAs of `tenant`'s numbers.
pub async fn tenant_wabas(pool: &PgPool, tenant: TenantId) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT waba_id FROM sender_numbers
         WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY waba_id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// The encrypted tokens of `tenant`'s numbers of `waba`, active numbers first: any of them
/// can read the WABA's templates.
pub async fn waba_tokens(
    pool: &PgPool,
    tenant: TenantId,
    waba: &str,
) -> sqlx::Result<Vec<(NumberId, Vec<u8>)>> {
    sqlx::query_as(
        "SELECT id, access_token FROM sender_numbers
         WHERE tenant_id = $1 AND waba_id = $2 AND deleted_at IS NULL
         ORDER BY state <> 'active', updated_at DESC",
    )
    .bind(tenant)
    .bind(waba)
    .fetch_all(pool)
    .await
}

/// Every number that may send.
pub async fn active_numbers(pool: &PgPool) -> sqlx::Result<Vec<NumberId>> {
    sqlx::query_scalar("SELECT id FROM sender_numbers WHERE state = $1")
        .bind(NumberState::Active)
        .fetch_all(pool)
        .await
}

/// Pauses a number that is active and unchanged since `version` (its `updated_at` when the
/// failing send was made); `false` otherwise, so that a send made with a token since replaced
/// cannot pause the number again.
pub async fn pause_number(
    db: impl PgExecutor<'_>,
    id: NumberId,
    state: NumberState,
    reason: &str,
    version: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sender_numbers SET state = $2, state_reason = $5, updated_at = now()
         WHERE id = $1 AND state = $3 AND updated_at = $4",
    )
    .bind(id)
    .bind(state)
    .bind(NumberState::Active)
    .bind(version)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a number of `tenant` active again, with a new encrypted token if given; `false` when
/// the tenant has no such number.
pub async fn resume_number(
    pool: &PgPool,
    tenant: TenantId,
    id: NumberId,
    access_token: Option<&[u8]>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sender_numbers
         SET state = $3, state_reason = NULL, access_token = coalesce($4, access_token),
             updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(tenant)
    .bind(NumberState::Active)
    .bind(access_token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The state of each of `ids`, and when its row last changed (a new token, a pause).
pub async fn number_states(
    pool: &PgPool,
    ids: &[NumberId],
) -> sqlx::Result<Vec<(NumberId, NumberState, chrono::DateTime<chrono::Utc>)>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|n| n.0).collect();
    sqlx::query_as("SELECT id, state, updated_at FROM sender_numbers WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// Stores a number's adaptive rate, so that its next owner starts there. Leaves `updated_at`
/// alone: a rate change is not a new configuration of the number.
pub async fn set_rate(db: impl PgExecutor<'_>, id: NumberId, rate: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE sender_numbers SET current_rate = $2 WHERE id = $1")
        .bind(id)
        .bind(rate)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the daily recipient limit of one of `tenant`'s portfolios (`None`: unlimited), and
/// touches its numbers so that their senders restart with it.
pub async fn set_portfolio_limit(
    pool: &PgPool,
    tenant: TenantId,
    portfolio: &str,
    limit: Option<i32>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO portfolios (tenant_id, id, daily_recipient_limit) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, id)
         DO UPDATE SET daily_recipient_limit = $3, updated_at = now()",
    )
    .bind(tenant)
    .bind(portfolio)
    .bind(limit)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE sender_numbers SET updated_at = now() WHERE tenant_id = $1 AND portfolio_id = $2",
    )
    .bind(tenant)
    .bind(portfolio)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
