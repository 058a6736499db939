//! Logging: `tracing` with a filter from settings (or `RUST_LOG`), pretty or JSON. Metrics:
//! the `metrics` facade, recorded for Prometheus and rendered at each role's `/metrics`.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber, writing to stderr. Safe to call more than once (later calls
/// do nothing), which tests rely on.
pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.clone()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// Installs the global subscriber writing to the file at `path` (created or truncated), for a
/// command whose terminal shows something else (the demo's progress).
pub fn init_to_file(settings: &TelemetrySettings, path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.clone()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file));
    let _ = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    Ok(())
}

/// The process's Prometheus recorder, installed on first use (so call this before any role
/// starts: metrics emitted before it are dropped). Histograms get buckets, so that they can be
/// summed across pods.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            // A number's series stop when its sender stops owning it (set to 0 first): gone
            // from the output after this long without an update (owners refresh every 5 s).
            .idle_timeout(
                metrics_util::MetricKindMask::GAUGE,
                Some(Duration::from_secs(60)),
            )
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets are valid");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (a test harness's): render an empty registry.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        let upkeep = handle.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        handle
    })
}

/// Every series' HELP text.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    let per_number =
        "by number, reported by the sender that sends for it (0 once it stops, then gone)";
    describe_gauge!(
        "herald_stream_length",
        format!(
            "Entries in the number's stream: read and not yet recorded, or not yet read; {per_number}"
        )
    );
    describe_gauge!(
        "herald_stream_lag",
        format!(
            "Entries in the number's stream not yet read (what an autoscaler watches); {per_number}"
        )
    );
    describe_gauge!(
        "herald_stream_pending",
        format!("Entries read and not yet recorded in Postgres; {per_number}")
    );
    describe_gauge!(
        "herald_stream_oldest_entry_age_seconds",
        format!("How long the oldest entry of the number's stream has waited; {per_number}")
    );
    describe_gauge!(
        "herald_retry_set_size",
        format!("Messages waiting for a retry; {per_number}")
    );
    describe_gauge!(
        "herald_parked_size",
        format!("Messages of paused campaigns set aside; {per_number}")
    );
    describe_gauge!(
        "herald_sender_lag",
        "Entries not yet read in the streams of every number this sender owns: summed over \
         senders, the whole backlog, each entry counted once (what KEDA scales senders on)"
    );
    describe_gauge!(
        "herald_sender_oldest_entry_age_seconds",
        "The age of the oldest entry in the streams of the numbers this sender owns"
    );
    describe_gauge!(
        "herald_sender_rate",
        "The messages per second the sender paces the number at (adaptive, up to its ceiling)"
    );
    describe_counter!(
        "herald_sends_total",
        "Cloud API sends by outcome (accepted, rejected, transport) and Graph error code"
    );
    describe_counter!(
        "herald_sender_ambiguous_resends_total",
        "Sends whose first outcome was unknown, sent again after the reconciliation window"
    );
    describe_counter!(
        "herald_sender_scope_holds_total",
        "App- or WABA-wide rate limits met (codes 4, 80007), each holding every number of the scope"
    );
    describe_counter!(
        "herald_sender_daily_cap_waits_total",
        "Messages to new recipients held back by a portfolio's daily recipient limit"
    );
    describe_counter!(
        "herald_sender_numbers_paused_total",
        "Numbers paused for an operator (token, policy or quality errors), by state"
    );
    describe_counter!(
        "herald_sender_suppressed_total",
        "Queued messages recorded suppressed instead of sent: the recipient opted out"
    );
    describe_counter!(
        "herald_webhook_malformed_bodies_total",
        "Webhook bodies that could not be read, kept and skipped"
    );
    describe_counter!(
        "herald_webhook_receipts_total",
        "Status receipts processed: applied (a message moved forward), unchanged (repeated or \
         older than its status), unmatched (held until the send is recorded)"
    );
    describe_counter!(
        "herald_webhook_orphan_receipts_total",
        "Receipts whose message was never found within the hold time"
    );
    describe_counter!(
        "herald_webhook_foreign_receipts_total",
        "Receipts ignored: their message was sent from another number than the one they name"
    );
    describe_counter!(
        "herald_sender_retries_settled_total",
        "Retries not sent: a receipt showed the earlier, ambiguous attempt (a timeout, a reset) \
         went out"
    );
    describe_counter!(
        "herald_fanout_lost_lanes_total",
        "Streams (a campaign's messages on one number) found to have lost entries: Redis lost data"
    );
    describe_counter!(
        "herald_fanout_requeued_total",
        "Messages appended again to their streams after Redis lost them unsent"
    );
    describe_histogram!(
        "herald_cloud_api_request_seconds",
        metrics::Unit::Seconds,
        "Cloud API send latency, by outcome"
    );
    describe_histogram!(
        "herald_http_request_seconds",
        metrics::Unit::Seconds,
        "HTTP requests served (ingest's API, the webhook), by role, route and status"
    );
}

/// Middleware recording each request a role (the state) serves, by route and status
/// (`herald_http_request_seconds`): `route_layer(from_fn_with_state("ingest", timed))`.
pub async fn timed(
    axum::extract::State(role): axum::extract::State<&'static str>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "herald_http_request_seconds",
        "role" => role,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// `/metrics` in Prometheus's text format.
pub fn render_metrics() -> String {
    metrics().render()
}

/// A role's own metrics listener: `/metrics` alone, on a port apart from its public one (the
/// metrics name every tenant's numbers and queues).
pub fn metrics_router() -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { render_metrics() }),
    )
}

/// Binds a role's metrics listener (`role` names it in the error).
pub async fn bind_metrics(
    listen: &crate::settings::HttpListener,
    role: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let address = listen.address();
    tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("{role} cannot serve its metrics on {address}: {e}"))
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    timeouts: crate::settings::HttpTimeouts,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    crate::server::serve(
        listener,
        metrics_router(),
        &timeouts,
        stop.cancelled_owned(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("the metrics listener failed: {e}"))
}
