//! Notifications: a tenant's webhook endpoints, and the deliveries of the events the triggers
//! of migration 25 write (`emit_event`) to them.
//!
//! Deliveries to one endpoint about one subject (a campaign, a number, a recipient) go in the
//! order their events happened: only the oldest pending one of each line is ever taken. A
//! worker takes a delivery by moving its `next_attempt_at` past its attempt (the lease), so
//! any number of workers share the work and one that dies leaves its deliveries to be taken
//! again when their lease ends.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::TenantId;

/// An endpoint as its tenant sees it (never its secret, which is shown once).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EndpointRow {
    pub id: uuid::Uuid,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when a delivery to it failed for 24 hours; nothing is sent to it until it is
    /// enabled again (its deliveries wait).
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, events, description, created_at, updated_at, disabled_at, disabled_reason";

pub struct NewEndpoint<'a> {
    pub id: uuid::Uuid,
    pub tenant: TenantId,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    /// The signing secret, encrypted.
    pub secret: &'a [u8],
}

/// Writes an event of `kind` about `subject` for the tenant's enabled endpoints that subscribe
/// to it, in the caller's transaction (nothing when none does).
pub async fn emit(
    db: impl sqlx::PgExecutor<'_>,
    tenant: TenantId,
    kind: &str,
    subject: &str,
    data: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("SELECT emit_event($1, $2, $3, $4)")
        .bind(tenant)
        .bind(kind)
        .bind(subject)
        .bind(data)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn insert_endpoint(pool: &PgPool, e: &NewEndpoint<'_>) -> sqlx::Result<EndpointRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, secret)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(e.id)
    .bind(e.tenant)
    .bind(e.url)
    .bind(e.events)
    .bind(e.description)
    .bind(e.secret)
    .fetch_one(pool)
    .await
}

/// A page of the tenant's endpoints, oldest first, after `after`.
pub async fn endpoints(
    pool: &PgPool,
    tenant: TenantId,
    after: Option<uuid::Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn endpoint(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a PATCH changes; `None` leaves a field alone.
#[derive(Default)]
pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [String]>,
    /// `Some(None)` clears it.
    pub description: Option<Option<&'a str>>,
    /// `Some(true)` enables a disabled endpoint (its waiting deliveries go), `Some(false)`
    /// disables it.
    pub enabled: Option<bool>,
}

pub async fn update_endpoint(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    change: &EndpointChange<'_>,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET
            url = coalesce($3, url),
            events = coalesce($4, events),
            description = CASE WHEN $5 THEN $6 ELSE description END,
            disabled_at = CASE WHEN $7 IS NULL THEN disabled_at
                               WHEN $7 THEN NULL
                               ELSE coalesce(disabled_at, now()) END,
            disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason
                                   WHEN $7 THEN NULL
                                   ELSE coalesce(disabled_reason, 'disabled by the tenant') END,
            updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(change.url)
    .bind(change.events)
    .bind(change.description.is_some())
    .bind(change.description.flatten())
    .bind(change.enabled)
    .fetch_optional(pool)
    .await
}

/// Deletes an endpoint with its deliveries; `false` when there was none.
pub async fn delete_endpoint(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the signing secret (encrypted); the endpoint, or `None` when there is none.
pub async fn set_secret(
    pool: &PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    secret: &[u8],
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET secret = $3, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(secret)
    .fetch_optional(pool)
    .await
}

/// A delivery as the endpoint's log shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    /// The `webhook-id` it is sent with: the same on every attempt.
    pub event_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `failed` (given up on after 24 hours).
    pub state: String,
    pub attempts: i32,
    /// The HTTP status of the last attempt's answer, if it had one.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A page of an endpoint's deliveries, newest first, before `before`.
pub async fn deliveries(
    pool: &PgPool,
    tenant: TenantId,
    endpoint: uuid::Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT d.id, 'evt_' || d.event_id AS event_id, o.type, d.state::text AS state,
                d.attempts, d.last_status, d.last_error,
                CASE WHEN d.state = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                d.created_at, d.delivered_at
         FROM event_deliveries d
         JOIN webhook_endpoints e ON e.id = d.endpoint_id
         JOIN outbox_events o ON o.id = d.event_id
         WHERE e.tenant_id = $1 AND d.endpoint_id = $2 AND ($3::bigint IS NULL OR d.id < $3)
         ORDER BY d.id DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Sends a delivery again at once (a failed one is pending again); `false` when the endpoint
/// has no such delivery.
pub async fn retry_delivery(
    pool: &PgPool,
    tenant: TenantId,
    endpoint: uuid::Uuid,
    delivery: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE event_deliveries d SET state = 'pending', next_attempt_at = now()
         FROM webhook_endpoints e
         WHERE e.id = d.endpoint_id AND e.tenant_id = $1 AND d.endpoint_id = $2 AND d.id = $3",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(delivery)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A delivery a worker took, with what it needs to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    pub event_id: i64,
    /// This attempt's number, from 1.
    pub attempts: i32,
    pub endpoint_id: uuid::Uuid,
    pub url: String,
    /// The signing secret, encrypted.
    pub secret: Vec<u8>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Takes up to `limit` due deliveries, each the oldest pending one of its line (endpoint and
/// subject), of enabled endpoints, for `lease_ms`.
pub async fn take_due(pool: &PgPool, limit: i64, lease_ms: i64) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as(
        "WITH due AS (
            SELECT d.id FROM event_deliveries d
            JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND e.disabled_at IS NULL
              AND NOT EXISTS (
                  SELECT 1 FROM event_deliveries p
                  WHERE p.endpoint_id = d.endpoint_id AND p.subject = d.subject
                    AND p.state = 'pending' AND p.id < d.id)
            ORDER BY d.next_attempt_at, d.id
            LIMIT $1
            FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE event_deliveries d
         SET attempts = d.attempts + 1,
             next_attempt_at = now() + $2 * interval '1 millisecond'
         FROM due, webhook_endpoints e, outbox_events o
         WHERE d.id = due.id AND e.id = d.endpoint_id AND o.id = d.event_id
         RETURNING d.id, d.event_id, d.attempts, e.id AS endpoint_id, e.url, e.secret, o.type,
                   o.data, o.created_at",
    )
    .bind(limit)
    .bind(lease_ms)
    .fetch_all(pool)
    .await
}

/// Records a delivery the endpoint answered with a 2xx.
pub async fn delivered(pool: &PgPool, id: i64, status: i32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_deliveries SET state = 'delivered', last_status = $2, last_error = NULL,
                delivered_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: tried again at `retry_at`, or, when `None`, given up on, and its
/// endpoint disabled (its other deliveries wait until it is enabled again).
pub async fn attempt_failed(
    pool: &PgPool,
    id: i64,
    status: Option<i32>,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH d AS (
            UPDATE event_deliveries SET
                state = CASE WHEN $4::timestamptz IS NULL THEN 'failed'::delivery_state
                             ELSE 'pending' END,
                next_attempt_at = coalesce($4, next_attempt_at),
                last_status = $2, last_error = $3
            WHERE id = $1 RETURNING endpoint_id
         )
         UPDATE webhook_endpoints e SET
            disabled_at = now(),
            disabled_reason = 'a delivery failed for 24 hours: ' || $3
         FROM d WHERE e.id = d.endpoint_id AND $4::timestamptz IS NULL
           AND e.disabled_at IS NULL",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(retry_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes events older than `before` that have no delivery still pending, with their
/// deliveries; returns how many events went.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM outbox_events o
         WHERE o.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM event_deliveries d
                           WHERE d.event_id = o.id AND d.state = 'pending')",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
