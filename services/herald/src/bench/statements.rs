//! `herald bench statements`: what each of the hot path's Postgres statements costs a message,
//! alone: the recorder's transaction for sends Meta accepted, the webhook log's insert for bodies
//! of one status, and the receipts' transaction for their `delivered` statuses, each run over
//! every message of a campaign in batches, one transaction a batch, on one connection; then
//! what a read of the campaign's view costs for each number's share (a call, each "row"), and
//! for comparison the `GROUP BY` over its messages that read did before. The
//! figures are that connection's server process's CPU (read from /proc when Postgres runs on
//! this machine) and the wall time, per row. End to end, a change of a microsecond a message is
//! lost in a run's noise; here it is not.

use std::time::Instant;

use anyhow::Context;
use herald_shared::db::transitions::{Engine, MessageRef, Sent, Transition};
use herald_shared::db::{campaigns, messages, webhook_events};
use herald_shared::domain::MessageStatus;
use herald_shared::settings::Settings;
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;

use super::measure;
use super::webhooks::seed;
use crate::fixtures::World;

/// The recorder's batch: about what it writes at B1's rate on two cores.
const SENDS_PER_BATCH: usize = 250;
/// The webhook processor's batch of one-status bodies.
const BODIES_PER_BATCH: usize = 500;
/// Reads of a campaign's view (a "row" of a read phase is a call): enough of the kept counts'
/// for /proc's 10 ms ticks to read a call's CPU, and of the `GROUP BY` over every message.
const VIEW_CALLS: usize = 500;
const GROUP_BY_CALLS: usize = 20;

/// The view's per-number read before each lane kept its counts (migration 35): a `GROUP BY`
/// over the campaign's messages.
const BY_NUMBER_GROUP_BY: &str =
    "SELECT count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'read'))
     FROM messages m JOIN sender_numbers n ON n.id = m.sender_number_id
     WHERE m.campaign_id = $1 GROUP BY n.id ORDER BY n.id";

#[derive(Debug, Serialize)]
pub struct StatementFigures {
    pub messages: usize,
    pub phases: Vec<Phase>,
}

/// One statement's run over every message.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub rows: usize,
    pub batch: usize,
    /// The server process's CPU per row; `None` when Postgres is not on this machine.
    pub postgres_cpu_us_per_row: Option<f64>,
    pub wall_us_per_row: f64,
}

pub async fn run(settings: Settings, messages: usize) -> anyhow::Result<StatementFigures> {
    let world = World::isolate_database(settings, "bench").await?;
    let seeded = seed(&world, messages).await?;
    let (first, last) = match (seeded.ids.first(), seeded.ids.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ => anyhow::bail!("no messages to measure"),
    };
    // Fan-out appended them all: they are `queued`, as the recorder finds them.
    messages::record_page(&world.pool, seeded.campaign, seeded.number, last, last).await?;
    let mut conn = world.pool.acquire().await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await?;
    let wamid = |id: i64| format!("wamid.HBgL{:016X}{id:08X}", id.wrapping_mul(0x9E37_79B9));
    let mut phases = Vec::new();

    let batches: Vec<Vec<Sent>> = seeded
        .ids
        .chunks(SENDS_PER_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|id| Sent {
                    message: *id,
                    wa_message_id: wamid(id.0),
                    at: chrono::Utc::now(),
                })
                .collect()
        })
        .collect();
    phases.push(
        timed(
            "record_sent",
            (messages, SENDS_PER_BATCH),
            pid,
            &mut conn,
            &batches,
            |conn, sent| {
                Box::pin(async move {
                    let mut engine = Engine::default();
                    let unrecorded = engine.record_sent(conn, sent, &[]).await?;
                    anyhow::ensure!(
                        unrecorded.is_empty(),
                        "{} sends not recorded",
                        unrecorded.len()
                    );
                    Ok(engine.finish(conn).await?)
                })
            },
        )
        .await?,
    );

    let number = seeded.phone_number_id.as_str();
    let bodies: Vec<(String, Vec<u8>)> = seeded
        .ids
        .iter()
        .map(|id| {
            let body = json!({"object": "whatsapp_business_account",
                "entry": [{"id": "bench", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "447400000000",
                                 "phone_number_id": number},
                    "statuses": [{"id": wamid(id.0), "status": "delivered",
                                  "timestamp": "1778580002", "recipient_id": "447400000000",
                                  "biz_opaque_callback_data": id.0.to_string()}]}}]}]});
            // A buffer entry id, as the receiver's stream gives them.
            (
                format!("{}-0", 1_778_580_000_000 + id.0),
                body.to_string().into_bytes(),
            )
        })
        .collect();
    let events: Vec<webhook_events::Event> = bodies
        .iter()
        .map(|(id, body)| webhook_events::Event {
            buffer_id: id,
            numbers: vec![number.to_owned()],
            wabas: Vec::new(),
            body,
            received_at: chrono::Utc::now(),
            outcome: webhook_events::Outcome::Applied,
            error: None,
        })
        .collect();
    let logged: Vec<&[webhook_events::Event]> = events.chunks(BODIES_PER_BATCH).collect();
    phases.push(
        timed(
            "webhook_log",
            (messages, BODIES_PER_BATCH),
            pid,
            &mut conn,
            &logged,
            |conn, batch| Box::pin(async move { Ok(webhook_events::record(conn, batch).await?) }),
        )
        .await?,
    );

    let receipts: Vec<Vec<Transition>> = seeded
        .ids
        .chunks(BODIES_PER_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|id| Transition {
                    number: Some(number.to_owned()),
                    ..Transition::receipt(
                        MessageRef::Id(*id),
                        MessageStatus::Delivered,
                        wamid(id.0),
                        chrono::Utc::now(),
                    )
                })
                .collect()
        })
        .collect();
    phases.push(
        timed(
            "receipts",
            (messages, BODIES_PER_BATCH),
            pid,
            &mut conn,
            &receipts,
            |conn, batch| {
                Box::pin(async move {
                    let mut engine = Engine::default();
                    let applied = engine.apply(conn, batch).await?;
                    anyhow::ensure!(
                        applied.changed == batch.len() as i64,
                        "{} of {} receipts applied",
                        applied.changed,
                        batch.len()
                    );
                    Ok(engine.finish(conn).await?)
                })
            },
        )
        .await?,
    );

    // The campaign's view reads each number's share: one call, however many messages.
    let calls = vec![(); VIEW_CALLS];
    let group_by_calls = vec![(); GROUP_BY_CALLS];
    let campaign = seeded.campaign;
    phases.push(
        timed(
            "view_by_number",
            (VIEW_CALLS, 1),
            pid,
            &mut conn,
            &calls,
            |conn, _| {
                Box::pin(async move {
                    let shares = campaigns::by_number(&mut *conn, campaign).await?;
                    anyhow::ensure!(
                        shares.iter().map(|s| s.sent).sum::<i64>() == messages as i64,
                        "the view counts {shares:?}"
                    );
                    Ok(())
                })
            },
        )
        .await?,
    );
    // What it read before lanes kept their counts, for comparison: every message.
    phases.push(
        timed(
            "view_by_number_group_by",
            (GROUP_BY_CALLS, 1),
            pid,
            &mut conn,
            &group_by_calls,
            |conn, _| {
                Box::pin(async move {
                    let sent: Vec<i64> = sqlx::query_scalar(BY_NUMBER_GROUP_BY)
                        .bind(campaign)
                        .fetch_all(&mut *conn)
                        .await?;
                    anyhow::ensure!(sent.iter().sum::<i64>() == messages as i64);
                    Ok(())
                })
            },
        )
        .await?,
    );

    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE id BETWEEN $1 AND $2 AND status = 'delivered'",
    )
    .bind(first)
    .bind(last)
    .fetch_one(&mut *conn)
    .await?;
    anyhow::ensure!(
        delivered == messages as i64,
        "{delivered} of {messages} messages delivered"
    );
    drop(conn);
    world.drop().await.context("dropping the run's database")?;
    Ok(StatementFigures { messages, phases })
}

type Step<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Runs `step` over every batch on `conn`, a transaction each, measuring the server process
/// `pid` and the wall.
async fn timed<T>(
    name: &'static str,
    (rows, batch): (usize, usize),
    pid: i32,
    conn: &mut PgConnection,
    batches: &[T],
    step: impl for<'a> Fn(&'a mut PgConnection, &'a T) -> Step<'a>,
) -> anyhow::Result<Phase> {
    let cpu_before = measure::cpu_seconds_of(pid);
    let started = Instant::now();
    for b in batches {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        step(&mut tx, b).await.context(name)?;
        tx.commit().await?;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(measure::cpu_seconds_of(pid))
        .map(|(a, b)| b - a);
    let per_row = |seconds: f64| seconds * 1e6 / rows.max(1) as f64;
    Ok(Phase {
        name,
        rows,
        batch,
        postgres_cpu_us_per_row: cpu.map(per_row),
        wall_us_per_row: per_row(wall),
    })
}
