//! Tenants and their API keys.

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

pub async fn insert_api_key(
    pool: &PgPool,
    tenant: TenantId,
    prefix: &str,
    secret_hash: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(prefix)
    .bind(secret_hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// The tenant owning the (unrevoked) key with this hash.
pub async fn tenant_for_key(pool: &PgPool, secret_hash: &[u8]) -> sqlx::Result<Option<TenantId>> {
    sqlx::query_scalar(
        "SELECT tenant_id FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(secret_hash)
    .fetch_optional(pool)
    .await
}
