//! Tenants and their API keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::TenantId;

pub async fn insert_tenant(pool: &PgPool, id: TenantId, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// An API key as its tenant sees it (never the key itself: only its hash is stored).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ApiKeyRow {
    pub id: uuid::Uuid,
    pub name: String,
    /// The key's start, to tell keys apart (`hk_…`).
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn insert_api_key(
    pool: &PgPool,
    tenant: TenantId,
    name: &str,
    prefix: &str,
    secret_hash: &[u8],
) -> sqlx::Result<ApiKeyRow> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, prefix, created_at, last_used_at",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(name)
    .bind(prefix)
    .bind(secret_hash)
    .fetch_one(pool)
    .await
}

/// The tenant owning the (unrevoked) key with this hash; notes the key's use (at most once a
/// minute, so that authentication stays a read almost always).
pub async fn tenant_for_key(pool: &PgPool, secret_hash: &[u8]) -> sqlx::Result<Option<TenantId>> {
    sqlx::query_scalar(
        "WITH k AS (
             SELECT id, tenant_id, last_used_at FROM api_keys
             WHERE secret_hash = $1 AND revoked_at IS NULL
         ), used AS (
             UPDATE api_keys a SET last_used_at = now() FROM k
             WHERE a.id = k.id
               AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
         )
         SELECT tenant_id FROM k",
    )
    .bind(secret_hash)
    .fetch_optional(pool)
    .await
}

/// A page of the tenant's active keys, oldest first, after `after`.
pub async fn api_keys(
    pool: &PgPool,
    tenant: TenantId,
    after: Option<uuid::Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as(
        "SELECT id, name, prefix, created_at, last_used_at FROM api_keys
         WHERE tenant_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Why a key could not be revoked.
#[derive(Debug, PartialEq, Eq)]
pub enum Revoke {
    Revoked,
    NotFound,
    /// It is the tenant's last active key.
    Last,
}

/// Revokes one of the tenant's keys, unless it is its last (the tenant would be locked out).
/// Requests with it are refused from the moment this commits, on every replica (keys are
/// looked up on each request).
pub async fn revoke_api_key(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> sqlx::Result<Revoke> {
    let mut tx = pool.begin().await?;
    // The tenant's active keys, locked: two revocations at once cannot leave none.
    let active: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    if !active.contains(&id) {
        return Ok(Revoke::NotFound);
    }
    if active.len() == 1 {
        return Ok(Revoke::Last);
    }
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Revoke::Revoked)
}
