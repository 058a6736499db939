//! Webhooks back to the sender: for each accepted message `sent`, then `delivered` and `read`
//! with the configured chances and delays (or `failed` with a code), several statuses per
//! POST, optionally shuffled and duplicated, signed with the app secret and retried with
//! backoff on any non-2xx answer, as Meta does; and inbound messages injected by the admin API.

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
    WebhookError,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::random::Rand;
use crate::state::Sim;

const CONCURRENT_POSTS: usize = 16;
const POST_ATTEMPTS: u32 = 12;
/// Separates the webhook plan's random stream from the request's.
const PLAN_STREAM: u64 = 0x5EED_0FA7_E000_0000;

/// A message the simulator accepted, whose receipts are still to come.
#[derive(Debug)]
pub struct Receipt {
    pub seq: u64,
    pub phone_number_id: String,
    pub wamid: String,
    pub recipient: String,
    pub callback: Option<String>,
    /// Fails asynchronously with this code instead of being delivered.
    pub fails_with: Option<i64>,
}

/// A message a user sends to a business number.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inbound {
    Text {
        body: String,
    },
    /// A tap on a template's quick-reply button.
    Button {
        text: String,
        payload: String,
    },
    /// A reply button or list row chosen in an interactive message.
    Interactive {
        id: String,
        title: String,
        #[serde(default)]
        list: bool,
    },
    /// A photo or a file, with the media id Meta gives it.
    Image {
        #[serde(default)]
        caption: Option<String>,
    },
    Document {
        filename: String,
        #[serde(default)]
        caption: Option<String>,
    },
    /// An emoji on a business message.
    Reaction {
        message_id: String,
        emoji: String,
    },
}

enum Work {
    Accepted(Receipt),
    Inbound {
        phone_number_id: String,
        message: Value,
        contact: Value,
    },
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

/// A media item a user sent, as Meta describes it: an id to download it by, its type and hash.
fn media(
    rand: &mut Rand,
    mime_type: &str,
    caption: Option<String>,
    filename: Option<String>,
) -> Value {
    let mut item = json!({
        "id": format!("{}", 100_000_000_000_000 + rand.next_u64() % 900_000_000_000_000),
        "mime_type": mime_type,
        "sha256": format!("{:016x}{:016x}", rand.next_u64(), rand.next_u64()),
    });
    if let Some(caption) = caption {
        item["caption"] = json!(caption);
    }
    if let Some(filename) = filename {
        item["filename"] = json!(filename);
    }
    item
}

/// Where the API hands accepted and inbound messages.
#[derive(Clone)]
pub struct Queue {
    tx: Option<mpsc::UnboundedSender<Work>>,
    sim: Arc<Sim>,
}

impl Queue {
    pub fn accepted(&self, receipt: impl FnOnce() -> Receipt) {
        if let Some(tx) = &self.tx {
            // Only fails once the dispatcher has stopped, at shutdown.
            let _ = tx.send(Work::Accepted(receipt()));
        }
    }

    /// Queues an inbound message; returns its wamid.
    pub fn inbound(
        &self,
        phone_number_id: &str,
        from: &str,
        message: Inbound,
        context: Option<String>,
    ) -> String {
        let (seq, mut rand) = self.sim.next_rand();
        let wamid = format!("wamid.HBgIN{seq:012X}{:08X}", rand.next_u64() as u32);
        self.sim.wrote_in(phone_number_id, from);
        let at = self.sim.now_s().to_string();
        let mut m = json!({"from": from, "id": wamid, "timestamp": at});
        match message {
            Inbound::Text { body } => {
                m["type"] = json!("text");
                m["text"] = json!({"body": body});
            }
            Inbound::Button { text, payload } => {
                m["type"] = json!("button");
                m["button"] = json!({"text": text, "payload": payload});
            }
            Inbound::Interactive { id, title, list } => {
                let kind = if list { "list_reply" } else { "button_reply" };
                m["type"] = json!("interactive");
                m["interactive"] = json!({"type": kind, kind: {"id": id, "title": title}});
            }
            Inbound::Image { caption } => {
                m["type"] = json!("image");
                m["image"] = media(&mut rand, "image/jpeg", caption, None);
            }
            Inbound::Document { filename, caption } => {
                m["type"] = json!("document");
                m["document"] = media(&mut rand, "application/pdf", caption, Some(filename));
            }
            Inbound::Reaction { message_id, emoji } => {
                m["type"] = json!("reaction");
                m["reaction"] = json!({"message_id": message_id, "emoji": emoji});
            }
        }
        if let Some(context) = context {
            m["context"] = json!({"from": phone_number_id, "id": context});
        }
        let contact = json!({"profile": {"name": "Simulated User"}, "wa_id": from});
        if let Some(tx) = &self.tx {
            let _ = tx.send(Work::Inbound {
                phone_number_id: phone_number_id.to_owned(),
                message: m,
                contact,
            });
        }
        wamid
    }
}

pub struct Dispatcher {
    rx: Option<mpsc::UnboundedReceiver<Work>>,
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    sim: Arc<Sim>,
}

impl Dispatcher {
    pub fn new(settings: &SimulatorSettings, sim: Arc<Sim>) -> anyhow::Result<(Self, Queue)> {
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
            sim: sim.clone(),
        };
        let queue = Queue {
            tx: enabled.then_some(tx),
            sim,
        };
        Ok((dispatcher, queue))
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(CONCURRENT_POSTS));
        let mut heap = BinaryHeap::new();
        let mut seq = 0u64;
        let mut posts = 0u64;
        loop {
            let next_due = heap.peek().map(|s: &Scheduled| s.due);
            let mut inbound = Vec::new();
            tokio::select! {
                received = rx.recv() => match received {
                    Some(work) => {
                        let mut work = vec![work];
                        // Take whatever else is waiting, to fill batches.
                        while let Ok(more) = rx.try_recv() {
                            work.push(more);
                        }
                        for w in work {
                            match w {
                                Work::Accepted(r) => this.plan(r, &mut heap, &mut seq),
                                Work::Inbound { phone_number_id, message, contact } => {
                                    inbound.push((phone_number_id, message, contact));
                                }
                            }
                        }
                    }
                    None => break,
                },
                _ = sleep_until(next_due) => {}
                _ = shutdown.cancelled() => break,
            }
            let behaviour = this.sim.active().config.webhooks.clone();
            let now = Instant::now();
            let mut due: BTreeMap<String, Vec<StatusUpdate>> = BTreeMap::new();
            while heap.peek().is_some_and(|s| s.due <= now) {
                let s = heap.pop().expect("peeked");
                due.entry(s.receipt.phone_number_id.clone())
                    .or_default()
                    .push(status_update(&s.receipt, s.status));
            }
            let mut bodies = Vec::new();
            for (number, mut statuses) in due {
                posts += 1;
                let mut rand = Rand::new(this.sim.active().config.seed, u64::MAX - posts);
                if behaviour.duplicate > 0.0 {
                    let copies: Vec<_> = statuses
                        .iter()
                        .filter(|_| rand.chance(behaviour.duplicate))
                        .cloned()
                        .collect();
                    statuses.extend(copies);
                }
                if behaviour.shuffle {
                    rand.shuffle(&mut statuses);
                }
                for chunk in statuses.chunks(behaviour.batch.max(1)) {
                    let value = ChangeValue {
                        statuses: chunk.to_vec(),
                        ..ChangeValue::default()
                    };
                    bodies.push((chunk.len(), notification(&number, value)));
                }
            }
            for (number, message, contact) in inbound {
                let value = ChangeValue {
                    messages: vec![message],
                    contacts: vec![contact],
                    ..ChangeValue::default()
                };
                bodies.push((1, notification(&number, value)));
            }
            for (count, body) in bodies {
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let this = this.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    this.post(body, count, &shutdown).await;
                    drop(permit);
                });
            }
        }
        // Let the POSTs under way finish.
        let _ = permits.acquire_many(CONCURRENT_POSTS as u32).await;
    }

    /// Schedules a message's statuses, drawing chances and delays from its own seed.
    fn plan(&self, receipt: Receipt, heap: &mut BinaryHeap<Scheduled>, seq: &mut u64) {
        let active = self.sim.active();
        let w = &active.config.webhooks;
        let mut rand = Rand::new(active.config.seed, receipt.seq ^ PLAN_STREAM);
        let receipt = Arc::new(receipt);
        let mut at = Instant::now() + rand.delay(&w.sent_delay);
        let mut push = |due, status| {
            *seq += 1;
            heap.push(Scheduled {
                due,
                seq: *seq,
                status,
                receipt: receipt.clone(),
            });
        };
        let mut last = ReceiptStatus::Failed;
        if receipt.fails_with.is_some() {
            push(at, ReceiptStatus::Failed);
        } else {
            last = ReceiptStatus::Sent;
            push(at, ReceiptStatus::Sent);
            if rand.chance(w.delivered) {
                at += rand.delay(&w.delivered_delay);
                last = ReceiptStatus::Delivered;
                push(at, ReceiptStatus::Delivered);
                if rand.chance(w.read) {
                    at += rand.delay(&w.read_delay);
                    last = ReceiptStatus::Read;
                    push(at, ReceiptStatus::Read);
                }
            }
        }
        if let Some(callback) = &receipt.callback {
            self.sim.intend(callback, last);
        }
    }

    /// POSTs one notification, retrying with backoff until it is taken, the attempts run out
    /// or the simulator stops.
    async fn post(&self, notification: Notification, count: usize, shutdown: &CancellationToken) {
        let body = serde_json::to_vec(&notification).expect("a notification serialises");
        let header = signature::sign(&self.secret, &body);
        let mut backoff = Duration::from_millis(100);
        for attempt in 0..POST_ATTEMPTS {
            if attempt > 0 {
                self.sim.webhooks_retried.fetch_add(1, Relaxed);
            }
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
                    self.sim.webhooks_delivered.fetch_add(1, Relaxed);
                    self.sim.statuses_posted.fetch_add(count as u64, Relaxed);
                    return;
                }
                Ok(r) => tracing::debug!(status = %r.status(), "webhook refused; retrying"),
                Err(e) => tracing::debug!(error = %e, "webhook POST failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.sim.webhooks_failed.fetch_add(1, Relaxed);
        tracing::warn!(url = %self.url, "webhook dropped undelivered");
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn now_s() -> String {
    chrono::Utc::now().timestamp().to_string()
}

fn status_update(receipt: &Receipt, status: ReceiptStatus) -> StatusUpdate {
    let errors = match (status, receipt.fails_with) {
        (ReceiptStatus::Failed, Some(code)) => vec![WebhookError {
            code,
            title: format!("Simulated failure {code}"),
            message: Some(format!("Simulated failure {code}")),
        }],
        _ => Vec::new(),
    };
    StatusUpdate {
        id: receipt.wamid.clone(),
        status,
        timestamp: now_s(),
        recipient_id: Some(receipt.recipient.clone()),
        biz_opaque_callback_data: receipt.callback.clone(),
        errors,
    }
}

fn notification(phone_number_id: &str, mut value: ChangeValue) -> Notification {
    value.messaging_product = Some("whatsapp".into());
    value.metadata = Some(Metadata {
        display_phone_number: phone_number_id.to_owned(),
        phone_number_id: phone_number_id.to_owned(),
    });
    Notification {
        object: "whatsapp_business_account".into(),
        entry: vec![NotificationEntry {
            id: "simulated-waba".into(),
            changes: vec![Change {
                field: "messages".into(),
                value,
            }],
        }],
    }
}
