//! Planning a batch: every outcome's action decided once, and what it means for Postgres
//! (statuses, pauses, rates) and for each number's queue (retries, acknowledgements).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_shared::db::transitions::{Sent, Transition};
use herald_shared::domain::{CampaignId, MessageStatus, NumberId, NumberState};
use herald_shared::stream::{Entry, NumberQueue};
use herald_shared::whatsapp::SendResult;
use herald_shared::whatsapp::message::failure_title;

use super::{Outcome, Tally};
use crate::outcome::{Action, RetryPolicy, decide};
use crate::scope::ScopeHold;

pub(super) struct Plan {
    pub tallies: Vec<Arc<Tally>>,
    pub sent: Vec<Sent>,
    pub transitions: Vec<Transition>,
    pub per_number: Vec<NumberWrites>,
    pub pauses: Pauses,
    /// Numbers whose rate moved, with the latest rate.
    pub rates: BTreeMap<NumberId, u32>,
    pub holds: Vec<ScopeHold>,
    /// Recipients Meta says stopped marketing messages (131050), by campaign: suppressed.
    pub opted_out: Vec<(CampaignId, String)>,
}

impl Plan {
    /// Decides every outcome's action once.
    pub fn of(
        batch: impl Iterator<Item = Outcome>,
        policy: &RetryPolicy,
        now: DateTime<Utc>,
    ) -> Self {
        let mut sent = Vec::new();
        let mut tallies = Vec::new();
        let mut transitions = Vec::new();
        let mut per_number: BTreeMap<NumberId, NumberWrites> = BTreeMap::new();
        let mut pauses = Pauses::default();
        let mut rates = BTreeMap::new();
        let mut holds = Vec::new();
        let mut opted_out = Vec::new();
        let mut counts = SendCounts::default();
        for outcome in batch {
            let writes = per_number
                .entry(outcome.number)
                .or_insert_with(|| NumberWrites::new(&outcome));
            let message = outcome.entry.message;
            let Some(result) = &outcome.result else {
                // Not sent: the recipient opted out since the message was queued.
                transitions.push(Transition::to(message, MessageStatus::Suppressed, now));
                writes.acks.push(outcome.stream_id);
                tallies.push(outcome.tally);
                continue;
            };
            let action = decide(result, outcome.entry.attempt, policy, rand::random());
            counts.add(result, &action);
            match action {
                Action::Sent { wamid } => sent.push(Sent {
                    message: outcome.entry.message,
                    wa_message_id: wamid,
                    at: now,
                }),
                Action::Fail { code, title } => {
                    tracing::warn!(message = %outcome.entry.message, code, %title, "message failed");
                    if code == USER_STOPPED_MARKETING {
                        opted_out.push((outcome.entry.campaign, outcome.entry.recipient.clone()));
                    }
                    let title = failure_title(code.into(), &title);
                    transitions.push(Transition::failed(message, code, title, now))
                }
                Action::Retry { delay, counts } => {
                    let next = Entry {
                        attempt: outcome.entry.attempt + u32::from(counts),
                        ..outcome.entry.clone()
                    };
                    let due = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    writes.retries.push((due.timestamp_millis(), next.encode()));
                    if counts {
                        // Only `attempts` moves: the message stays `queued`.
                        transitions.push(Transition::retried(message, now));
                    }
                }
                Action::PauseNumber { state, code, title } => {
                    // Back to the number's queue, unspent; it goes when the number resumes.
                    writes
                        .retries
                        .push((now.timestamp_millis(), outcome.entry.encode()));
                    pauses
                        .numbers
                        .insert(outcome.number, (state, outcome.number_version, code, title));
                }
                Action::PauseCampaign { code, title } => {
                    // Back to the queue; the campaign's pause parks it until it resumes.
                    writes
                        .retries
                        .push((now.timestamp_millis(), outcome.entry.encode()));
                    let latest = pauses.campaigns.entry(outcome.entry.campaign).or_insert((
                        code,
                        title,
                        outcome.started,
                    ));
                    latest.2 = latest.2.max(outcome.started);
                }
            }
            writes.acks.push(outcome.stream_id);
            tallies.push(outcome.tally);
            if let Some(rate) = outcome.rate {
                rates.insert(outcome.number, rate);
            }
            holds.extend(outcome.hold);
        }
        counts.publish();
        Self {
            tallies,
            sent,
            transitions,
            per_number: per_number.into_values().collect(),
            pauses,
            rates,
            holds,
            opted_out,
        }
    }
}

/// Cloud API error 131050: the user stopped marketing messages from the business.
const USER_STOPPED_MARKETING: i32 = 131050;

/// Numbers and campaigns an outcome of the batch says to pause, with the code and title.
#[derive(Default)]
pub(super) struct Pauses {
    pub numbers: BTreeMap<NumberId, (NumberState, chrono::DateTime<Utc>, i32, String)>,
    /// With the latest start of the batch's sends that met the error.
    pub campaigns: BTreeMap<CampaignId, (i32, String, chrono::DateTime<Utc>)>,
}

pub(super) struct NumberWrites {
    pub queue: NumberQueue,
    pub acks: Vec<String>,
    pub retries: Vec<(i64, Vec<u8>)>,
}

impl NumberWrites {
    fn new(outcome: &Outcome) -> Self {
        Self {
            queue: outcome.queue.clone(),
            acks: Vec::new(),
            retries: Vec::new(),
        }
    }
}

/// `herald_sends_total` by what the recorder does with the result and Meta's error code,
/// counted over a batch and added once per label pair: finding a labelled counter costs far
/// more than adding to it.
#[derive(Default)]
struct SendCounts(BTreeMap<(&'static str, SendCode), u64>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SendCode {
    None,
    Graph(i64),
    Transport,
}

impl SendCounts {
    fn add(&mut self, result: &SendResult, action: &Action) {
        let outcome = match action {
            Action::Sent { .. } => "sent",
            Action::Retry { counts: false, .. } => "throttled",
            Action::Retry { counts: true, .. } => "retry",
            Action::Fail { .. } => "failed",
            Action::PauseNumber { .. } => "number_paused",
            Action::PauseCampaign { .. } => "campaign_paused",
        };
        let code = match result {
            SendResult::Accepted { .. } => SendCode::None,
            SendResult::Rejected { error, .. } => SendCode::Graph(error.code),
            SendResult::Transport(_) => SendCode::Transport,
        };
        *self.0.entry((outcome, code)).or_default() += 1;
    }

    fn publish(self) {
        for ((outcome, code), n) in self.0 {
            let code = match code {
                SendCode::None => "none".to_owned(),
                SendCode::Graph(code) => code.to_string(),
                SendCode::Transport => "transport".to_owned(),
            };
            metrics::counter!("herald_sends_total", "outcome" => outcome, "code" => code)
                .increment(n);
        }
    }
}
