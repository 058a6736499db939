//! Statuses: what a status update asks of a message, and receipts held because no message has
//! their wamid yet (the sender has not recorded the send): they are tried again every
//! `UNMATCHED_RETRY` until `webhook.unmatched_hold_s` after Meta's timestamp, then dropped as
//! orphans.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_shared::clock::Clock;
use herald_shared::db::transitions::{self, MessageRef, Transition};
use herald_shared::domain::{MessageId, MessageStatus};
use herald_shared::stream::{Connection, Keys, webhooks};
use herald_shared::whatsapp::message;
use herald_shared::whatsapp::webhook::{ReceiptStatus, StatusUpdate};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// How often receipts held for an unknown wamid are tried again.
pub const UNMATCHED_RETRY: Duration = Duration::from_secs(1);

/// The transition a status update for business number `number` asks for; `None` for statuses
/// Herald does not track.
pub fn transition(number: Option<&str>, update: &StatusUpdate) -> Option<Transition> {
    let status = match update.status {
        ReceiptStatus::Sent => MessageStatus::Sent,
        ReceiptStatus::Delivered => MessageStatus::Delivered,
        ReceiptStatus::Read | ReceiptStatus::Played => MessageStatus::Read,
        ReceiptStatus::Failed => MessageStatus::Failed,
        ReceiptStatus::Unknown => return None,
    };
    let message = match update
        .biz_opaque_callback_data
        .as_deref()
        .and_then(|c| c.parse::<MessageId>().ok())
    {
        Some(id) => MessageRef::Id(id),
        None => MessageRef::WaId(update.id.clone()),
    };
    let at = update
        .timestamp
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now);
    let error = update.errors.first();
    Some(Transition {
        error_code: error.and_then(|e| i32::try_from(e.code).ok()),
        error_title: error.map(|e| message::failure_title(e.code, &e.title)),
        number: number.map(str::to_owned),
        ..Transition::receipt(message, status, update.id.clone(), at)
    })
}

/// A receipt held until its wamid is known.
#[derive(Debug, Serialize, Deserialize)]
struct HeldReceipt {
    wamid: String,
    status: MessageStatus,
    /// Meta's timestamp, Unix seconds: the hold counts from it.
    at: i64,
    code: Option<i32>,
    title: Option<String>,
    /// The business number it came for (absent in receipts held before it was kept).
    #[serde(default)]
    number: Option<String>,
}

impl HeldReceipt {
    fn of(t: &Transition) -> Option<Self> {
        let MessageRef::WaId(wamid) = &t.message else {
            return None;
        };
        Some(Self {
            wamid: wamid.clone(),
            status: t.status,
            at: t.at.timestamp(),
            code: t.error_code,
            title: t.error_title.clone(),
            number: t.number.clone(),
        })
    }

    fn transition(&self) -> Transition {
        let at = DateTime::<Utc>::from_timestamp(self.at, 0).unwrap_or_else(Utc::now);
        let message = MessageRef::WaId(self.wamid.clone());
        Transition {
            error_code: self.code,
            error_title: self.title.clone(),
            number: self.number.clone(),
            ..Transition::receipt(message, self.status, self.wamid.clone(), at)
        }
    }
}

/// Holds the receipts of `batch` whose wamid is among `unknown`, to be tried again shortly.
pub async fn hold(
    redis: &mut Connection,
    keys: &Keys,
    clock: &Clock,
    batch: &[Transition],
    unknown: &[String],
) -> anyhow::Result<()> {
    if unknown.is_empty() {
        return Ok(());
    }
    let unknown: HashSet<&String> = unknown.iter().collect();
    let mut held = Vec::new();
    for receipt in batch.iter().filter_map(HeldReceipt::of) {
        if unknown.contains(&receipt.wamid) {
            held.push(serde_json::to_string(&receipt)?);
        }
    }
    let due = clock.unix_ms() + UNMATCHED_RETRY.as_millis() as i64;
    webhooks::hold(redis, keys, &held, due)
        .await
        .context("holding receipts for unknown wamids")
}

/// Tries the held receipts that are due: applied ones go; the rest wait another round, until
/// `hold_for` after Meta's timestamp, when they are logged as orphans. Returns how many were
/// applied.
pub async fn retry_held(
    pool: &PgPool,
    redis: &mut Connection,
    keys: &Keys,
    clock: &Clock,
    hold_for: chrono::Duration,
) -> anyhow::Result<usize> {
    let now = clock.utc();
    let due = webhooks::due(redis, keys, now.timestamp_millis(), 500).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let held: Vec<(String, Option<HeldReceipt>)> = due
        .into_iter()
        .map(|member| {
            let parsed = serde_json::from_str(&member).ok();
            (member, parsed)
        })
        .collect();
    let batch: Vec<Transition> = held
        .iter()
        .filter_map(|(_, h)| h.as_ref().map(HeldReceipt::transition))
        .collect();
    let applied = transitions::apply(pool, &transitions::reduce(batch))
        .await
        .context("applying held receipts")?;
    let unknown: HashSet<&String> = applied.unmatched_wamids.iter().collect();
    let (mut done, mut later) = (Vec::new(), Vec::new());
    let mut resolved = 0;
    for (member, receipt) in &held {
        match receipt {
            Some(h) if unknown.contains(&h.wamid) => {
                if now.timestamp() - h.at > hold_for.num_seconds() {
                    metrics::counter!("herald_webhook_orphan_receipts_total").increment(1);
                    tracing::warn!(wamid = %h.wamid, status = ?h.status, "orphan receipt: no message has this wamid; dropped");
                    done.push(member);
                } else {
                    later.push(member);
                }
            }
            _ => {
                resolved += 1;
                done.push(member);
            }
        }
    }
    let later_ms = (now + UNMATCHED_RETRY).timestamp_millis();
    webhooks::settle(redis, keys, &done, &later, later_ms).await?;
    Ok(resolved)
}
