//! The tenants' suppressions: who must receive nothing more, and since when.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::domain::{CampaignId, MessageId, TenantId};

/// Why a recipient is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The user said so (STOP, an opt-out button, Meta's marketing preference).
    OptOut,
    /// An operator said so (the API).
    Manual,
    /// Meta said the user cannot be sent to (131050: they stopped marketing messages).
    PermanentFailure,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::OptOut => "opt_out",
            Reason::Manual => "manual",
            Reason::PermanentFailure => "permanent_failure",
        }
    }
}

/// One change to apply: a suppression (`active`) or its lifting, at `at`.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The canonical recipient (`suppress::key`).
    pub key: &'a str,
    pub active: bool,
    pub reason: Reason,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
    /// Lifting: any suppression (the API), or only the user's own opt-out (a `resume`).
    pub lift_any: bool,
}

/// The upsert for one tenant, given by `$1` as a subquery of the tenant's id. A change older
/// than the one stored is ignored; a user's `resume` lifts only their own opt-out; an
/// operator's suppression keeps its reason when the user also says stop. A resume with nothing
/// stored leaves an inactive row, so that an older stop arriving later is ignored too.
const UPSERT: &str = "
    INSERT INTO suppressions (tenant_id, recipient, reason, note, active, changed_at)
    SELECT t, $2, $3::suppression_reason, $4, $5, $6 FROM (SELECT ($1) AS t) q WHERE t IS NOT NULL
    ON CONFLICT (tenant_id, recipient) DO UPDATE SET
        active = EXCLUDED.active,
        reason = CASE WHEN suppressions.active AND suppressions.reason <> 'opt_out'
                      THEN suppressions.reason ELSE EXCLUDED.reason END,
        note = coalesce(EXCLUDED.note, suppressions.note),
        changed_at = EXCLUDED.changed_at
    WHERE suppressions.changed_at <= EXCLUDED.changed_at
      AND (EXCLUDED.active OR $7 OR suppressions.reason = 'opt_out')
    RETURNING tenant_id";

/// Whose suppression: a tenant's, or that of the tenant of a business number or a campaign.
enum Whose<'a> {
    Tenant(TenantId),
    Number(&'a str),
    Campaign(CampaignId),
}

async fn upsert(
    db: impl PgExecutor<'_>,
    whose: Whose<'_>,
    c: &Change<'_>,
) -> sqlx::Result<Option<TenantId>> {
    let tenant = match whose {
        Whose::Tenant(_) => "$1::uuid",
        Whose::Number(_) => {
            "(SELECT tenant_id FROM sender_numbers WHERE phone_number_id = $1 AND deleted_at IS NULL)"
        }
        Whose::Campaign(_) => "(SELECT tenant_id FROM campaigns WHERE id = $1)",
    };
    let statement = UPSERT.replace("($1)", tenant);
    let query = sqlx::query_scalar(sqlx::AssertSqlSafe(statement));
    let query = match whose {
        Whose::Tenant(t) => query.bind(t),
        Whose::Number(n) => query.bind(n),
        Whose::Campaign(id) => query.bind(id),
    };
    query
        .bind(c.key)
        .bind(c.reason.as_str())
        .bind(c.note)
        .bind(c.active)
        .bind(c.at)
        .bind(c.lift_any)
        .fetch_optional(db)
        .await
}

/// Applies a change for `tenant`; `false` when an equal or newer one was already stored (or a
/// resume met an operator's suppression).
pub async fn set(db: impl PgExecutor<'_>, tenant: TenantId, c: &Change<'_>) -> sqlx::Result<bool> {
    Ok(upsert(db, Whose::Tenant(tenant), c).await?.is_some())
}

/// Applies a user's change for the tenant of business number `phone_number_id`; the tenant
/// when it applied.
pub async fn set_by_number(
    db: impl PgExecutor<'_>,
    phone_number_id: &str,
    c: &Change<'_>,
) -> sqlx::Result<Option<TenantId>> {
    upsert(db, Whose::Number(phone_number_id), c).await
}

/// Applies a change for the tenant of `campaign`; the tenant when it applied.
pub async fn set_for_campaign(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
    c: &Change<'_>,
) -> sqlx::Result<Option<TenantId>> {
    upsert(db, Whose::Campaign(campaign), c).await
}

/// Whether `tenant` suppresses `key` now.
pub async fn is_active(pool: &PgPool, tenant: TenantId, key: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM suppressions
                        WHERE tenant_id = $1 AND recipient = $2 AND active)",
    )
    .bind(tenant)
    .bind(key)
    .fetch_one(pool)
    .await
}

/// Every active suppression, of every tenant (a sender's cache at start).
pub async fn all_active(pool: &PgPool) -> sqlx::Result<Vec<(TenantId, String)>> {
    sqlx::query_as("SELECT tenant_id, recipient FROM suppressions WHERE active")
        .fetch_all(pool)
        .await
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SuppressionRow {
    pub recipient: String,
    pub reason: String,
    pub note: Option<String>,
    pub changed_at: DateTime<Utc>,
}

/// The tenant's active suppressions after `after` (by recipient), at most `limit`; only
/// those whose number contains `digits`, when given.
pub async fn page(
    pool: &PgPool,
    tenant: TenantId,
    after: &str,
    digits: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<SuppressionRow>> {
    sqlx::query_as(
        "SELECT recipient, reason::text AS reason, note, changed_at FROM suppressions
         WHERE tenant_id = $1 AND active AND recipient > $2
           AND ($3::text IS NULL OR strpos(recipient, $3) > 0)
         ORDER BY recipient LIMIT $4",
    )
    .bind(tenant)
    .bind(after)
    .bind(digits)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The tenant's messages to any of `forms` not yet fanned out (`pending`), in campaigns that
/// may still send.
pub async fn pending_to(
    pool: &PgPool,
    tenant: TenantId,
    forms: &[String],
) -> sqlx::Result<Vec<MessageId>> {
    sqlx::query_scalar(
        "SELECT m.id FROM messages m JOIN campaigns c ON c.id = m.campaign_id
         JOIN campaign_numbers cn
             ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
         WHERE c.tenant_id = $1 AND m.recipient = ANY($2) AND m.status = 'pending'
           AND m.id > cn.fanout_appended
           AND c.state IN ('draft', 'scheduled', 'running', 'paused')
         ORDER BY m.id",
    )
    .bind(tenant)
    .bind(forms)
    .fetch_all(pool)
    .await
}
