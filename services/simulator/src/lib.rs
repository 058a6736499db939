//! A stand-in for the WhatsApp Business Cloud API, for the demo, the tests and the benchmarks.
//!
//! `POST /{version}/{phone_number_id}/messages` answers like the Cloud API with a unique
//! `wamid`, refuses sends over a per-number cap with error 130429 (at most `cap` accepted in
//! any one-second window), and after accepting a message POSTs signed `sent`, `delivered` and
//! `read` status webhooks to the configured URL. `GET /sim/stats` reports what it saw.

mod api;
mod stats;
mod webhooks;

use std::sync::Arc;

use anyhow::Context;
use herald_shared::settings::Settings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use stats::StatsReport;

use crate::api::AppState;

/// A bound, not yet running simulator.
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    dispatcher: webhooks::Dispatcher,
}

/// Binds the listener (port 0 picks a free one) and prepares the webhook dispatcher.
pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let address = settings.simulator.listen.address();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("simulator cannot listen on {address}"))?;
    let stats = Arc::new(stats::Stats::default());
    let (dispatcher, queue) = webhooks::Dispatcher::new(&settings.simulator, stats.clone())?;
    let state = Arc::new(AppState::new(&settings.simulator, queue, stats));
    Ok(App {
        listener,
        state,
        dispatcher,
    })
}

impl App {
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Serves until `shutdown` is cancelled, then delivers the webhooks already due.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = api::router(self.state);
        let dispatcher = tokio::spawn(self.dispatcher.run(shutdown.clone()));
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("simulator server failed")?;
        dispatcher.await.context("webhook dispatcher panicked")?;
        Ok(())
    }
}
