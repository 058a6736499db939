//! Status webhooks back to the sender: `sent` at once, `delivered` and `read` after the
//! configured delays, several statuses per POST, signed with the app secret and retried with
//! backoff on any non-2xx answer, as Meta does.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use herald_shared::settings::SimulatorSettings;
use herald_shared::signature;
use herald_shared::whatsapp::webhook::{
    Change, ChangeValue, Metadata, Notification, NotificationEntry, ReceiptStatus, StatusUpdate,
};
use secrecy::SecretString;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

const CONCURRENT_POSTS: usize = 16;
const POST_ATTEMPTS: u32 = 8;

/// A message the simulator accepted, whose receipts are still to come.
#[derive(Debug)]
pub struct Receipt {
    pub phone_number_id: String,
    pub wamid: String,
    pub recipient: String,
    pub callback: Option<String>,
}

struct Scheduled {
    due: Instant,
    seq: u64,
    status: ReceiptStatus,
    receipt: Arc<Receipt>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` pops the earliest due first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Where the send endpoint hands accepted messages.
#[derive(Clone)]
pub struct Queue {
    tx: Option<mpsc::UnboundedSender<Receipt>>,
}

impl Queue {
    pub fn accepted(&self, receipt: Receipt) {
        if let Some(tx) = &self.tx {
            // Only fails once the dispatcher has stopped, at shutdown.
            let _ = tx.send(receipt);
        }
    }
}

pub struct Dispatcher {
    rx: Option<mpsc::UnboundedReceiver<Receipt>>,
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    batch: usize,
    delivered_delay: Duration,
    read_delay: Duration,
    stats: Arc<Stats>,
}

impl Dispatcher {
    pub fn new(settings: &SimulatorSettings, stats: Arc<Stats>) -> anyhow::Result<(Self, Queue)> {
        let enabled = !settings.webhook_url.is_empty();
        let (tx, rx) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("webhook HTTP client")?;
        let dispatcher = Self {
            rx: enabled.then_some(rx),
            http,
            url: settings.webhook_url.clone(),
            secret: settings.app_secret.clone(),
            batch: settings.webhook_batch.max(1),
            delivered_delay: Duration::from_millis(settings.delivered_delay_ms),
            read_delay: Duration::from_millis(settings.read_delay_ms),
            stats,
        };
        Ok((
            dispatcher,
            Queue {
                tx: enabled.then_some(tx),
            },
        ))
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(CONCURRENT_POSTS));
        let mut heap = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next_due = heap.peek().map(|s: &Scheduled| s.due);
            tokio::select! {
                received = rx.recv() => match received {
                    Some(receipt) => {
                        seq += 1;
                        heap.push(Scheduled {
                            due: Instant::now(),
                            seq,
                            status: ReceiptStatus::Sent,
                            receipt: Arc::new(receipt),
                        });
                        // Take whatever else is waiting before posting, to fill batches.
                        while let Ok(receipt) = rx.try_recv() {
                            seq += 1;
                            heap.push(Scheduled {
                                due: Instant::now(),
                                seq,
                                status: ReceiptStatus::Sent,
                                receipt: Arc::new(receipt),
                            });
                        }
                    }
                    None => break,
                },
                _ = sleep_until(next_due) => {}
                _ = shutdown.cancelled() => break,
            }
            let now = Instant::now();
            let mut due: BTreeMap<String, Vec<StatusUpdate>> = BTreeMap::new();
            while heap.peek().is_some_and(|s| s.due <= now) {
                let s = heap.pop().expect("peeked");
                due.entry(s.receipt.phone_number_id.clone())
                    .or_default()
                    .push(status_update(&s.receipt, s.status));
                let next = match s.status {
                    ReceiptStatus::Sent => Some((ReceiptStatus::Delivered, this.delivered_delay)),
                    ReceiptStatus::Delivered => Some((ReceiptStatus::Read, this.read_delay)),
                    _ => None,
                };
                if let Some((status, delay)) = next {
                    seq += 1;
                    heap.push(Scheduled {
                        due: now + delay,
                        seq,
                        status,
                        receipt: s.receipt,
                    });
                }
            }
            for (number, statuses) in due {
                for chunk in statuses.chunks(this.batch) {
                    let body = notification(&number, chunk.to_vec());
                    let permit = permits.clone().acquire_owned().await.expect("never closed");
                    let this = this.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        this.post(body, &shutdown).await;
                        drop(permit);
                    });
                }
            }
        }
        // Let the POSTs under way finish.
        let _ = permits.acquire_many(CONCURRENT_POSTS as u32).await;
    }

    /// POSTs one notification, retrying with backoff until it is taken or the simulator stops.
    async fn post(&self, notification: Notification, shutdown: &CancellationToken) {
        let body = serde_json::to_vec(&notification).expect("a notification serialises");
        let header = signature::sign(&self.secret, &body);
        let mut backoff = Duration::from_millis(50);
        for _ in 0..POST_ATTEMPTS {
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(signature::HEADER, &header)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    self.stats.webhooks_delivered.fetch_add(1, Relaxed);
                    return;
                }
                Ok(r) => tracing::debug!(status = %r.status(), "webhook refused; retrying"),
                Err(e) => tracing::debug!(error = %e, "webhook POST failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        self.stats.webhooks_failed.fetch_add(1, Relaxed);
        tracing::warn!(url = %self.url, "webhook dropped undelivered");
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn status_update(receipt: &Receipt, status: ReceiptStatus) -> StatusUpdate {
    StatusUpdate {
        id: receipt.wamid.clone(),
        status,
        timestamp: chrono::Utc::now().timestamp().to_string(),
        recipient_id: Some(receipt.recipient.clone()),
        biz_opaque_callback_data: receipt.callback.clone(),
        errors: Vec::new(),
    }
}

fn notification(phone_number_id: &str, statuses: Vec<StatusUpdate>) -> Notification {
    Notification {
        object: "whatsapp_business_account".into(),
        entry: vec![NotificationEntry {
            id: "simulated-waba".into(),
            changes: vec![Change {
                field: "messages".into(),
                value: ChangeValue {
                    messaging_product: Some("whatsapp".into()),
                    metadata: Some(Metadata {
                        display_phone_number: phone_number_id.to_owned(),
                        phone_number_id: phone_number_id.to_owned(),
                    }),
                    statuses,
                    ..ChangeValue::default()
                },
            }],
        }],
    }
}
