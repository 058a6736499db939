//! Templates synced from Graph, per tenant and WABA, and the templates of each campaign.

use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::domain::{CampaignId, TenantId};
use crate::template::{Spec, Values};
use crate::whatsapp::account::GraphTemplate;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: String,
    pub sub_category: Option<String>,
    pub parameter_format: String,
    pub quality: Option<String>,
    pub graph_id: Option<String>,
    pub components: Json<Vec<serde_json::Value>>,
    pub spec: Json<Spec>,
    pub synced_at: chrono::DateTime<chrono::Utc>,
}

/// What a sync changed.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct SyncCounts {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
}

impl std::ops::AddAssign for SyncCounts {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.updated += o.updated;
        self.removed += o.removed;
    }
}

/// What a sync compares: a template's fields as Graph gives them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct Synced {
    name: String,
    language: String,
    status: String,
    category: String,
    sub_category: Option<String>,
    parameter_format: String,
    quality: Option<String>,
    graph_id: Option<String>,
    components: Json<Vec<serde_json::Value>>,
}

impl Synced {
    fn from_graph(t: &GraphTemplate) -> Self {
        Self {
            name: t.name.clone(),
            language: t.language.clone(),
            status: t.status.to_ascii_uppercase(),
            category: t.category.clone(),
            sub_category: t.sub_category.clone(),
            parameter_format: t
                .parameter_format
                .as_deref()
                .unwrap_or("POSITIONAL")
                .to_ascii_uppercase(),
            quality: t.quality_score.as_ref().map(|q| q.score.clone()),
            graph_id: t.id.clone(),
            components: Json(t.components.clone()),
        }
    }
}

/// Makes the tenant's templates of `waba` what Graph listed: new ones added, changed ones
/// updated, the ones Graph no longer lists removed. One transaction.
pub async fn replace_waba(
    pool: &PgPool,
    tenant: TenantId,
    waba: &str,
    listed: &[GraphTemplate],
) -> sqlx::Result<SyncCounts> {
    let mut tx = pool.begin().await?;
    // One sync of a WABA at a time; a second waits and then finds nothing to change.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
        .bind(tenant.0.to_string())
        .bind(waba)
        .execute(&mut *tx)
        .await?;
    let stored: Vec<Synced> = sqlx::query_as(
        "SELECT name, language, status, category, sub_category, parameter_format, quality,
                graph_id, components
         FROM templates WHERE tenant_id = $1 AND waba_id = $2",
    )
    .bind(tenant)
    .bind(waba)
    .fetch_all(&mut *tx)
    .await?;
    let mut counts = SyncCounts::default();
    let mut seen = std::collections::HashSet::new();
    for t in listed {
        if !seen.insert((t.name.as_str(), t.language.as_str())) {
            continue;
        }
        let new = Synced::from_graph(t);
        match stored
            .iter()
            .find(|s| s.name == new.name && s.language == new.language)
        {
            Some(old) if *old == new => continue,
            Some(_) => counts.updated += 1,
            None => counts.added += 1,
        }
        let spec = Spec::from_graph(Some(&new.parameter_format), &t.components);
        sqlx::query(
            "INSERT INTO templates (id, tenant_id, waba_id, name, language, category, status,
                 components, variable_count, parameter_format, quality, graph_id, spec,
                 sub_category, synced_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now())
             ON CONFLICT (tenant_id, waba_id, name, language) DO UPDATE SET
                 category = $6, status = $7, components = $8, variable_count = $9,
                 parameter_format = $10, quality = $11, graph_id = $12, spec = $13,
                 sub_category = $14, synced_at = now()",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(tenant)
        .bind(waba)
        .bind(&new.name)
        .bind(&new.language)
        .bind(&new.category)
        .bind(&new.status)
        .bind(&new.components)
        .bind(spec.variable_count() as i32)
        .bind(&new.parameter_format)
        .bind(&new.quality)
        .bind(&new.graph_id)
        .bind(Json(&spec))
        .bind(&new.sub_category)
        .execute(&mut *tx)
        .await?;
    }
    for old in &stored {
        if !seen.contains(&(old.name.as_str(), old.language.as_str())) {
            sqlx::query(
                "DELETE FROM templates
                 WHERE tenant_id = $1 AND waba_id = $2 AND name = $3 AND language = $4",
            )
            .bind(tenant)
            .bind(waba)
            .bind(&old.name)
            .bind(&old.language)
            .execute(&mut *tx)
            .await?;
            counts.removed += 1;
        }
    }
    sqlx::query("UPDATE templates SET synced_at = now() WHERE tenant_id = $1 AND waba_id = $2")
        .bind(tenant)
        .bind(waba)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(counts)
}

/// Which templates `list` shows.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub status: Option<&'a str>,
    pub name: Option<&'a str>,
    pub language: Option<&'a str>,
    pub waba: Option<&'a str>,
}

/// The tenant's templates, by name, language and WABA.
/// A page of them, by name, language and WABA, after `after` (those three).
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    f: &Filter<'_>,
    after: Option<(&str, &str, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<TemplateRow>> {
    let (name, language, waba) = after.unwrap_or_default();
    sqlx::query_as(
        "SELECT waba_id, name, language, status, category, sub_category, parameter_format,
                quality, graph_id, components, spec, synced_at
         FROM templates
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR status = upper($2))
           AND ($3::text IS NULL OR name = $3)
           AND ($4::text IS NULL OR language = $4)
           AND ($5::text IS NULL OR waba_id = $5)
           AND (NOT $6 OR (name, language, waba_id) > ($7, $8, $9))
         ORDER BY name, language, waba_id LIMIT $10",
    )
    .bind(tenant)
    .bind(f.status)
    .bind(f.name)
    .bind(f.language)
    .bind(f.waba)
    .bind(after.is_some())
    .bind(name)
    .bind(language)
    .bind(waba)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The tenant's templates named `name`, in any language, of any of `wabas`.
pub async fn named(
    pool: &PgPool,
    tenant: TenantId,
    wabas: &[String],
    name: &str,
) -> sqlx::Result<Vec<TemplateRow>> {
    sqlx::query_as(
        "SELECT waba_id, name, language, status, category, sub_category, parameter_format,
                quality, graph_id, components, spec, synced_at
         FROM templates
         WHERE tenant_id = $1 AND waba_id = ANY($2) AND name = $3
         ORDER BY language, waba_id",
    )
    .bind(tenant)
    .bind(wabas)
    .bind(name)
    .fetch_all(pool)
    .await
}

/// A template status change Meta announced by webhook, for every tenant that synced the
/// template from `waba` (`language` `None`: every language).
pub async fn set_status(
    db: impl PgExecutor<'_>,
    waba: &str,
    name: &str,
    language: Option<&str>,
    status: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE templates SET status = $4
         WHERE waba_id = $1 AND name = $2 AND ($3::text IS NULL OR language = $3)",
    )
    .bind(waba)
    .bind(name)
    .bind(language)
    .bind(status)
    .execute(db)
    .await?;
    Ok(())
}

/// One of a campaign's templates.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignTemplate {
    pub position: i16,
    pub name: String,
    pub language: String,
    pub weight: i32,
    pub spec: Json<Spec>,
    pub fixed: Json<Values>,
    /// A free-form message's content (`{"body": "Hi {{1}}"}` for `text`; its type is `name`),
    /// for a campaign that sends no template.
    pub message: Option<Json<serde_json::Value>>,
}

impl CampaignTemplate {
    /// A campaign's only template, whose body takes `n` positional values.
    pub fn only(name: &str, language: &str, n: usize) -> Self {
        Self {
            position: 0,
            name: name.to_owned(),
            language: language.to_owned(),
            weight: 1,
            spec: Json(Spec::positional_body(n)),
            fixed: Json(Values::default()),
            message: None,
        }
    }
}

pub async fn insert_campaign_templates(
    tx: &mut Transaction<'_, Postgres>,
    campaign: CampaignId,
    templates: &[CampaignTemplate],
) -> sqlx::Result<()> {
    for t in templates {
        sqlx::query(
            "INSERT INTO campaign_templates
                 (campaign_id, position, name, language, weight, spec, fixed, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(campaign)
        .bind(t.position)
        .bind(&t.name)
        .bind(&t.language)
        .bind(t.weight)
        .bind(&t.spec)
        .bind(&t.fixed)
        .bind(&t.message)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A campaign's templates, by position.
pub async fn campaign_templates(
    db: impl PgExecutor<'_>,
    campaign: CampaignId,
) -> sqlx::Result<Vec<CampaignTemplate>> {
    sqlx::query_as(
        "SELECT position, name, language, weight, spec, fixed, message FROM campaign_templates
         WHERE campaign_id = $1 ORDER BY position",
    )
    .bind(campaign)
    .fetch_all(db)
    .await
}

/// Stores the slots a campaign's template was checked against again (at start, after a sync).
pub async fn set_campaign_spec(
    pool: &PgPool,
    campaign: CampaignId,
    position: i16,
    spec: &Spec,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE campaign_templates SET spec = $3 WHERE campaign_id = $1 AND position = $2")
        .bind(campaign)
        .bind(position)
        .bind(Json(spec))
        .execute(pool)
        .await?;
    Ok(())
}

/// How many of the campaign's unsent messages of template `position` lack one of `keys`.
pub async fn messages_missing(
    pool: &PgPool,
    campaign: CampaignId,
    position: i16,
    keys: &[String],
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM messages m JOIN campaign_numbers cn
             ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
         WHERE m.campaign_id = $1 AND m.template = $2 AND m.status = 'pending'
           AND m.id > cn.fanout_appended
           AND NOT (CASE jsonb_typeof(variables)
                        WHEN 'object' THEN variables ?& $3
                        ELSE jsonb_array_length(variables) >= cardinality($3) END)",
    )
    .bind(campaign)
    .bind(position)
    .bind(keys)
    .fetch_one(pool)
    .await
}

/// A campaign's status counts per template position (for campaigns of several templates).
pub async fn counts_by_template(
    pool: &PgPool,
    campaign: CampaignId,
) -> sqlx::Result<Vec<(i16, crate::domain::MessageStatus, i64)>> {
    sqlx::query_as(
        "SELECT m.template, message_status_now(m.status, m.id, cn.fanout_appended), count(*)
         FROM messages m LEFT JOIN campaign_numbers cn
             ON cn.campaign_id = m.campaign_id AND cn.sender_number_id = m.sender_number_id
         WHERE m.campaign_id = $1
         GROUP BY 1, 2 ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(pool)
    .await
}
