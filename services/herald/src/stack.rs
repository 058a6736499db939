//! Every role in one process, wired to each other over real HTTP on free ports: what the demo
//! runs, and what the end-to-end tests run.

use anyhow::Context;
use herald_shared::settings::Settings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which roles to run.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub ingest: bool,
    pub sender: bool,
    pub webhook: bool,
    pub simulator: bool,
}

impl Roles {
    pub const ALL_WITH_SIMULATOR: Roles = Roles {
        ingest: true,
        sender: true,
        webhook: true,
        simulator: true,
    };
    /// The API alone, with a simulator to test numbers and read templates from.
    pub const INGEST_WITH_SIMULATOR: Roles = Roles {
        ingest: true,
        sender: false,
        webhook: false,
        simulator: true,
    };
    /// The API and the webhook, with a simulator: everything but sending.
    pub const INGEST_AND_WEBHOOK: Roles = Roles {
        ingest: true,
        sender: false,
        webhook: true,
        simulator: true,
    };
    /// The simulator alone: the Cloud API stand-in a bench's own stack sends to.
    pub const SIMULATOR: Roles = Roles {
        ingest: false,
        sender: false,
        webhook: false,
        simulator: true,
    };
    /// The API alone (another replica, or one pointed at a Cloud API stand-in).
    pub const INGEST: Roles = Roles {
        ingest: true,
        sender: false,
        webhook: false,
        simulator: false,
    };
}

/// Running roles. Dropping it does not stop them: call `stop`.
pub struct Stack {
    pub settings: Settings,
    pub ingest_url: String,
    pub webhook_url: String,
    pub simulator_url: String,
    /// Where each role serves `/metrics` (each on a listener of its own).
    pub sender_metrics_url: String,
    pub ingest_metrics_url: String,
    pub webhook_metrics_url: String,
    shutdown: CancellationToken,
    /// Cancelled when the roles stop answering ready, ahead of (or with) `shutdown`.
    draining: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl Stack {
    /// Starts the roles on free ports: for the demo and the tests.
    pub async fn start(mut settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        settings.ingest.listen.port = 0;
        settings.webhook.listen.port = 0;
        settings.simulator.listen.port = 0;
        settings.sender.metrics.port = 0;
        settings.ingest.metrics.port = 0;
        settings.webhook.metrics.port = 0;
        Self::start_on_configured_ports(settings, roles).await
    }

    /// Starts the roles on their configured ports. When the simulator runs beside the webhook
    /// role or the sender, they are pointed at each other.
    pub async fn start_on_configured_ports(
        mut settings: Settings,
        roles: Roles,
    ) -> anyhow::Result<Self> {
        // Before any role runs: metrics emitted earlier would be lost.
        herald_shared::telemetry::metrics();
        let shutdown = CancellationToken::new();
        // A child: stopping also drains, draining alone does not stop.
        let draining = shutdown.child_token();
        let mut tasks = Vec::new();

        let mut webhook_url = String::new();
        let mut webhook_metrics_url = String::new();
        if roles.webhook {
            let app = herald_webhook::build(&settings).await.context("webhook")?;
            webhook_url = format!("http://{}:{}", settings.webhook.listen.host, app.port());
            webhook_metrics_url = format!(
                "http://{}:{}/metrics",
                settings.webhook.metrics.host,
                app.metrics_port()
            );
            app.probes().drain_on(draining.clone());
            tasks.push((
                "webhook",
                tokio::spawn(app.run_until_stopped(shutdown.clone())),
            ));
        }
        let mut simulator_url = String::new();
        if roles.simulator {
            if roles.webhook {
                settings.simulator.webhook_url = format!("{webhook_url}/webhook");
            }
            let app = herald_simulator::build(&settings)
                .await
                .context("simulator")?;
            simulator_url = format!("http://{}:{}", settings.simulator.listen.host, app.port());
            // The sender sends to it; ingest tests numbers and reads templates from it.
            if roles.sender || roles.ingest {
                settings.whatsapp.base_url = simulator_url.clone();
            }
            tasks.push((
                "simulator",
                tokio::spawn(app.run_until_stopped(shutdown.clone())),
            ));
        }
        let mut ingest_url = String::new();
        let mut ingest_metrics_url = String::new();
        if roles.ingest {
            let app = herald_ingest::build(&settings).await.context("ingest")?;
            ingest_url = format!("http://{}:{}", settings.ingest.listen.host, app.port());
            ingest_metrics_url = format!(
                "http://{}:{}/metrics",
                settings.ingest.metrics.host,
                app.metrics_port()
            );
            app.probes().drain_on(draining.clone());
            tasks.push((
                "ingest",
                tokio::spawn(app.run_until_stopped(shutdown.clone())),
            ));
        }
        let mut sender_metrics_url = String::new();
        if roles.sender {
            let app = herald_sender::build(&settings).await.context("sender")?;
            sender_metrics_url = format!(
                "http://{}:{}/metrics",
                settings.sender.metrics.host,
                app.metrics_port()
            );
            app.probes().drain_on(draining.clone());
            tasks.push((
                "sender",
                tokio::spawn(app.run_until_stopped(shutdown.clone())),
            ));
        }
        Ok(Self {
            settings,
            ingest_url,
            webhook_url,
            simulator_url,
            sender_metrics_url,
            ingest_metrics_url,
            webhook_metrics_url,
            shutdown,
            draining,
            tasks,
        })
    }

    /// A token that stops every role when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A token that, cancelled, makes every role answer `/readyz` 503 while it goes on serving:
    /// load balancers stop sending it work before `shutdown` closes its listeners.
    pub fn draining_token(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Waits until a role ends on its own (an error) or `shutdown` is cancelled, then stops all.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let first_exit = async {
            let handles = self.tasks.iter_mut().map(|(_, handle)| handle);
            let (result, index, _) = futures::future::select_all(handles).await;
            (index, result)
        };
        let early = tokio::select! {
            (index, result) = first_exit => Some((index, result)),
            _ = shutdown.cancelled() => None,
        };
        if let Some((index, result)) = early {
            // That role's handle is spent: take it out before waiting for the others.
            let (name, _) = self.tasks.remove(index);
            let stopping = self.shutdown.is_cancelled();
            let outcome = match result {
                Ok(Ok(())) if stopping => None,
                Ok(Ok(())) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
                Ok(Err(e)) => Some(e.context(format!("{name} failed"))),
                Err(e) => Some(anyhow::anyhow!("{name} panicked: {e}")),
            };
            self.stop().await?;
            return outcome.map_or(Ok(()), Err);
        }
        self.stop().await
    }

    /// Stops every role and waits for each to finish what it had in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        for (name, handle) in self.tasks {
            if handle.is_finished() && first_error.is_some() {
                continue;
            }
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e.context(format!("{name} failed")));
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("{name} panicked: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
