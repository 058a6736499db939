//! `herald`: one binary for every role.

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::stack::{Roles, Stack};
use herald_shared::db;
use herald_shared::settings::{Settings, Uses};
use secrecy::ExposeSecret;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// glibc's allocator spent a fifth of the sender's CPU at full rate (B1); mimalloc's
/// per-thread heaps suit the many small, short-lived allocations of HTTP and stream work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herald: WhatsApp Cloud API campaigns at each number's highest allowed rate.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs ingest, sender and webhook in one process (migrating the database first).
    All,
    /// Runs the HTTP API and fan-out.
    Ingest,
    /// Runs the sender.
    Sender,
    /// Runs the webhook receiver and processor.
    Webhook,
    /// Runs the Cloud API simulator.
    Simulator,
    /// Creates the database if needed and applies migrations.
    Migrate,
    /// Runs a campaign through the whole pipeline against the simulator, with live progress,
    /// and prints the web console's address and a key to sign in with.
    Demo {
        /// Keeps the stack and its console running after the campaign, until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Runs a benchmark workload against the simulator at --simulator (b5 needs none, but
    /// takes the flag) and prints its figures as JSON.
    Bench {
        #[arg(value_enum)]
        workload: herald::bench::Workload,
        #[arg(long)]
        simulator: String,
        /// Overrides the workload's recipient count.
        #[arg(long)]
        recipients: Option<usize>,
        /// Overrides each number's rate, which the simulator enforces (b2 and b2-40): the
        /// same numbers at a rate this machine can hold, to read what their pacing costs.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Every number's queue: stream length, lag, pending, oldest entry's age, retries,
    /// parked, rate and owner (from Redis and Postgres; no role needs to run).
    Lag {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Again every two seconds until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// The running and paused campaigns: progress, msg/s, ETA, failures by code.
    Top {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Seconds the rate is measured over.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Finds the streams that lost entries because Redis lost data and appends their unsent
    /// messages again once `ingest.repair_window_ms` has passed since they were found (what
    /// ingest's fan-out also does on its own while it runs).
    Repair {
        /// Repairs at once, without waiting for the window: only when no sender can have a
        /// send of those messages still in flight (every sender stopped, say).
        #[arg(long)]
        now: bool,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Creates a tenant and prints its API key (shown once; only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
    },
}

impl Command {
    /// The profile used when `HERALD_ENV` is unset: production, except for the commands that
    /// only make sense against the simulator on a developer's machine.
    fn default_profile(&self) -> &'static str {
        match self {
            Command::Demo { .. } | Command::Bench { .. } => "local",
            _ => "production",
        }
    }

    /// The settings this command uses, and so requires.
    fn uses(&self) -> Uses {
        match self {
            Command::All => Uses::INGEST.and(Uses::SENDER).and(Uses::WEBHOOK),
            Command::Ingest => Uses::INGEST,
            Command::Sender => Uses::SENDER,
            Command::Webhook => Uses::WEBHOOK,
            Command::Simulator => Uses::SIMULATOR,
            Command::Migrate | Command::Tenant { .. } => Uses::DATABASE,
            Command::Lag { .. } | Command::Top { .. } | Command::Repair { .. } => Uses::STORES,
            Command::Demo { .. } | Command::Bench { .. } => {
                Uses::INGEST.and(Uses::WEBHOOK).and(Uses::SIMULATOR)
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.command.default_profile())
        .and_then(|s| s.check(cli.command.uses()).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Demo { .. }) {
        // The demo's screen shows progress and its summary, nothing else: the roles' logs go
        // to a file it names at the end.
        let log = herald::demo::log_path();
        if let Err(e) = herald_shared::telemetry::init_to_file(&settings.telemetry, &log) {
            eprintln!(
                "herald: cannot write the demo's log to {}: {e}",
                log.display()
            );
            return std::process::ExitCode::FAILURE;
        }
    } else {
        if matches!(cli.command, Command::Bench { .. }) {
            // The roles' logs would drown the bench's figures (RUST_LOG still wins).
            settings.telemetry.filter = "warn".into();
        }
        herald_shared::telemetry::init(&settings.telemetry);
    }
    match run(cli.command, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<std::process::ExitCode> {
    let roles = |ingest, sender, webhook, simulator| Roles {
        ingest,
        sender,
        webhook,
        simulator,
    };
    let role = match command {
        Command::All => {
            migrate(&settings).await?;
            roles(true, true, true, false)
        }
        Command::Ingest => roles(true, false, false, false),
        Command::Sender => roles(false, true, false, false),
        Command::Webhook => roles(false, false, true, false),
        Command::Simulator => roles(false, false, false, true),
        Command::Migrate => {
            migrate(&settings).await?;
            println!("migrations applied");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Demo { serve } => {
            let summary = herald::demo::run(settings, serve).await?;
            let ok = summary.all_final() && summary.counters_match;
            return Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            });
        }
        Command::Bench {
            workload,
            simulator,
            recipients,
            rate,
        } => {
            let figures =
                herald::bench::run(settings, workload, &simulator, recipients, rate).await?;
            println!("{}", serde_json::to_string(&figures)?);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Lag { json, watch } => {
            let (pool, redis, keys) = herald::ops::connect(&settings).await?;
            loop {
                let rows = herald::ops::lag(&pool, &redis, &keys).await?;
                if json {
                    println!("{}", serde_json::to_string(&rows)?);
                } else {
                    if watch {
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", herald::ops::lag_table(&rows));
                }
                if !watch {
                    return Ok(std::process::ExitCode::SUCCESS);
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
        Command::Top { json, interval } => {
            let (pool, _, _) = herald::ops::connect(&settings).await?;
            let interval = std::time::Duration::from_secs_f64(interval.clamp(0.1, 60.0));
            let rows = herald::ops::top(&pool, interval).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                print!("{}", herald::ops::top_table(&rows));
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Repair { now } => {
            let (pool, redis, keys) = herald::ops::connect(&settings).await?;
            let window = if now {
                Duration::ZERO
            } else {
                Duration::from_millis(settings.ingest.repair_window_ms)
            };
            let wake = std::sync::Arc::new(tokio::sync::Notify::new());
            let mut fanout = herald_ingest::FanOut::new(pool, redis, keys, &settings.ingest, wake);
            let repaired = fanout.repair(window).await?;
            print!("{}", herald::ops::repair_report(&repaired, window));
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let pool = db::pool(&settings.database)?;
            let (id, key) = herald::tenant::create(&pool, &name).await?;
            println!("tenant  {id}");
            println!("api key {}", key.expose_secret());
            println!("(the key is shown once; keep it safe)");
            return Ok(std::process::ExitCode::SUCCESS);
        }
    };
    serve(settings, role).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the roles on their configured ports until SIGTERM or Ctrl-C.
async fn serve(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    let delay = settings.shutdown.delay();
    let stack = Stack::start_on_configured_ports(settings, roles).await?;
    tokio::spawn(stop_on_signal(
        stack.draining_token(),
        stack.shutdown_token(),
        delay,
    ));
    stack.run_until_stopped().await
}

/// On SIGTERM or Ctrl-C: not ready at once, still serving for `delay` (until Kubernetes has
/// taken the pod out of its Services' endpoints), then stop, finishing what is in flight. A
/// second signal stops at once.
async fn stop_on_signal(draining: CancellationToken, shutdown: CancellationToken, delay: Duration) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                None
            }
        };
    let mut signal = async || match terminate.as_mut() {
        Some(s) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = s.recv() => {}
        },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    signal().await;
    draining.cancel();
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "stopping: not ready from now, still serving for a while"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = signal() => {}
        }
    }
    tracing::info!("stopping: finishing what is in flight");
    shutdown.cancel();
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::ensure_database(&settings.database)
        .await
        .context("creating the database")?;
    let pool = db::pool(&settings.database)?;
    db::migrate(&pool).await.context("applying migrations")?;
    Ok(())
}
