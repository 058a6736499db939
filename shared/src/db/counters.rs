//! Campaign counters: what a transaction changed, per campaign and number, and the one
//! statement that adds it (the SQL function `apply_campaign_deltas`, which also completes a
//! running campaign left with nothing to send, and moves each lane's counts, `lane_counts`).
//!
//! Invariant: a campaign's status counters equal a `GROUP BY status` over its messages, and
//! each lane's counts a `GROUP BY` over its number's messages of the campaign. Every
//! writer changes the counters in the transaction that moves the messages, after the messages
//! (see `transitions`), and through `apply`: campaigns are locked in one statement, in id
//! order, last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;

use crate::db::campaigns::Counters;
use crate::domain::{CampaignId, MessageStatus, NumberId};

/// How much each counter of one campaign moves: counters, as differences. Missing fields (in
/// the JSON the statements exchange) are 0.
pub type Delta = Counters;

impl Counters {
    /// The counter of `status`, to move.
    pub fn of_mut(&mut self, status: MessageStatus) -> &mut i64 {
        match status {
            MessageStatus::Pending => &mut self.pending,
            MessageStatus::Queued => &mut self.queued,
            MessageStatus::Sent => &mut self.sent,
            MessageStatus::Delivered => &mut self.delivered,
            MessageStatus::Read => &mut self.read,
            MessageStatus::Failed => &mut self.failed,
            MessageStatus::Cancelled => &mut self.cancelled,
            MessageStatus::Suppressed => &mut self.suppressed,
            MessageStatus::Skipped => &mut self.skipped,
        }
    }

    fn add(&mut self, other: &Delta) {
        let Delta {
            total,
            pending,
            queued,
            sent,
            delivered,
            read,
            failed,
            cancelled,
            suppressed,
            skipped,
            replied,
            clicked,
        } = other;
        self.total += total;
        self.pending += pending;
        self.queued += queued;
        self.sent += sent;
        self.delivered += delivered;
        self.read += read;
        self.failed += failed;
        self.cancelled += cancelled;
        self.suppressed += suppressed;
        self.skipped += skipped;
        self.replied += replied;
        self.clicked += clicked;
    }
}

/// One campaign's delta as the statements write it: `{"id": …, "sent": 3, …}`, and the number
/// whose messages moved (`"number"`), when it is one number's: its lane's counts move too.
/// Written with only the counters that move: a batch over 40 numbers sends a row for each,
/// and Postgres parses every field of every row.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub id: CampaignId,
    #[serde(default)]
    pub number: Option<NumberId>,
    #[serde(flatten)]
    pub delta: Delta,
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let serde_json::Value::Object(counters) =
            serde_json::to_value(self.delta).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("counters are an object"));
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if let Some(number) = &self.number {
            map.serialize_entry("number", number)?;
        }
        for (name, value) in counters.iter().filter(|(_, v)| v.as_i64() != Some(0)) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// What one transaction changes in campaigns (by number, where messages moved), and which it
/// locks for a later state change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deltas(BTreeMap<(CampaignId, Option<NumberId>), Delta>);

impl Deltas {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delta of `campaign` that is no number's (engagement counts), zero until something
    /// is added.
    pub fn of(&mut self, campaign: CampaignId) -> &mut Delta {
        self.0.entry((campaign, None)).or_default()
    }

    /// Locks `campaign` with the others, for a statement after `apply` that changes it.
    pub fn lock(&mut self, campaign: CampaignId) {
        self.of(campaign);
    }

    /// One message of `number` moved from `old` to `new` in `campaign`.
    pub fn moved(
        &mut self,
        campaign: CampaignId,
        number: NumberId,
        old: MessageStatus,
        new: MessageStatus,
    ) {
        let delta = self.0.entry((campaign, Some(number))).or_default();
        *delta.of_mut(old) -= 1;
        *delta.of_mut(new) += 1;
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        for row in rows {
            self.0
                .entry((row.id, row.number))
                .or_default()
                .add(&row.delta);
        }
    }

    /// What `campaign`'s counters move by (the sum over its numbers); `None` when it is not
    /// named.
    pub fn get(&self, campaign: CampaignId) -> Option<Delta> {
        let mut of_campaign = self
            .0
            .range((campaign, None)..)
            .take_while(|((c, _), _)| *c == campaign);
        let (_, first) = of_campaign.next()?;
        let mut sum = *first;
        for (_, delta) in of_campaign {
            sum.add(delta);
        }
        Some(sum)
    }

    fn rows(&self) -> Vec<Row> {
        self.0
            .iter()
            .map(|((id, number), delta)| Row {
                id: *id,
                number: *number,
                delta: *delta,
            })
            .collect()
    }
}

/// Adds `deltas` to their campaigns (locking every one of them, in id order) and completes a
/// running campaign left with nothing pending or queued. Call it once per transaction, after
/// every message statement of that transaction.
pub async fn apply(db: impl PgExecutor<'_>, deltas: &Deltas) -> sqlx::Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT apply_campaign_deltas($1)")
        .bind(sqlx::types::Json(deltas.rows()))
        .execute(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_add_up_per_campaign_and_rows_round_trip_through_json() {
        let (a, b) = (CampaignId::new(), CampaignId::new());
        let (one, two) = (NumberId::new(), NumberId::new());
        let mut deltas = Deltas::default();
        deltas.moved(a, one, MessageStatus::Queued, MessageStatus::Sent);
        deltas.moved(a, two, MessageStatus::Pending, MessageStatus::Sent);
        deltas.lock(b);
        let a_delta = Delta {
            pending: -1,
            queued: -1,
            sent: 2,
            ..Delta::default()
        };
        assert_eq!(deltas.get(a), Some(a_delta));
        assert_eq!(deltas.get(b), Some(Delta::default()));
        assert_eq!(deltas.get(CampaignId::new()), None);
        let json = serde_json::to_string(&deltas.rows()).unwrap();
        // Only what moves is written.
        let written = serde_json::to_value(deltas.rows()).unwrap();
        let written = written.as_array().unwrap();
        assert_eq!(written.len(), 3);
        for row in [
            serde_json::json!({"id": a, "number": one, "queued": -1, "sent": 1}),
            serde_json::json!({"id": a, "number": two, "pending": -1, "sent": 1}),
            serde_json::json!({"id": b}),
        ] {
            assert!(written.contains(&row), "{row} not in {written:?}");
        }
        let rows: Vec<Row> = serde_json::from_str(&json).unwrap();
        let mut again = Deltas::default();
        again.extend(rows);
        assert_eq!(again, deltas);
        let partial: Row = serde_json::from_str(&format!(r#"{{"id": "{a}", "sent": 4}}"#)).unwrap();
        assert_eq!(partial.delta.sent, 4);
        assert_eq!(partial.delta.pending, 0);
    }
}
