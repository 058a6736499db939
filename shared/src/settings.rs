//! Typed settings, loaded with the `config` crate from `config/default.toml`, then
//! `config/$HERALD_ENV.toml` (default `local`), then `HERALD__SECTION__KEY` variables.
//! Each section owns its conversions; secrets are `SecretString`s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub security: SecuritySettings,
    pub whatsapp: WhatsAppSettings,
    pub ingest: IngestSettings,
    pub sender: SenderSettings,
    pub webhook: WebhookSettings,
    pub simulator: SimulatorSettings,
    pub demo: DemoSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Every key Herald writes starts with this (tests use a random one).
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `herald_sender=debug,info`; `RUST_LOG` wins.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecuritySettings {
    /// Base64 of 32 random bytes: the AES-256-GCM key for access tokens at rest.
    pub token_encryption_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WhatsAppSettings {
    pub base_url: String,
    pub api_version: String,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// An HTTP proxy the sends go through (an HTTP CONNECT tunnel), `http://[user:pass@]host:port`;
    /// empty: the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`, if any.
    /// A secret: the URL may carry the proxy's password.
    #[serde(default = "no_proxy")]
    pub proxy: SecretString,
}

fn no_proxy() -> SecretString {
    SecretString::from("")
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpListener {
    pub host: String,
    pub port: u16,
}

impl HttpListener {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    #[serde(flatten)]
    pub listen: HttpListener,
    pub fanout_batch: i64,
    /// Entries a number's stream may hold (read or not, not yet acknowledged) before fan-out
    /// waits for its sender.
    pub fanout_window: usize,
    pub fanout_poll_ms: u64,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    /// How often each replica looks for scheduled campaigns now due.
    pub schedule_poll_ms: u64,
    /// How late a scheduled start may be before it counts as missed (`overdue`).
    pub overdue_grace_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SenderSettings {
    /// Sends per second for a number with no stored rate.
    pub default_rate: u32,
    /// Requests in flight per number, so API latency does not cap throughput.
    pub in_flight: usize,
    pub read_count: usize,
    pub block_ms: u64,
    pub flush_max: usize,
    pub flush_interval_ms: u64,
    /// Batches written to Postgres at once.
    pub flush_concurrency: usize,
    pub max_attempts: i32,
    pub retry_delays_ms: Vec<u64>,
    pub throttle_delay_ms: u64,
    /// How long every number of an app or WABA holds its sends after a Graph rate-limit error
    /// for that scope (4, 80007), unless Meta's `Retry-After` asks for longer.
    pub scope_throttle_ms: u64,
    /// The rolling window of a portfolio's daily recipient limit (24 h; shorter only to test).
    pub daily_cap_window_ms: u64,
    pub retry_poll_ms: u64,
    pub discovery_interval_ms: u64,
    /// How long a number's lease lasts without renewal: a crashed sender's numbers are taken
    /// over after at most this long. Renewed every third of it.
    pub lease_ttl_ms: u64,
    /// How long a new owner waits for a receipt of a send the old owner may have made before
    /// sending it again.
    pub reconciliation_window_ms: u64,
    pub pacing: PacingSettings,
    /// On shutdown, how long to wait for sends in flight before giving up on them.
    pub drain_ms: u64,
    /// This sender's name in consumer groups and leases (a pod name, say); empty picks a
    /// random one. Two live senders must never share a name.
    pub consumer: String,
    /// Where the sender serves `/metrics` (it has no other HTTP server).
    pub metrics: HttpListener,
}

/// Adaptive pacing of each number (design §6.3).
#[derive(Debug, Clone, Deserialize)]
pub struct PacingSettings {
    /// After a window this long with few enough errors, the rate goes up.
    pub window_s: u64,
    /// The share of sends that may have failed for the rate to go up (0.01 = 1%).
    pub max_error_share: f64,
    /// How much the rate goes up (0.10 = +10%)...
    pub increase: f64,
    /// ...and down (0.20 = −20%) after `throttles_to_slow` rate-limit errors within a second.
    pub decrease: f64,
    pub throttles_to_slow: u32,
    /// The rate never goes below this; nor above the number's throughput ceiling.
    pub floor: u32,
    /// No span of one second and this many ms holds more of a number's sends than its rate:
    /// how late a send may reach Meta without a second there counting one too many.
    pub guard_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    #[serde(flatten)]
    pub listen: HttpListener,
    pub verify_token: SecretString,
    /// Meta app secrets: the first signs nothing, any one verifies (for rotation).
    pub app_secrets: Vec<SecretString>,
    pub max_body_bytes: usize,
    pub batch: usize,
    pub block_ms: u64,
    /// Consumers applying the buffer at once, in each webhook process.
    pub processors: usize,
    /// Texts (and quick-reply buttons) that opt the sender out, compared whole, case aside.
    pub stop_keywords: Vec<String>,
    /// Days a processed body is kept in `webhook_events`.
    pub retention_days: u32,
    /// How long a receipt for a wamid no message has yet is retried before it is logged as an
    /// orphan and dropped.
    pub unmatched_hold_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimulatorSettings {
    #[serde(flatten)]
    pub listen: HttpListener,
    /// Where status webhooks go; empty sends none.
    pub webhook_url: String,
    pub app_secret: SecretString,
    /// A scenario file (TOML or JSON) overriding any of the simulator's behaviour; see
    /// `herald_simulator::SimConfig`.
    pub scenario: String,
    /// Seeds every random choice the simulator makes.
    pub seed: u64,
    /// Messages per second per number answered before 130429; 0 means no cap.
    pub cap_per_number: u32,
    pub delivered_delay_ms: u64,
    pub read_delay_ms: u64,
    pub webhook_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoSettings {
    pub recipients: usize,
    pub numbers: usize,
    pub rate_per_number: u32,
    pub timeout_s: u64,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings from the `config/` directory found from the working directory up
    /// (or `HERALD_CONFIG_DIR`), the environment named by `HERALD_ENV`, and the environment.
    pub fn load() -> Result<Self, SettingsError> {
        let dir = match std::env::var_os("HERALD_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => find_config_dir().ok_or_else(|| {
                SettingsError::Invalid(
                    "no config/default.toml here or above; set HERALD_CONFIG_DIR".into(),
                )
            })?,
        };
        let env = std::env::var("HERALD_ENV").unwrap_or_else(|_| "local".into());
        Self::load_from(&dir, &env)
    }

    pub fn load_from(dir: &Path, env: &str) -> Result<Self, SettingsError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("HERALD")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("webhook.app_secrets")
                    .with_list_parse_key("sender.retry_delays_ms")
                    .with_list_parse_key("webhook.stop_keywords")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: &str| Err(SettingsError::Invalid(m.to_owned()));
        if self
            .security
            .token_encryption_key
            .expose_secret()
            .is_empty()
        {
            return invalid(
                "security.token_encryption_key is empty: set HERALD__SECURITY__TOKEN_ENCRYPTION_KEY to base64 of 32 random bytes",
            );
        }
        if self.webhook.app_secrets.is_empty()
            || self
                .webhook
                .app_secrets
                .iter()
                .any(|s| s.expose_secret().is_empty())
        {
            return invalid("webhook.app_secrets needs at least one non-empty secret");
        }
        if self.sender.in_flight == 0 || self.sender.default_rate == 0 {
            return invalid("sender.in_flight and sender.default_rate must be above 0");
        }
        if self.sender.retry_delays_ms.is_empty() {
            return invalid("sender.retry_delays_ms needs at least one delay");
        }
        Ok(())
    }
}

fn find_config_dir() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("config");
        if candidate.join("default.toml").is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}
