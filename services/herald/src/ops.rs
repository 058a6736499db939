//! `herald lag` and `herald top`: what an operator looks at, read straight from Redis and
//! Postgres (no role needs to run), as a plain table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use herald_shared::db::{campaigns, numbers};
use herald_shared::domain::{CampaignId, CampaignState, NumberId, NumberState};
use herald_shared::settings::Settings;
use herald_shared::stream::{Connection, Keys, NumberQueue, conn, lease};
use serde::Serialize;

/// One number's queue as `herald lag` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NumberLag {
    pub id: NumberId,
    pub phone_number_id: String,
    pub display_number: String,
    pub state: NumberState,
    /// Entries in the stream: read and not yet recorded (`pending`) or not yet read (`lag`).
    pub length: u64,
    pub lag: u64,
    pub pending: u64,
    /// How long the oldest entry has waited, in seconds.
    pub oldest_age_s: Option<f64>,
    pub retries: u64,
    pub parked: u64,
    /// The rate the number last sent at (msg/s) and its ceiling.
    pub rate: i32,
    pub ceiling: i32,
    /// The sender holding the number's lease.
    pub owner: Option<String>,
}

/// Every number's queue.
pub async fn lag(
    pool: &sqlx::PgPool,
    redis: &Connection,
    keys: &Keys,
) -> anyhow::Result<Vec<NumberLag>> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut rows = Vec::new();
    for n in numbers::all_numbers(pool).await? {
        let number_keys = std::sync::Arc::new(keys.number(n.id));
        let mut queue = NumberQueue::new(number_keys.clone(), redis.clone());
        let g = queue.gauges().await?;
        let mut conn = redis.clone();
        let owner = lease::holder(&mut conn, &number_keys.lease).await?;
        rows.push(NumberLag {
            id: n.id,
            phone_number_id: n.phone_number_id,
            display_number: n.display_number,
            state: n.state,
            length: g.length,
            lag: g.lag(),
            pending: g.pending,
            oldest_age_s: g
                .oldest_ms
                .map(|ms| ((now_ms - ms).max(0) as f64 / 1000.0 * 10.0).round() / 10.0),
            retries: g.retries,
            parked: g.parked,
            rate: n.current_rate,
            ceiling: n.throughput_ceiling,
            owner,
        });
    }
    Ok(rows)
}

pub fn lag_table(rows: &[NumberLag]) -> String {
    let mut out = format!(
        "{:<20} {:<14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>9}  {}\n",
        "number",
        "state",
        "length",
        "lag",
        "pending",
        "oldest s",
        "retry",
        "parked",
        "rate/ceil",
        "owner"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>9}  {}",
            truncate(&r.display_number, 20),
            format!("{:?}", r.state).to_lowercase(),
            r.length,
            r.lag,
            r.pending,
            r.oldest_age_s.map_or("-".into(), |a| format!("{a:.1}")),
            r.retries,
            r.parked,
            format!("{}/{}", r.rate, r.ceiling),
            r.owner.as_deref().unwrap_or("-"),
        );
    }
    let total: u64 = rows.iter().map(|r| r.lag + r.pending).sum();
    let _ = writeln!(out, "{} numbers, {total} entries waiting", rows.len());
    out
}

/// One running (or paused) campaign as `herald top` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignTop {
    pub id: CampaignId,
    pub name: String,
    pub state: CampaignState,
    pub total: i64,
    /// Messages that left the queue (sent, delivered, read, failed…), in percent.
    pub progress: f64,
    /// Messages leaving the queue per second over the sampling interval.
    pub rate: f64,
    /// Seconds to the last message at that rate.
    pub eta_s: Option<f64>,
    pub failed: i64,
    /// Failed messages by Cloud API error code (`none` when the failure had no code).
    pub failed_by_code: BTreeMap<String, i64>,
}

/// The running and paused campaigns, their rate measured over `interval`.
pub async fn top(pool: &sqlx::PgPool, interval: Duration) -> anyhow::Result<Vec<CampaignTop>> {
    let left = |c: &campaigns::Counters| c.total - c.pending - c.queued;
    let before: BTreeMap<CampaignId, i64> = campaigns::active_campaigns(pool)
        .await?
        .iter()
        .map(|c| (c.id, left(&c.counters)))
        .collect();
    // The rate is what changed between two readings.
    tokio::time::sleep(interval).await;
    let mut rows = Vec::new();
    for c in campaigns::active_campaigns(pool).await? {
        let n = &c.counters;
        let done = left(n);
        let rate = before
            .get(&c.id)
            .map_or(0.0, |b| (done - b) as f64 / interval.as_secs_f64());
        let waiting = n.pending + n.queued;
        let failed_by_code = campaigns::failures_by_code(pool, c.id)
            .await?
            .into_iter()
            .map(|f| (f.code.map_or("none".into(), |c| c.to_string()), f.count))
            .collect();
        rows.push(CampaignTop {
            id: c.id,
            name: c.name,
            state: c.state,
            total: n.total,
            progress: if n.total == 0 {
                0.0
            } else {
                (done as f64 * 1000.0 / n.total as f64).round() / 10.0
            },
            rate: (rate * 10.0).round() / 10.0,
            eta_s: (rate > 0.0).then(|| (waiting as f64 / rate).round()),
            failed: n.failed,
            failed_by_code,
        });
    }
    Ok(rows)
}

pub fn top_table(rows: &[CampaignTop]) -> String {
    let mut out = format!(
        "{:<36} {:<24} {:<8} {:>9} {:>7} {:>9} {:>8} {:>8}  {}\n",
        "campaign",
        "name",
        "state",
        "total",
        "done %",
        "msg/s",
        "eta s",
        "failed",
        "failed by code"
    );
    for r in rows {
        let codes: Vec<String> = r
            .failed_by_code
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<36} {:<24} {:<8} {:>9} {:>7.1} {:>9.1} {:>8} {:>8}  {}",
            r.id,
            truncate(&r.name, 24),
            format!("{:?}", r.state).to_lowercase(),
            r.total,
            r.progress,
            r.rate,
            r.eta_s.map_or("-".into(), |e| format!("{e:.0}")),
            r.failed,
            codes.join(", "),
        );
    }
    let _ = writeln!(out, "{} campaigns running or paused", rows.len());
    out
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// What `herald lag` and `herald top` read from.
/// What `herald repair` found and did, for people.
pub fn repair_report(repaired: &herald_ingest::Repaired, window: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "streams found to have lost entries: {}",
        repaired.found
    );
    for (r, appended) in &repaired.done {
        let _ = writeln!(
            out,
            "repaired  campaign {} number {}: {appended} unsent messages appended again",
            r.campaign, r.number
        );
    }
    let now = chrono::Utc::now();
    for r in &repaired.waiting {
        let left = chrono::Duration::from_std(window).unwrap_or_default() - (now - r.since);
        let _ = writeln!(
            out,
            "waiting   campaign {} number {}: repaired in {} s (or run with --now once no \
             sender can have its sends in flight)",
            r.campaign,
            r.number,
            left.num_seconds().max(0)
        );
    }
    if repaired.found == 0 && repaired.done.is_empty() && repaired.waiting.is_empty() {
        out.push_str("every stream holds what was appended to it\n");
    }
    out
}

pub async fn connect(settings: &Settings) -> anyhow::Result<(sqlx::PgPool, Connection, Keys)> {
    let pool = herald_shared::db::pool(&settings.database)?;
    let redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
    Ok((pool, redis, Keys::new(settings.redis.key_prefix.clone())))
}
