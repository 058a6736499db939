//! Every webhook body the receiver accepted, with what processing made of it: for audits and
//! replays. Pruned after `webhook.retention_days`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

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
    /// The `phone_number_id`s and WABA ids it names: its tenants' numbers.
    pub numbers: Vec<String>,
    pub wabas: Vec<String>,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Records processed bodies, and whose each is (a row per tenant of an account it names), in
/// one statement; one already recorded (same buffer id) is left as it is.
///
/// Neither insert is an `ON CONFLICT` one: a speculative insert (a probe, the insert, a
/// confirmation, for both tables) was a quarter of the statement, the largest Postgres cost of a
/// body with one status. A recorded body is looked up instead, and tenants' rows are written only
/// for the bodies the statement inserted, once each (`DISTINCT`). The one race that lookup leaves, another processor
/// recording the same body at the same time (it claimed the body from this one, which held it
/// past the claim's idle time), ends in a unique violation: that batch fails and is applied
/// again, and the lookup then finds the body.
pub async fn record(db: &mut sqlx::PgConnection, events: &[Event<'_>]) -> sqlx::Result<()> {
    let ids: Vec<&str> = events.iter().map(|e| e.buffer_id).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| e.body).collect();
    let received: Vec<DateTime<Utc>> = events.iter().map(|e| e.received_at).collect();
    let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
    let errors: Vec<Option<&str>> = events.iter().map(|e| e.error.as_deref()).collect();
    let mut named: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
    for e in events {
        for n in &e.numbers {
            named.0.push(e.buffer_id);
            named.1.push(n.as_str());
            named.2.push("");
        }
        for w in &e.wabas {
            named.0.push(e.buffer_id);
            named.1.push("");
            named.2.push(w.as_str());
        }
    }
    sqlx::query(
        "WITH recorded AS (
            INSERT INTO webhook_events
                (buffer_id, body, signature_valid, received_at, processed_at, outcome, error)
            SELECT id, body, true, received, now(), outcome, error
            FROM UNNEST($1::text[], $2::bytea[], $3::timestamptz[], $4::webhook_outcome[],
                        $5::text[]) AS t(id, body, received, outcome, error)
            WHERE NOT EXISTS (SELECT 1 FROM webhook_events w WHERE w.buffer_id = t.id)
            RETURNING id, buffer_id
         )
         -- Each named account is a number's phone_number_id or a WABA id (the other one
         -- empty), joined by equality: with an OR the planner compared every body with every
         -- number (500 bodies and 301 numbers: 29 ms against 7.5).
         INSERT INTO webhook_event_tenants (tenant_id, event_id, arrival_ms, arrival_seq)
         SELECT DISTINCT a.tenant_id, e.id, split_part(x.buffer_id, '-', 1)::bigint,
                split_part(x.buffer_id, '-', 2)::bigint
         FROM UNNEST($6::text[], $7::text[], $8::text[]) AS x(buffer_id, number, waba)
         JOIN recorded e ON e.buffer_id = x.buffer_id
         JOIN (SELECT tenant_id, true AS is_number, phone_number_id AS account
               FROM sender_numbers
               UNION ALL
               SELECT tenant_id, false, waba_id FROM sender_numbers) a
           ON a.is_number = (x.number <> '')
          AND a.account = CASE WHEN x.number <> '' THEN x.number ELSE x.waba END",
    )
    .bind(&ids)
    .bind(bodies)
    .bind(received)
    .bind(outcomes)
    .bind(errors)
    .bind(named.0)
    .bind(named.1)
    .bind(named.2)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// A body as its tenant's webhook log shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Logged {
    pub id: i64,
    /// Its buffer entry id's parts: where it stands in the order of arrival.
    pub arrival_ms: i64,
    pub arrival_seq: i64,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Where a body stands in the order of arrival: its buffer entry id (`<ms>-<seq>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arrival {
    pub ms: i64,
    pub seq: i64,
}

impl std::fmt::Display for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for Arrival {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

impl Logged {
    pub fn arrival(&self) -> Arrival {
        Arrival {
            ms: self.arrival_ms,
            seq: self.arrival_seq,
        }
    }
}

/// A page of the bodies naming `tenant`'s numbers or WABAs, newest first (in the order they
/// arrived), from those that arrived before `before`.
pub async fn page(
    pool: &PgPool,
    tenant: crate::domain::TenantId,
    before: Option<Arrival>,
    limit: i64,
) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as(
        "SELECT e.id, t.arrival_ms, t.arrival_seq, e.body, e.received_at, e.processed_at,
                e.outcome, e.error
         FROM webhook_event_tenants t JOIN webhook_events e ON e.id = t.event_id
         WHERE t.tenant_id = $1
           AND ($2::bigint IS NULL OR (t.arrival_ms, t.arrival_seq) < ($2, $3))
         ORDER BY t.arrival_ms DESC, t.arrival_seq DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(before.map(|b| b.ms))
    .bind(before.map(|b| b.seq))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes bodies received before `before`, with their tenants' rows (no foreign key cascades
/// to them: see migration 33), a batch at a time so that no long lock is held; returns how
/// many bodies went.
///
/// Bodies go in the order they were logged (by id, the primary key: an index on the time each
/// was received cost every body's insert more than it saves here), up to the first one
/// received at or after `before`. A body is logged within seconds of its arrival, so one that
/// arrived earlier than a body logged before it (claimed from a processor that died) waits
/// only for the next prune after that body's.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<u64> {
    const BATCH: i64 = 5000;
    let mut deleted = 0;
    loop {
        let done: i64 = sqlx::query_scalar(
            "WITH oldest AS (
                SELECT id, received_at < $1 AS old FROM webhook_events ORDER BY id LIMIT $2
             ), gone AS (
                DELETE FROM webhook_events WHERE id IN (
                    SELECT id FROM oldest
                    WHERE id < ALL (SELECT id FROM oldest WHERE NOT old))
                RETURNING id
             ), untied AS (
                DELETE FROM webhook_event_tenants WHERE event_id IN (SELECT id FROM gone)
             )
             SELECT count(*) FROM gone",
        )
        .bind(before)
        .bind(BATCH)
        .fetch_one(pool)
        .await?;
        deleted += done as u64;
        if done < BATCH {
            return Ok(deleted);
        }
    }
}
