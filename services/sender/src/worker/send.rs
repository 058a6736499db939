//! The send: one Cloud API call, off the loop. Its outcome carries everything the send
//! changed — a new rate for the number, an app or WABA hold to share — to the recorder, the
//! only writer to Postgres; here only memory changes (the pacer, this process's holds).

use std::sync::Arc;

use herald_shared::stream::Entry;
use herald_shared::whatsapp::{CloudApiClient, Endpoint, SendResult};
use metrics::Histogram;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::gate::{Feedback, Pace};
use super::window::Window;
use super::{NumberWorker, Shared, WorkerConfig};
use crate::recorder::Outcome;
use crate::scope::ScopeThrottles;

/// What every send of a number uses, made once and shared by its sends (one reference each,
/// not one per part): where it goes, with which fencing token, what it reports to, and the
/// histograms of its request time by outcome.
pub(super) struct SendPath {
    client: CloudApiClient,
    endpoint: Endpoint,
    fence: i64,
    config: Arc<WorkerConfig>,
    outcomes: mpsc::Sender<Outcome>,
    scopes: Arc<ScopeThrottles>,
    feedback: Feedback,
    window: Arc<Window>,
    /// The number's span, entered only to log: entering and leaving it at every poll of every
    /// send costs more than the rare line a send writes.
    span: tracing::Span,
    accepted: Histogram,
    rejected: Histogram,
    transport: Histogram,
}

impl SendPath {
    pub fn new(shared: &Shared, config: &Arc<WorkerConfig>, pace: &Pace, fence: i64) -> Self {
        let seconds = |outcome: &'static str| metrics::histogram!("herald_cloud_api_request_seconds", "outcome" => outcome);
        Self {
            endpoint: shared
                .client
                .messages_endpoint(&config.phone_number_id, &config.token),
            client: shared.client.clone(),
            fence,
            config: config.clone(),
            outcomes: shared.outcomes.clone(),
            scopes: shared.scopes.clone(),
            feedback: pace.feedback(),
            window: pace.window.clone(),
            span: tracing::info_span!("number", number = %config.number),
            accepted: seconds("accepted"),
            rejected: seconds("rejected"),
            transport: seconds("transport"),
        }
    }

    fn seconds(&self, result: &SendResult) -> &Histogram {
        match result {
            SendResult::Accepted { .. } => &self.accepted,
            SendResult::Rejected { .. } => &self.rejected,
            SendResult::Transport(_) => &self.transport,
        }
    }
}

impl NumberWorker {
    /// Starts the send of `entry` (the gate let it through; `permit` is its place in the
    /// window, held until its outcome is handed over).
    pub(super) fn start_send(
        &mut self,
        stream_id: String,
        entry: Entry,
        permit: OwnedSemaphorePermit,
    ) {
        let path = self.send_path.clone();
        let queue = self.queue.clone();
        let tally = self.tally.clone();
        let started = self.shared.clock.utc();
        self.handed += 1;
        let send = async move {
            let sending = std::time::Instant::now();
            let result = path
                .client
                .send_message(&path.endpoint, path.fence, entry.payload.clone())
                .await;
            let took = sending.elapsed();
            path.seconds(&result).record(took.as_secs_f64());
            path.window.answered(took, std::time::Instant::now());
            let config = &path.config;
            let rate = path.feedback.record(&result);
            if let Some(rate) = rate {
                path.span
                    .in_scope(|| tracing::info!(rate, "number's rate changed"));
                metrics::gauge!("herald_sender_rate", "number" => config.number.to_string())
                    .set(rate);
            }
            let hold = match &result {
                SendResult::Rejected {
                    error, retry_after, ..
                } => config.scopes.of(error.code).and_then(|scope| {
                    let length = config.scope_throttle.max(retry_after.unwrap_or_default());
                    path.span.in_scope(|| path.scopes.hold_here(scope, length))
                }),
                _ => None,
            };
            let outcome = Outcome {
                number: config.number,
                number_version: config.version,
                started,
                queue,
                stream_id,
                entry,
                result: Some(result),
                rate,
                hold,
                tally,
            };
            // Fails only if the recorder is gone, at shutdown; the entry then stays pending.
            let _ = path.outcomes.send(outcome).await;
            path.window.release(permit);
        };
        tokio::spawn(send);
    }

    /// Hands `entry` to the recorder unsent: its recipient is suppressed.
    pub(super) async fn record_suppressed(&mut self, stream_id: String, entry: Entry) {
        metrics::counter!("herald_sender_suppressed_total").increment(1);
        self.handed += 1;
        let outcome = Outcome {
            number: self.config.number,
            number_version: self.config.version,
            started: self.shared.clock.utc(),
            queue: self.queue.clone(),
            stream_id,
            entry,
            result: None,
            rate: None,
            hold: None,
            tally: self.tally.clone(),
        };
        // Fails only if the recorder is gone, at shutdown; the entry then stays pending.
        let _ = self.shared.outcomes.send(outcome).await;
    }
}
