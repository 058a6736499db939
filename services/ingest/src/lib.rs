//! The HTTP API (`/v1`): sender numbers, campaigns, recipient upload and start, progress,
//! webhook endpoints; the web console on top of it; the fan-out worker that moves a running
//! campaign's messages into the number streams; and the delivery of events to the tenants'
//! endpoints.

mod admission;
mod audience;
mod catalog;
mod console;
mod error;
mod fanout;
mod limits;
mod notifications;
pub mod progress;
mod routes;
mod scheduler;
mod upload;

/// The shapes the API answers with, for clients.
pub mod views {
    pub use crate::catalog::WabaSync;
    pub use crate::routes::api_keys::CreatedKey;
    pub use crate::routes::campaigns::{CampaignView, TemplateShare, TemplateView};
    pub use crate::routes::numbers::{NumberView, TestReport};
    pub use crate::routes::page::Page;
    pub use crate::routes::suppressions::AddReport;
    pub use crate::routes::templates::{ParameterView, SyncReport, TemplateDetail};
    pub use crate::routes::webhook_events::WebhookEventView;
    pub use crate::upload::{RowError, UploadReport};
    pub use herald_shared::db::campaigns::{Counters, FailureGroup, NumberShare};
    pub use herald_shared::db::messages::MessageView;
    pub use herald_shared::db::suppressions::SuppressionRow;
    pub use herald_shared::db::tenants::ApiKeyRow;
}

use std::sync::Arc;

use anyhow::Context;
use herald_shared::crypto::TokenCipher;
use herald_shared::settings::Settings;
use herald_shared::stream::{Keys, conn};
use herald_shared::tasks::Tasks;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use fanout::{FanOut, Fanned, Repaired};

/// What every handler can reach.
pub struct AppState {
    pub probes: herald_shared::health::Probes,
    pub pool: sqlx::PgPool,
    pub redis: herald_shared::stream::Connection,
    pub keys: Keys,
    pub cipher: TokenCipher,
    /// The Cloud API, for management reads (number tests, template syncs).
    pub graph: herald_shared::whatsapp::CloudApiClient,
    pub default_rate: u32,
    /// Largest body read whole (JSON), and largest CSV upload (streamed).
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    /// Wakes the fan-out worker when a campaign starts.
    pub fanout_wake: Arc<Notify>,
    /// Running campaigns' send rates.
    pub progress: Arc<progress::Progress>,
    /// Cancelled when ingest stops: long-lived responses (live views) end then.
    pub closing: CancellationToken,
    /// Each key's request rate and each tenant's uploads at once.
    pub admission: admission::Admission,
    pub max_numbers_per_tenant: i64,
}

/// A bound, not yet running ingest service.
pub struct App {
    listener: TcpListener,
    /// `/metrics`, apart from the public API.
    metrics: TcpListener,
    state: Arc<AppState>,
    fanout: FanOut,
    max_body_bytes: usize,
    max_upload_bytes: usize,
    schedule_poll: std::time::Duration,
    overdue_grace: std::time::Duration,
    http: herald_shared::settings::HttpTimeouts,
    deliverer: notifications::Deliverer,
    /// Where the web console is mounted, when it is served.
    console: Option<String>,
}

pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT))
        .await
        .context("ingest cannot reach Redis")?;
    let statement_timeout = std::time::Duration::from_millis(settings.ingest.statement_timeout_ms);
    let pool = herald_shared::db::pool_with_timeout(&settings.database, statement_timeout)?;
    let cipher = TokenCipher::from_base64(&settings.security.token_encryption_key)?;
    let console = &settings.ingest.console;
    if console.enabled && !console.path.starts_with('/') {
        anyhow::bail!(
            "ingest.console.path must start with /, as in \"/\" or \"/console\"; it is {:?}",
            console.path
        );
    }
    let fanout_wake = Arc::new(Notify::new());
    let fanout = FanOut::new(
        pool.clone(),
        redis.clone(),
        keys.clone(),
        &settings.ingest,
        fanout_wake.clone(),
    );
    let address = settings.ingest.listen.address();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("ingest cannot listen on {address}"))?;
    let metrics =
        herald_shared::telemetry::bind_metrics(&settings.ingest.metrics, "ingest").await?;
    let deliverer = notifications::Deliverer::new(
        pool.clone(),
        cipher.clone(),
        &settings.ingest.notifications,
    )?;
    let state = Arc::new(AppState {
        probes: herald_shared::health::Probes::new(pool.clone(), redis.clone()),
        pool,
        redis,
        keys,
        cipher,
        graph: herald_shared::whatsapp::CloudApiClient::new(&settings.whatsapp)?,
        default_rate: settings.sender.default_rate,
        max_body_bytes: settings.ingest.max_body_bytes,
        max_upload_bytes: settings.ingest.max_upload_bytes,
        fanout_wake,
        progress: Arc::default(),
        closing: CancellationToken::new(),
        admission: admission::Admission::new(&settings.ingest),
        max_numbers_per_tenant: settings.ingest.max_numbers_per_tenant,
    });
    Ok(App {
        listener,
        metrics,
        state,
        fanout,
        max_body_bytes: settings.ingest.max_body_bytes,
        max_upload_bytes: settings.ingest.max_upload_bytes,
        schedule_poll: std::time::Duration::from_millis(settings.ingest.schedule_poll_ms),
        overdue_grace: std::time::Duration::from_secs(settings.ingest.overdue_grace_s),
        http: settings.http.clone(),
        deliverer,
        console: console.enabled.then(|| console.path.clone()),
    })
}

impl App {
    /// Its `/readyz`: `Probes::drain` turns it to 503 ahead of a stop.
    pub fn probes(&self) -> herald_shared::health::Probes {
        self.state.probes.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// The port `/metrics` is served on.
    pub fn metrics_port(&self) -> u16 {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Serves until `shutdown`. A background task (fan-out, the scheduler, the rate sampler,
    /// the pruning of idempotency keys, the delivery of events) that ends before then ends
    /// ingest with an error.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.state.probes.drain_on(shutdown.clone());
        let mut tasks = Tasks::new(shutdown.clone());
        {
            let (closing, shutdown) = (self.state.closing.clone(), shutdown.clone());
            tasks.spawn("the closing of live views", async move {
                shutdown.cancelled().await;
                closing.cancel();
            });
        }
        {
            // Idempotency-Key answers are kept 24 h.
            let (pool, closing) = (self.state.pool.clone(), self.state.closing.clone());
            tasks.spawn("the pruning of idempotency keys", async move {
                loop {
                    if let Err(e) = herald_shared::db::idempotency::prune(&pool).await {
                        tracing::warn!(error = %e, "cannot prune idempotency keys");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                        _ = closing.cancelled() => return,
                    }
                }
            });
        }
        let scheduler =
            scheduler::Scheduler::new(self.state.clone(), self.schedule_poll, self.overdue_grace);
        tasks.spawn("the scheduler", scheduler.run(shutdown.clone()));
        {
            let (state, shutdown) = (self.state.clone(), shutdown.clone());
            tasks.spawn("the progress sampler", async move {
                state.progress.run(state.pool.clone(), shutdown).await
            });
        }
        tasks.spawn("fan-out", self.fanout.run(shutdown.clone()));
        tasks.spawn(
            "the delivery of events",
            self.deliverer.run(shutdown.clone()),
        );
        tasks.spawn(
            "the metrics listener",
            herald_shared::telemetry::serve_metrics(
                self.metrics,
                self.http.clone(),
                shutdown.clone(),
            ),
        );
        let cipher = self.state.cipher.clone();
        let api = routes::router(self.state, self.max_body_bytes, self.max_upload_bytes);
        let router = match &self.console {
            Some(path) => api.clone().merge(console::router(api, cipher, path)),
            None => api,
        };
        let serve = herald_shared::server::serve(
            self.listener,
            router,
            &self.http,
            shutdown.cancelled_owned(),
        );
        tokio::select! {
            served = serve => served.context("ingest server failed")?,
            failure = tasks.ended() => return Err(failure),
        }
        tasks.join().await
    }
}
