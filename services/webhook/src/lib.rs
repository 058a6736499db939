//! Meta's webhooks: the GET handshake, signed POSTs buffered raw in a Redis stream and
//! answered at once, and a processor that applies the buffer to Postgres in batches.

mod inbound;
mod processor;
mod receipts;
mod routes;

use std::sync::Arc;

use anyhow::Context;
use herald_shared::settings::Settings;
use herald_shared::stream::{Keys, conn};
use herald_shared::tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::processor::Processor;

/// A bound, not yet running webhook service.
pub struct App {
    listener: TcpListener,
    /// `/metrics`, apart from the public webhook port.
    metrics: TcpListener,
    state: Arc<routes::AppState>,
    processors: Vec<Processor>,
    max_body_bytes: usize,
    http: herald_shared::settings::HttpTimeouts,
}

pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT))
        .await
        .context("webhook cannot reach Redis")?;
    let pool = herald_shared::db::pool(&settings.database)?;
    // Several consumers of the one group: statuses only move forward and engagements are
    // keyed by wamid, so the order they apply bodies in does not matter.
    let mut processors = Vec::new();
    for _ in 0..settings.webhook.processors.max(1) {
        let clock = herald_shared::clock::Clock::system();
        processors.push(Processor::new(settings, pool.clone(), keys.clone(), clock).await?);
    }
    let address = settings.webhook.listen.address();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("webhook cannot listen on {address}"))?;
    let metrics =
        herald_shared::telemetry::bind_metrics(&settings.webhook.metrics, "webhook").await?;
    let state = Arc::new(routes::AppState {
        probes: herald_shared::health::Probes::new(pool.clone(), redis.clone()),
        redis,
        keys: keys.clone(),
        verify_token: settings.webhook.verify_token.clone(),
        app_secrets: settings.webhook.app_secrets.clone(),
    });
    Ok(App {
        listener,
        metrics,
        state,
        processors,
        max_body_bytes: settings.webhook.max_body_bytes,
        http: settings.http.clone(),
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

    /// Serves and processes until `shutdown`; the processor finishes its current batch.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.state.probes.drain_on(shutdown.clone());
        let router = routes::router(self.state, self.max_body_bytes);
        // A processor that ends before the stop ends the role: bodies answered 200 would wait.
        let mut processors = Tasks::new(shutdown.clone());
        for p in self.processors {
            processors.spawn("a webhook processor", p.run(shutdown.clone()));
        }
        processors.spawn(
            "the metrics listener",
            herald_shared::telemetry::serve_metrics(
                self.metrics,
                self.http.clone(),
                shutdown.clone(),
            ),
        );
        let serve = herald_shared::server::serve(
            self.listener,
            router,
            &self.http,
            shutdown.cancelled_owned(),
        );
        tokio::select! {
            served = serve => served.context("webhook server failed")?,
            failure = processors.ended() => return Err(failure),
        }
        processors.join().await
    }
}
