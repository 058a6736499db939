//! `Idempotency-Key`: the first answer to each key of a tenant, for 24 hours.

use sqlx::PgPool;

use crate::domain::TenantId;

/// A key's record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    pub request_hash: Option<Vec<u8>>,
    /// `None` while the first request is still being processed.
    pub status: Option<i16>,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
}

/// Claims `key` for a request about to be processed; `None` when it is new (now claimed),
/// else what the key holds. Records older than 24 hours are forgotten first.
pub async fn claim(pool: &PgPool, tenant: TenantId, key: &str) -> sqlx::Result<Option<Recorded>> {
    sqlx::query(
        "DELETE FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2 AND created_at < now() - interval '24 hours'",
    )
    .bind(tenant)
    .bind(key)
    .execute(pool)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(key)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT request_hash, status, content_type, body FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Keeps the answer to the request claimed with `key`.
pub async fn record(
    pool: &PgPool,
    tenant: TenantId,
    key: &str,
    request_hash: &[u8],
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET request_hash = $3, status = $4, content_type = $5, body = $6
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant)
    .bind(key)
    .bind(request_hash)
    .bind(status as i16)
    .bind(content_type)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives `key` up (the request failed on Herald's side, or its body was not read whole): a
/// retry is processed afresh.
pub async fn release(pool: &PgPool, tenant: TenantId, key: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status IS NULL",
    )
    .bind(tenant)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets records older than 24 hours; how many.
pub async fn prune(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
