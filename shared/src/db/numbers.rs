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
}

pub struct NewNumber<'a> {
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

/// Inserts a number; `Ok(false)` when its `phone_number_id` is already registered.
pub async fn insert_number(pool: &PgPool, n: &NewNumber<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO sender_numbers
            (id, tenant_id, phone_number_id, waba_id, display_number, access_token,
             throughput_ceiling, current_rate, portfolio_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (phone_number_id) DO NOTHING",
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

/// The numbers among `ids` that belong to `tenant`.
pub async fn owned_numbers(
    pool: &PgPool,
    tenant: TenantId,
    ids: &[NumberId],
) -> sqlx::Result<Vec<NumberId>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|n| n.0).collect();
    sqlx::query_scalar("SELECT id FROM sender_numbers WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
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
    version: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sender_numbers SET state = $2, updated_at = now()
         WHERE id = $1 AND state = $3 AND updated_at = $4",
    )
    .bind(id)
    .bind(state)
    .bind(NumberState::Active)
    .bind(version)
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
         SET state = $3, access_token = coalesce($4, access_token), updated_at = now()
         WHERE id = $1 AND tenant_id = $2",
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
