//! The sender: reads each number's stream through the `senders` consumer group, paces the
//! number with its own limiter and in-flight window, calls the Cloud API, and records every
//! outcome in Postgres before acknowledging it.

mod doorbells;
mod held;
mod lease;
mod outcome;
mod pacing;
mod recorder;
mod scope;
mod supervisor;
mod suppressed;
mod worker;

use std::sync::Arc;

use anyhow::Context;
use herald_shared::clock::Clock;
use herald_shared::settings::Settings;
use herald_shared::stream::{Keys, conn};
use herald_shared::tasks::Tasks;
use herald_shared::whatsapp::CloudApiClient;
use tokio_util::sync::CancellationToken;

use crate::outcome::RetryPolicy;

/// A built, not yet running sender.
pub struct App {
    /// `/livez` and `/readyz`, on the metrics port; not ready from the start of the drain.
    probes: herald_shared::health::Probes,
    metrics: tokio::net::TcpListener,
    supervisor: supervisor::Supervisor,
    recorder: recorder::Recorder,
    drain: std::time::Duration,
    http: herald_shared::settings::HttpTimeouts,
}

pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let clock = Clock::system();
    let commands = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT))
        .await
        .context("sender cannot reach Redis")?;
    let pool = herald_shared::db::pool(&settings.database)?;
    let client =
        CloudApiClient::new(&settings.whatsapp).context("building the Cloud API client")?;
    let (recorder, outcomes) = recorder::Recorder::new(
        pool.clone(),
        commands.clone(),
        keys.clone(),
        clock,
        &settings.sender,
        RetryPolicy::from_settings(&settings.sender),
    );
    let shared = worker::Shared {
        clock,
        held: Arc::default(),
        suppressed: Arc::default(),
        doorbells: Arc::default(),
        scopes: Arc::new(scope::ScopeThrottles::new(keys.clone(), clock)),
        pool,
        client,
        outcomes,
    };
    let follower = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT))
        .await
        .context("sender cannot reach Redis")?;
    let doorbells = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT))
        .await
        .context("sender cannot reach Redis")?;
    let probes = herald_shared::health::Probes::new(shared.pool.clone(), commands.clone());
    let supervisor = supervisor::Supervisor::new(
        settings.clone(),
        commands,
        follower,
        doorbells,
        keys,
        shared,
    )?;
    let address = settings.sender.metrics.address();
    let metrics = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("sender cannot serve metrics on {address}"))?;
    Ok(App {
        probes,
        metrics,
        supervisor,
        recorder,
        drain: std::time::Duration::from_millis(settings.sender.drain_ms),
        http: settings.http.clone(),
    })
}

impl App {
    /// Its `/readyz`: `Probes::drain` turns it to 503 ahead of a stop.
    pub fn probes(&self) -> herald_shared::health::Probes {
        self.probes.clone()
    }

    /// The port `/metrics` is served on.
    pub fn metrics_port(&self) -> u16 {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Sends until `shutdown`; then stops reading, waits for the sends in flight, records and
    /// acknowledges them, releases the leases and returns, giving up after `drain` (what is
    /// still in flight then stays pending for the numbers' next owners to settle).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let drain = self.drain;
        self.probes.drain_on(shutdown.clone());
        let probes = self.probes.clone();
        let router = herald_shared::telemetry::metrics_router()
            .route("/livez", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let probes = probes.clone();
                    async move { probes.readiness().await }
                }),
            );
        // Served until the sender is done (aborted then), through the drain.
        let (listener, http) = (self.metrics, self.http);
        let mut metrics = tokio::spawn(async move {
            herald_shared::server::serve(listener, router, &http, std::future::pending()).await
        });
        // The supervisor (and its workers) and the recorder: one that ends before the stop
        // ends the sender, whose sends would otherwise go unrecorded or stop unseen.
        let mut tasks = Tasks::new(shutdown.clone());
        tasks.spawn("the recorder", self.recorder.run());
        tasks.spawn("the supervisor", self.supervisor.run(shutdown.clone()));
        let early = tokio::select! {
            failure = tasks.ended() => Some(failure),
            served = &mut metrics => Some(match served {
                Ok(Ok(())) => anyhow::anyhow!("the metrics listener stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::from(e).context("the metrics listener failed"),
                Err(e) => anyhow::anyhow!("the metrics listener panicked: {e}"),
            }),
            _ = shutdown.cancelled() => None,
        };
        if let Some(failure) = early {
            metrics.abort();
            return Err(failure);
        }
        // Every worker finishes and drops its outcome sender: the recorder drains the rest and
        // stops.
        let finish = tasks.join();
        let finished = tokio::time::timeout(drain, finish).await;
        // Served until the sender is done, whatever ended it.
        metrics.abort();
        match finished {
            Ok(done) => done,
            Err(_) => {
                tracing::error!(
                    ?drain,
                    "sends still in flight after the drain time; leaving them to the next owner"
                );
                Ok(())
            }
        }
    }
}
