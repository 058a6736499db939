//! `herald demo`: a real campaign through the whole pipeline against the simulator, with
//! live progress and a summary. Succeeds only when every message reached a final status.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_ingest::views::{CampaignView, SyncReport, TestReport};
use herald_shared::db;
use herald_shared::settings::Settings;
use herald_simulator::StatsReport;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;

use crate::client::ApiClient;
use crate::fixtures::{self, Simulator, World};
use crate::stack::{Roles, Stack};

const TEMPLATE: &str = "spring_sale_2026";
const LANGUAGE: &str = "en_GB";

/// Where `herald demo` writes the roles' logs.
pub fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join("herald-demo.log")
}

/// What the demo saw.
pub struct Summary {
    pub campaign: CampaignView,
    pub simulator: StatsReport,
    pub elapsed: Duration,
    pub counters_match: bool,
    /// Deadlocks Postgres detected in the database while the demo ran (other clients of the
    /// same database count too).
    pub deadlocks: i64,
}

impl Summary {
    /// Every message is `read` or `failed` (nothing cancelled or suppressed in the demo).
    pub fn all_final(&self) -> bool {
        let c = &self.campaign.counters;
        c.total > 0 && c.read + c.failed + c.cancelled + c.suppressed + c.skipped == c.total
    }
}

/// Runs the demo campaign and prints its summary; `Ok(summary)` even when it did not finish.
/// With `serve`, the stack (and the console on it) keeps running until Ctrl-C.
pub async fn run(settings: Settings, serve: bool) -> anyhow::Result<Summary> {
    check_services(&settings).await?;
    // A fresh key prefix per run: earlier runs' streams cannot interfere.
    let world = World::isolate(settings, "demo").await?;
    let demo = world.settings.demo.clone();
    let deadlocks_before = db::deadlocks(&world.pool).await?;
    let stack = Stack::start(world.settings.clone(), Roles::ALL_WITH_SIMULATOR).await?;
    let outcome = drive(&stack, &world.pool, &demo).await;
    let summary = match outcome {
        Ok(mut summary) => {
            summary.deadlocks = db::deadlocks(&world.pool).await? - deadlocks_before;
            print_summary(&summary);
            Ok(summary)
        }
        Err(e) => Err(e),
    };
    if serve && summary.is_ok() {
        println!("Serving the console at {}/ until Ctrl-C.", stack.ingest_url);
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    stack.stop().await?;
    world.clear_keys().await?;
    summary
}

async fn drive(
    stack: &Stack,
    pool: &sqlx::PgPool,
    demo: &herald_shared::settings::DemoSettings,
) -> anyhow::Result<Summary> {
    let (tenant, key) = crate::tenant::create(pool, "Herald demo").await?;
    println!(
        "Tenant {tenant}: {} sender numbers, {} recipients",
        demo.numbers, demo.recipients
    );
    // The demo tenant's own key, shown so that its console can be signed in to.
    println!(
        "Console: {}/  (sign in with the API key {})",
        stack.ingest_url,
        secrecy::ExposeSecret::expose_secret(&key)
    );
    let api = ApiClient::new(stack.ingest_url.clone(), key);

    let run_id: u32 = rand::random::<u32>() % 1_000_000;
    let mut numbers = Vec::new();
    for i in 0..demo.numbers.max(1) {
        let phone_number_id = format!("1{run_id:06}{i:04}");
        let token = format!("demo-token-{}", uuid::Uuid::new_v4().simple());
        numbers.push(
            api.create_number(&phone_number_id, &token, demo.rate_per_number)
                .await?
                .id,
        );
    }
    let mut healthy = 0;
    for id in &numbers {
        let report: TestReport = api
            .post(&format!("/v1/numbers/{id}/test"), &serde_json::json!({}))
            .await?;
        healthy += usize::from(report.ok);
    }
    println!(
        "Numbers tested: {healthy} of {} ready to send",
        numbers.len()
    );
    let synced: SyncReport = api
        .post("/v1/templates/sync", &serde_json::json!({}))
        .await?;
    println!(
        "Templates synced: {} added, {} updated, {} removed",
        synced.counts.added, synced.counts.updated, synced.counts.removed
    );
    let campaign = api
        .create_campaign("Spring sale (demo)", TEMPLATE, LANGUAGE, &numbers)
        .await?;
    let report = api
        .upload_csv(campaign.id, fixtures::recipients_csv(demo.recipients), None)
        .await?;
    println!(
        "Audience uploaded as CSV: {} accepted, {} duplicates, {} rejected",
        report.accepted, report.duplicates, report.rejected_count
    );
    let started = Instant::now();
    api.start(campaign.id).await?;

    let progress = Progress::new(demo.recipients as u64);
    let deadline = started + Duration::from_secs(demo.timeout_s);
    // While it sends, the campaign's live view (Server-Sent Events), which ends once every
    // message has left the queue...
    let events = format!("/v1/campaigns/{}/events", campaign.id);
    let live = api.follow_events(&events, |event, data| {
        if event == "progress"
            && let Ok(view) = serde_json::from_str::<CampaignView>(data)
        {
            progress.show(&view, started.elapsed());
        }
    });
    match tokio::time::timeout_at(deadline.into(), live).await {
        Ok(followed) => followed.context("following the campaign's live view")?,
        Err(_) => tracing::warn!("the demo's time is up while the campaign sends"),
    }
    // ...then its receipts, until every message has a final status.
    let campaign = loop {
        let view = api.campaign(campaign.id).await?;
        progress.show(&view, started.elapsed());
        let c = &view.counters;
        if c.read + c.failed + c.cancelled + c.suppressed + c.skipped >= c.total
            || Instant::now() > deadline
        {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    progress.finish();

    let counts = db::campaigns::count_by_status(pool, campaign.id).await?;
    let counters_match = counts
        .iter()
        .all(|(status, n)| campaign.counters.of(*status) == *n)
        && counts.iter().map(|(_, n)| n).sum::<i64>() == campaign.counters.total;
    let simulator = Simulator::new(stack.simulator_url.clone()).stats().await?;
    Ok(Summary {
        campaign,
        simulator,
        elapsed,
        counters_match,
        deadlocks: 0,
    })
}

/// Prints the summary table.
fn print_summary(s: &Summary) {
    let c = &s.campaign.counters;
    let secs = s.elapsed.as_secs_f64().max(0.001);
    println!();
    println!("Campaign {}  ({})", s.campaign.id, s.campaign.name);
    println!("  {:<28} {:>10}", "recipients", c.total);
    for (label, n) in [
        ("sent (not yet delivered)", c.sent),
        ("delivered (not yet read)", c.delivered),
        ("read", c.read),
        ("failed", c.failed),
        ("still queued or pending", c.queued + c.pending),
    ] {
        println!("  {label:<28} {n:>10}");
    }
    println!("  {:<28} {:>10.1}", "seconds", secs);
    println!(
        "  {:<28} {:>10.0}",
        "messages read per second",
        c.read as f64 / secs
    );
    println!(
        "  {:<28} {:>10}",
        "accepted by the simulator", s.simulator.accepted_total
    );
    println!(
        "  {:<28} {:>10}",
        "recipients sent twice", s.simulator.duplicate_recipients
    );
    println!(
        "  {:<28} {:>10}",
        "counters = GROUP BY status",
        if s.counters_match { "yes" } else { "NO" }
    );
    println!("  {:<28} {:>10}", "deadlocks (Postgres)", s.deadlocks);
    println!();
    if s.all_final() {
        println!("Every message reached a final status.");
    } else {
        println!("Not every message reached a final status in time.");
    }
    println!("The roles' log: {}", log_path().display());
}

/// Fails with a clear message when Postgres or Redis is not reachable.
async fn check_services(settings: &Settings) -> anyhow::Result<()> {
    let pg = settings.database.connect_options()?;
    db::ensure_database(&settings.database).await.with_context(|| {
        format!(
            "Postgres is not reachable at {}:{} (start it, or run scripts/demo.sh, which starts a private one)",
            pg.get_host(),
            pg.get_port()
        )
    })?;
    let mut redis = herald_shared::stream::conn::connect(&settings.redis, Some(Duration::from_secs(2)))
        .await
        .with_context(|| {
            format!(
                "Redis is not reachable at {} (start it, or run scripts/demo.sh, which starts a private one)",
                redact(settings.redis.url.expose_secret())
            )
        })?;
    herald_shared::stream::admin::ping(&mut redis).await?;
    Ok(())
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split("://").next().unwrap_or("redis");
            format!("{scheme}://…@{host}")
        }
        None => url.to_owned(),
    }
}

/// A progress bar on a terminal; a line a second otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} final  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last_line: std::cell::Cell::new(None),
        }
    }

    /// The campaign's counters, and its rate and ETA as the API reports them.
    fn show(&self, view: &CampaignView, elapsed: Duration) {
        let c = &view.counters;
        let rate = view.send_rate.or(view.average_send_rate).unwrap_or(0.0);
        let eta = view
            .eta_seconds
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"));
        let line = format!(
            "sent {}  delivered {}  read {}  failed {}  | {:.0} msg/s  ETA {eta}",
            c.sent + c.delivered + c.read,
            c.delivered + c.read,
            c.read,
            c.failed,
            rate
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position((c.read + c.failed) as u64);
                bar.set_message(line);
            }
            None => {
                let due = self
                    .last_line
                    .get()
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    self.last_line.set(Some(Instant::now()));
                    println!("[{:>5.1}s] {line}", elapsed.as_secs_f64());
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
