//! Recipient uploads and the rows they refused.

use sqlx::PgPool;

use crate::domain::{CampaignId, TenantId};

/// What an upload added, and how many rows it refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadCounts {
    pub rows: i64,
    pub accepted: i64,
    pub duplicates: i64,
    pub suppressed: i64,
    pub rejected: i64,
}

pub async fn begin(pool: &PgPool, campaign: CampaignId) -> sqlx::Result<uuid::Uuid> {
    let id = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO uploads (id, campaign_id) VALUES ($1, $2)")
        .bind(id)
        .bind(campaign)
        .execute(pool)
        .await?;
    Ok(id)
}

/// Stores refused rows: `(row, field, reason)`.
pub async fn add_errors(
    pool: &PgPool,
    upload: uuid::Uuid,
    errors: &[(i64, &str, &str)],
) -> sqlx::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let rows: Vec<i64> = errors.iter().map(|e| e.0).collect();
    let fields: Vec<&str> = errors.iter().map(|e| e.1).collect();
    let reasons: Vec<&str> = errors.iter().map(|e| e.2).collect();
    sqlx::query(
        "INSERT INTO upload_errors (upload_id, row, field, reason)
         SELECT $1, r, f, w FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS t(r, f, w)",
    )
    .bind(upload)
    .bind(rows)
    .bind(fields)
    .bind(reasons)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn finish(pool: &PgPool, upload: uuid::Uuid, c: &UploadCounts) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE uploads SET finished_at = now(), rows = $2, accepted = $3, duplicates = $4,
             suppressed = $5, rejected = $6
         WHERE id = $1",
    )
    .bind(upload)
    .bind(c.rows)
    .bind(c.accepted)
    .bind(c.duplicates)
    .bind(c.suppressed)
    .bind(c.rejected)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether `upload` is one of campaign `campaign` of `tenant`.
pub async fn belongs(
    pool: &PgPool,
    tenant: TenantId,
    campaign: CampaignId,
    upload: uuid::Uuid,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM uploads u JOIN campaigns c ON c.id = u.campaign_id
                        WHERE u.id = $1 AND c.id = $2 AND c.tenant_id = $3)",
    )
    .bind(upload)
    .bind(campaign)
    .bind(tenant)
    .fetch_one(pool)
    .await
}

/// Refused rows after position `after` (row, then insertion), at most `limit`.
pub async fn errors_after(
    pool: &PgPool,
    upload: uuid::Uuid,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<(i64, String, String)>> {
    sqlx::query_as(
        "SELECT row, field, reason FROM upload_errors
         WHERE upload_id = $1 AND row > $2 ORDER BY row LIMIT $3",
    )
    .bind(upload)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
