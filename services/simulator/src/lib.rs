//! A stand-in for the WhatsApp Business Cloud API, faithful in every way a sender must
//! survive: Meta's validation and error bodies, per-number throughput caps (130429), the pair
//! rate limit (131056), a portfolio's daily recipient cap, injected faults (any error code,
//! asynchronous failures, 5xx, timeouts, resets, latency), and signed status webhooks with
//! configurable chances, delays, shuffling and duplication. Controlled at run time under
//! `/sim`; every random choice follows a seed.

mod account;
mod admin;
mod api;
mod config;
mod random;
mod state;
mod webhooks;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post, put};
use herald_shared::settings::Settings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{CapMode, Delay, Fault, FaultKind, NumberDef, SimConfig, TemplateDef};
pub use state::{Duplicates, StatsReport};

/// What the handlers share.
pub struct AppState {
    sim: Arc<state::Sim>,
    queue: webhooks::Queue,
    /// Cancelled at shutdown, so that held requests (simulated timeouts) end.
    shutdown: CancellationToken,
}

/// A bound, not yet running simulator.
pub struct App {
    listener: TcpListener,
    sim: Arc<state::Sim>,
    queue: webhooks::Queue,
    dispatcher: webhooks::Dispatcher,
}

/// Binds the listener (port 0 picks a free one) and loads the scenario, if any.
pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let config = SimConfig::from_settings(&settings.simulator)?;
    let sim = Arc::new(state::Sim::new(config));
    let (dispatcher, queue) = webhooks::Dispatcher::new(&settings.simulator, sim.clone())?;
    let address = settings.simulator.listen.address();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("simulator cannot listen on {address}"))?;
    Ok(App {
        listener,
        sim,
        queue,
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

    /// Serves until `shutdown` is cancelled; held requests end and webhook POSTs under way
    /// finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = Arc::new(AppState {
            sim: self.sim,
            queue: self.queue,
            shutdown: shutdown.clone(),
        });
        let dispatcher = tokio::spawn(self.dispatcher.run(shutdown.clone()));
        axum::serve(self.listener, router(state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("simulator server failed")?;
        dispatcher.await.context("webhook dispatcher panicked")?;
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/{version}/{phone_number_id}/messages",
            post(api::send_message),
        )
        .route(
            "/{version}/{waba_id}/message_templates",
            get(account::message_templates),
        )
        .route(
            "/{version}/{waba_id}/phone_numbers",
            get(account::waba_phone_numbers),
        )
        .route("/{version}/{phone_number_id}", get(account::phone_number))
        .route(
            "/{version}/{phone_number_id}/media",
            post(api::upload_media).layer(axum::extract::DefaultBodyLimit::max(101 << 20)),
        )
        .route("/sim/stats", get(admin::stats).delete(admin::reset_stats))
        .route("/sim/sent", get(admin::sent))
        .route("/sim/media", get(admin::media))
        .route(
            "/sim/config",
            get(admin::get_config).post(admin::patch_config),
        )
        .route("/sim/numbers/{phone_number_id}", put(admin::put_number))
        .route("/sim/inbound", post(admin::inbound))
        .route("/sim/clock", post(admin::clock))
        .with_state(state)
}
