//! Delivers events to tenants' webhook endpoints. Every ingest replica runs one; deliveries
//! are taken from Postgres (`db::notifications::take_due`), so replicas share them and a
//! replica that dies mid-delivery leaves its deliveries to be taken again when their lease
//! ends. Each is POSTed as `{"type", "timestamp", "data"}`, signed as Standard Webhooks has it
//! (`standard_webhooks`); a 2xx answer delivers it, anything else is tried again after the
//! next of `retry_delays_s`, and after the last the delivery is given up on and its endpoint
//! disabled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_shared::crypto::TokenCipher;
use herald_shared::db::notifications::{self, Due};
use herald_shared::settings::NotificationSettings;
use herald_shared::standard_webhooks;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Deliverer {
    pool: PgPool,
    cipher: TokenCipher,
    http: reqwest::Client,
    settings: NotificationSettings,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        cipher: TokenCipher,
        settings: &NotificationSettings,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            // An endpoint's redirect could point anywhere: it is an answer that is not a 2xx.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("the notifications' HTTP client")?;
        Ok(Self {
            pool,
            cipher,
            http,
            settings: settings.clone(),
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                let days = chrono::Duration::days(i64::from(this.settings.retention_days));
                match notifications::prune(&this.pool, chrono::Utc::now() - days).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "pruned delivered events"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune delivered events"),
                }
            }
            let taken = match this.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot deliver events; will retry");
                    0
                }
            };
            if taken as i64 >= this.settings.batch {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(this.settings.poll_ms)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Takes the due deliveries and sends them together; returns how many it took.
    async fn deliver_due(self: &Arc<Self>) -> anyhow::Result<usize> {
        // Longer than an attempt can take, so that no other replica takes it meanwhile.
        let lease_ms = (self.settings.timeout_ms + 5_000) as i64;
        let due = notifications::take_due(&self.pool, self.settings.batch.max(1), lease_ms)
            .await
            .context("taking due deliveries")?;
        let taken = due.len();
        let mut sends = tokio::task::JoinSet::new();
        for delivery in due {
            let this = self.clone();
            sends.spawn(async move {
                let attempt = this.attempt(&delivery).await;
                this.record(&delivery, attempt).await
            });
        }
        while let Some(done) = sends.join_next().await {
            done.context("a delivery's task")??;
        }
        Ok(taken)
    }

    async fn attempt(&self, d: &Due) -> Attempt {
        let unsigned = |error: String| Attempt::Failed {
            status: None,
            error,
        };
        let secret = match self.cipher.decrypt(&d.secret, d.endpoint_id.as_bytes()) {
            Ok(secret) => secret,
            Err(e) => return unsigned(e.to_string()),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "type": d.kind,
            "timestamp": d.created_at,
            "data": d.data,
        }))
        .expect("an event serializes");
        let id = format!("evt_{}", d.event_id);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match standard_webhooks::sign(&secret, &id, timestamp, &body) {
            Ok(signature) => signature,
            Err(e) => return unsigned(e.to_string()),
        };
        let sent = self
            .http
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(standard_webhooks::ID, &id)
            .header(standard_webhooks::TIMESTAMP, timestamp.to_string())
            .header(standard_webhooks::SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => {
                Attempt::Delivered(answer.status().as_u16())
            }
            Ok(answer) => Attempt::Failed {
                status: Some(answer.status().as_u16()),
                error: format!("answered {}", answer.status()),
            },
            // Without the URL: it may carry credentials of the tenant's.
            Err(e) => Attempt::Failed {
                status: None,
                error: describe(&e),
            },
        }
    }

    async fn record(&self, d: &Due, attempt: Attempt) -> anyhow::Result<()> {
        match attempt {
            Attempt::Delivered(status) => {
                metrics::counter!("herald_notifications_delivered_total").increment(1);
                notifications::delivered(&self.pool, d.id, i32::from(status)).await?;
            }
            Attempt::Failed { status, error } => {
                metrics::counter!("herald_notifications_failed_attempts_total").increment(1);
                let wait = self
                    .settings
                    .retry_delays_s
                    .get(d.attempts.saturating_sub(1) as usize);
                let retry_at =
                    wait.map(|s| chrono::Utc::now() + chrono::Duration::seconds(*s as i64));
                if retry_at.is_none() {
                    tracing::warn!(delivery = d.id, endpoint = %d.endpoint_id, %error,
                        "a delivery failed on its last attempt: the endpoint is disabled");
                }
                let status = status.map(i32::from);
                notifications::attempt_failed(&self.pool, d.id, status, &error, retry_at).await?;
            }
        }
        Ok(())
    }
}

/// What went wrong with a request, without its URL.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "redirected"
    } else {
        "the request failed"
    };
    let mut cause = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(c) = cause {
        detail = c.to_string();
        cause = c.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}
