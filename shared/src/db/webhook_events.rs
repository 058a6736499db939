//! Every webhook body the receiver accepted, with what processing made of it: for audits and
//! replays. Pruned after `webhook.retention_days`.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

/// What processing made of a body (the `webhook_outcome` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "webhook_outcome", rename_all = "lowercase")]
pub enum Outcome {
    Applied,
    Malformed,
}

pub struct Event<'a> {
    /// The body's id in the Redis buffer.
    pub buffer_id: &'a str,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Records processed bodies; one already recorded (same buffer id) is left as it is.
pub async fn record(db: impl PgExecutor<'_>, events: &[Event<'_>]) -> sqlx::Result<()> {
    let ids: Vec<&str> = events.iter().map(|e| e.buffer_id).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| e.body).collect();
    let received: Vec<DateTime<Utc>> = events.iter().map(|e| e.received_at).collect();
    let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
    let errors: Vec<Option<&str>> = events.iter().map(|e| e.error.as_deref()).collect();
    sqlx::query(
        "INSERT INTO webhook_events
            (buffer_id, body, signature_valid, received_at, processed_at, outcome, error)
         SELECT id, body, true, received, now(), outcome, error
         FROM UNNEST($1::text[], $2::bytea[], $3::timestamptz[], $4::webhook_outcome[],
                     $5::text[]) AS t(id, body, received, outcome, error)
         ON CONFLICT (buffer_id) DO NOTHING",
    )
    .bind(ids)
    .bind(bodies)
    .bind(received)
    .bind(outcomes)
    .bind(errors)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes bodies received before `before`, a batch at a time so that no long lock is held;
/// returns how many went.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM webhook_events WHERE id IN (
                SELECT id FROM webhook_events WHERE received_at < $1 LIMIT 5000)",
        )
        .bind(before)
        .execute(pool)
        .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < 5000 {
            return Ok(deleted);
        }
    }
}
