//! Typed settings, loaded with the `config` crate from `config/default.toml`, then
//! `config/$HERALD_ENV.toml` (default `production`), then `HERALD__SECTION__KEY` variables.
//! Each section owns its conversions; secrets are `SecretString`s. Loading checks only what
//! every command needs; [`Settings::check`] then requires what one command uses.

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
    pub shutdown: ShutdownSettings,
    pub http: HttpTimeouts,
    /// The profile the settings were loaded with (`HERALD_ENV`).
    #[serde(skip)]
    pub profile: String,
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
    /// `redis://` or `rediss://` (TLS); for a cluster, one or more nodes, comma-separated.
    pub url: SecretString,
    /// Every key Herald writes starts with this (tests use a random one).
    pub key_prefix: String,
    /// A Redis Cluster (also implied by several URLs): commands go to the node owning the key.
    #[serde(default)]
    pub cluster: bool,
    /// PEM file of the certificate authority a `rediss://` server's certificate is checked
    /// against; empty: the system's trust store.
    #[serde(default)]
    pub ca_file: String,
}

impl RedisSettings {
    /// The URLs of `url`, one per node.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether Herald talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.urls().len() > 1
    }
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
    /// Entries a number may hold in Redis (its stream, read or not until acknowledged, and its
    /// retry set) before fan-out waits for its sender.
    pub fanout_window: usize,
    pub fanout_poll_ms: u64,
    /// Requests each API key may make per second on one replica, and the burst allowed.
    pub requests_per_key_per_s: u32,
    pub request_burst: u32,
    /// Uploads of one tenant under way at once on one replica.
    pub max_uploads_per_tenant: usize,
    /// Sender numbers one tenant may register (each holds a sender's attention and a
    /// connection while it sends).
    pub max_numbers_per_tenant: i64,
    /// After Redis lost a lane's entries, how long fan-out waits (for sends in flight to be
    /// recorded and receipts naming the messages to arrive) before appending the unsent again.
    pub repair_window_ms: u64,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    /// How often each replica looks for scheduled campaigns now due.
    pub schedule_poll_ms: u64,
    /// How late a scheduled start may be before it counts as missed (`overdue`).
    pub overdue_grace_s: u64,
    /// Longest a statement of ingest may run (Postgres `statement_timeout`); 0 for none.
    pub statement_timeout_ms: u64,
    /// Where ingest serves `/metrics`: never on the public API port.
    pub metrics: HttpListener,
    pub notifications: NotificationSettings,
    pub console: ConsoleSettings,
}

/// The web console, served by the ingest role.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// Where it is mounted: `/`, or a prefix such as `/console`.
    pub path: String,
}

/// The delivery of events to tenants' webhook endpoints (every ingest replica delivers).
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    /// How often a replica looks for due deliveries when it found none.
    pub poll_ms: u64,
    /// Deliveries taken at once (each to a different endpoint or subject) and sent together.
    pub batch: i64,
    /// Longest an endpoint may take to answer.
    pub timeout_ms: u64,
    /// Waits after each failed attempt; after the last, the delivery is given up on and its
    /// endpoint disabled.
    #[serde(deserialize_with = "list")]
    pub retry_delays_s: Vec<u64>,
    /// Events and their deliveries are kept this long once none is pending.
    pub retention_days: u32,
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
    #[serde(deserialize_with = "list")]
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

/// The environment variable of a setting: `webhook.verify_token` → `HERALD__WEBHOOK__VERIFY_TOKEN`.
fn variable(setting: &str) -> String {
    format!("HERALD__{}", setting.replace('.', "__").to_uppercase())
}

/// Settings read from the environment as text, never as numbers: the secrets, the key
/// prefix, and the lists (split at commas by `list`).
const TEXT_SETTINGS: [&str; 10] = [
    "database.url",
    "redis.url",
    "redis.key_prefix",
    "security.token_encryption_key",
    "whatsapp.proxy",
    "webhook.verify_token",
    "webhook.app_secrets",
    "webhook.stop_keywords",
    "sender.retry_delays_ms",
    "simulator.app_secret",
];

/// A list setting: an array in a file, or one comma-separated text in an environment variable
/// (`HERALD__WEBHOOK__APP_SECRETS=new,old`).
fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + FromText,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given<T> {
        List(Vec<T>),
        Text(String),
    }
    match Given::<T>::deserialize(deserializer)? {
        Given::List(items) => Ok(items),
        Given::Text(text) => text
            .split(',')
            .map(T::from_text)
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom),
    }
}

/// One item of a list setting given as text.
trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
}

impl FromText for u64 {
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))
    }
}

impl FromText for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FromText for SecretString {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(SecretString::from(text))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    #[serde(flatten)]
    pub listen: HttpListener,
    pub verify_token: SecretString,
    /// Meta app secrets: the first signs nothing, any one verifies (for rotation).
    #[serde(deserialize_with = "list")]
    pub app_secrets: Vec<SecretString>,
    pub max_body_bytes: usize,
    pub batch: usize,
    pub block_ms: u64,
    /// Consumers applying the buffer at once, in each webhook process.
    pub processors: usize,
    /// Texts (and quick-reply buttons) that opt the sender out, compared whole, case aside.
    #[serde(deserialize_with = "list")]
    pub stop_keywords: Vec<String>,
    /// Days a processed body is kept in `webhook_events`.
    pub retention_days: u32,
    /// Where the webhook role serves `/metrics`: never on the public webhook port.
    pub metrics: HttpListener,
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

/// What every HTTP listener allows a client (see `server`).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpTimeouts {
    /// A connection must deliver a request's headers within this long.
    pub header_read_ms: u64,
    /// A request body that sends nothing for this long fails.
    pub body_idle_ms: u64,
}

/// How a role stops on SIGTERM.
#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownSettings {
    /// How long a role answers `/readyz` 503 while still serving before its listeners close.
    pub delay_ms: u64,
}

impl ShutdownSettings {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
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

/// The profiles the public development secrets of `config/local.toml` and `config/test.toml`
/// may be used with.
pub const DEVELOPMENT_PROFILES: [&str; 2] = ["local", "test"];

/// The secrets `config/local.toml` and `config/test.toml` publish (a test keeps this list equal
/// to those files): anyone can sign webhooks or decrypt tokens with them.
const DEVELOPMENT_SECRETS: [&str; 5] = [
    "aGVyYWxkLWxvY2FsLWRldmVsb3BtZW50LWtleS0zMiE=",
    "herald-local-verify-token",
    "herald-local-app-secret",
    "herald-test-verify-token",
    "herald-test-app-secret",
];

/// The parts of the settings a command uses: [`Settings::check`] requires those and no others
/// (`herald migrate` runs with nothing but a database URL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    pub database: bool,
    pub redis: bool,
    /// `security.token_encryption_key`: ingest stores access tokens, the sender reads them.
    pub token_key: bool,
    /// `webhook.verify_token` and `webhook.app_secrets`.
    pub webhook: bool,
    /// `simulator.app_secret`, when the simulator sends webhooks.
    pub simulator: bool,
}

impl Uses {
    pub const DATABASE: Uses = Uses {
        database: true,
        redis: false,
        token_key: false,
        webhook: false,
        simulator: false,
    };
    pub const STORES: Uses = Uses {
        redis: true,
        ..Uses::DATABASE
    };
    pub const INGEST: Uses = Uses {
        token_key: true,
        ..Uses::STORES
    };
    pub const SENDER: Uses = Uses::INGEST;
    pub const WEBHOOK: Uses = Uses {
        webhook: true,
        ..Uses::STORES
    };
    pub const SIMULATOR: Uses = Uses {
        simulator: true,
        ..Uses::NOTHING
    };
    pub const NOTHING: Uses = Uses {
        database: false,
        redis: false,
        token_key: false,
        webhook: false,
        simulator: false,
    };

    /// What two commands use together (`herald all`).
    pub const fn and(self, other: Uses) -> Uses {
        Uses {
            database: self.database || other.database,
            redis: self.redis || other.redis,
            token_key: self.token_key || other.token_key,
            webhook: self.webhook || other.webhook,
            simulator: self.simulator || other.simulator,
        }
    }
}

impl Settings {
    /// Loads settings from the `config/` directory found from the working directory up
    /// (or `HERALD_CONFIG_DIR`), the profile named by `HERALD_ENV` (`default_profile` when it
    /// is unset: `production` for every role), and the environment.
    pub fn load(default_profile: &str) -> Result<Self, SettingsError> {
        let dir = match std::env::var_os("HERALD_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => find_config_dir().ok_or_else(|| {
                SettingsError::Invalid(
                    "no config/default.toml here or above; set HERALD_CONFIG_DIR".into(),
                )
            })?,
        };
        let profile = std::env::var("HERALD_ENV")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| default_profile.into());
        Self::load_from(&dir, &profile)
    }

    pub fn load_from(dir: &Path, profile: &str) -> Result<Self, SettingsError> {
        Self::load_with_env(dir, profile, None)
    }

    /// As `load_from`, with `env` standing in for the process's environment when given.
    /// Secrets and lists (`TEXT_SETTINGS`) are read as text: a secret of digits (`000123`)
    /// stays what it is, not the number 123; lists are split at commas. The other variables
    /// are parsed (numbers, booleans), which settings read through `flatten` need.
    fn load_with_env(
        dir: &Path,
        profile: &str,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        let file = dir.join(format!("{profile}.toml"));
        if !file.is_file() {
            return Err(SettingsError::Invalid(format!(
                "HERALD_ENV={profile} but there is no {}",
                file.display()
            )));
        }
        let env = env.unwrap_or_else(|| std::env::vars().collect());
        let (text, parsed): (config::Map<_, _>, config::Map<_, _>) =
            env.into_iter().partition(|(name, _)| {
                TEXT_SETTINGS
                    .iter()
                    .any(|key| name.eq_ignore_ascii_case(&variable(key)))
            });
        let source = |values, parse| {
            config::Environment::with_prefix("HERALD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(parse)
                .source(Some(values))
        };
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")))
            .add_source(config::File::from(file))
            .add_source(source(parsed, true))
            .add_source(source(text, false))
            .build()?
            .try_deserialize()?;
        settings.profile = profile.to_owned();
        settings.validate()?;
        Ok(settings)
    }

    /// Whether this is a developer's profile, where the public development secrets may be used.
    pub fn is_development(&self) -> bool {
        DEVELOPMENT_PROFILES.contains(&self.profile.as_str())
    }

    /// Refuses settings a command would use but cannot: an empty required secret or URL, or,
    /// outside the development profiles, one of their public secrets. The error names the
    /// setting and its environment variable.
    pub fn check(&self, uses: Uses) -> Result<(), SettingsError> {
        let mut required: Vec<(&str, Vec<&SecretString>)> = Vec::new();
        if uses.database {
            required.push(("database.url", vec![&self.database.url]));
        }
        if uses.redis {
            required.push(("redis.url", vec![&self.redis.url]));
        }
        if uses.token_key {
            required.push((
                "security.token_encryption_key",
                vec![&self.security.token_encryption_key],
            ));
        }
        if uses.webhook {
            required.push(("webhook.verify_token", vec![&self.webhook.verify_token]));
            required.push((
                "webhook.app_secrets",
                self.webhook.app_secrets.iter().collect(),
            ));
        }
        if uses.simulator && !self.simulator.webhook_url.is_empty() {
            required.push(("simulator.app_secret", vec![&self.simulator.app_secret]));
        }
        for (setting, values) in required {
            let variable = variable(setting);
            if values.is_empty() || values.iter().any(|v| v.expose_secret().trim().is_empty()) {
                return Err(SettingsError::Invalid(format!(
                    "{setting} is empty: set {variable}{}",
                    hint(setting)
                )));
            }
            let public = values
                .iter()
                .any(|v| DEVELOPMENT_SECRETS.contains(&v.expose_secret().trim()));
            if public && !self.is_development() {
                return Err(SettingsError::Invalid(format!(
                    "{setting} is a public development secret (config/local.toml, config/test.toml), \
                     refused with HERALD_ENV={}: set {variable}{}",
                    self.profile,
                    hint(setting)
                )));
            }
        }
        Ok(())
    }

    /// Checks that hold for every command.
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: &str| Err(SettingsError::Invalid(m.to_owned()));
        if self.sender.in_flight == 0 || self.sender.default_rate == 0 {
            return invalid("sender.in_flight and sender.default_rate must be above 0");
        }
        if self.sender.retry_delays_ms.is_empty() {
            return invalid("sender.retry_delays_ms needs at least one delay");
        }
        Ok(())
    }
}

/// How to make a value for a required setting.
fn hint(setting: &str) -> &'static str {
    match setting {
        "security.token_encryption_key" => {
            " to base64 of 32 random bytes (head -c32 /dev/urandom | base64)"
        }
        "webhook.app_secrets" => {
            " to your Meta app's secret (several comma-separated while rotating)"
        }
        "webhook.verify_token" => " to the token you gave Meta for the webhook handshake",
        "database.url" => " to a Postgres URL (postgres://user:password@host:5432/herald)",
        "redis.url" => " to a Redis URL (redis://, rediss:// for TLS)",
        _ => "",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
    }

    fn load(profile: &str) -> Settings {
        Settings::load_from(&config_dir(), profile).unwrap()
    }

    fn refusal(settings: &Settings, uses: Uses) -> String {
        settings.check(uses).unwrap_err().to_string()
    }

    #[test]
    fn the_development_secrets_are_those_the_development_profiles_publish() {
        let mut published = Vec::new();
        for profile in DEVELOPMENT_PROFILES {
            let s = load(profile);
            published.push(s.security.token_encryption_key.expose_secret().to_owned());
            published.push(s.webhook.verify_token.expose_secret().to_owned());
            for secret in &s.webhook.app_secrets {
                published.push(secret.expose_secret().to_owned());
            }
            published.push(s.simulator.app_secret.expose_secret().to_owned());
        }
        published.sort();
        published.dedup();
        let mut listed: Vec<String> = DEVELOPMENT_SECRETS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(published, listed);
    }

    #[test]
    fn production_requires_each_setting_a_command_uses_and_names_it() {
        let s = load("production");
        assert_eq!(s.ingest.listen.host, "0.0.0.0");
        assert_eq!(s.webhook.listen.host, "0.0.0.0");
        assert_eq!(s.sender.metrics.host, "0.0.0.0");
        let e = refusal(&s, Uses::DATABASE);
        assert!(
            e.contains("database.url is empty: set HERALD__DATABASE__URL"),
            "{e}"
        );
        // Nothing else is needed by migrate.
        let mut s = s;
        s.database.url = "postgres://db/herald".into();
        s.check(Uses::DATABASE).unwrap();
        let e = refusal(&s, Uses::STORES);
        assert!(e.contains("HERALD__REDIS__URL"), "{e}");
        s.redis.url = "rediss://redis:6380".into();
        let e = refusal(&s, Uses::SENDER);
        assert!(e.contains("HERALD__SECURITY__TOKEN_ENCRYPTION_KEY"), "{e}");
        let e = refusal(&s, Uses::WEBHOOK);
        assert!(e.contains("HERALD__WEBHOOK__VERIFY_TOKEN"), "{e}");
        s.webhook.verify_token = "mine".into();
        let e = refusal(&s, Uses::WEBHOOK);
        assert!(e.contains("HERALD__WEBHOOK__APP_SECRETS"), "{e}");
        s.webhook.app_secrets = vec!["a".into(), " ".into()];
        let e = refusal(&s, Uses::WEBHOOK);
        assert!(e.contains("webhook.app_secrets is empty"), "{e}");
        s.webhook.app_secrets = vec!["a".into()];
        s.check(Uses::WEBHOOK).unwrap();
    }

    #[test]
    fn the_public_development_secrets_are_refused_outside_development() {
        let local = load("local");
        local
            .check(Uses::INGEST.and(Uses::WEBHOOK).and(Uses::SIMULATOR))
            .unwrap();
        let mut s = load("production");
        s.database = local.database.clone();
        s.redis = local.redis.clone();
        s.security = local.security.clone();
        s.webhook.verify_token = "mine".into();
        s.webhook.app_secrets = vec!["new".into(), "herald-local-app-secret".into()];
        let e = refusal(&s, Uses::INGEST);
        assert!(
            e.contains("security.token_encryption_key is a public development secret")
                && e.contains("HERALD_ENV=production"),
            "{e}"
        );
        let e = refusal(&s, Uses::WEBHOOK);
        assert!(e.contains("webhook.app_secrets is a public"), "{e}");
        // The error never shows the secret it refuses.
        assert!(!e.contains("herald-local-app-secret"), "{e}");
        s.webhook.app_secrets.pop();
        s.check(Uses::WEBHOOK).unwrap();
    }

    #[test]
    fn environment_values_are_read_as_text_and_converted_by_type() {
        let env = [
            ("HERALD__WEBHOOK__VERIFY_TOKEN", "000123"),
            ("HERALD__WEBHOOK__APP_SECRETS", "0012,1e3"),
            ("HERALD__SIMULATOR__APP_SECRET", "0x10"),
            ("HERALD__SENDER__IN_FLIGHT", "64"),
            ("HERALD__WEBHOOK__PORT", "18182"),
            ("HERALD__INGEST__FANOUT_BATCH", "500"),
            ("HERALD__SENDER__RETRY_DELAYS_MS", "100,2000"),
            ("HERALD__REDIS__CLUSTER", "true"),
            ("HERALD__TELEMETRY__FORMAT", "json"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = Settings::load_with_env(&config_dir(), "test", Some(env.into_iter().collect()))
            .unwrap();
        assert_eq!(s.webhook.verify_token.expose_secret(), "000123");
        let secrets: Vec<&str> = s
            .webhook
            .app_secrets
            .iter()
            .map(|x| x.expose_secret())
            .collect();
        assert_eq!(secrets, ["0012", "1e3"]);
        assert_eq!(s.simulator.app_secret.expose_secret(), "0x10");
        assert_eq!(s.sender.in_flight, 64);
        assert_eq!((s.webhook.listen.port, s.ingest.fanout_batch), (18182, 500));
        assert_eq!(s.sender.retry_delays_ms, [100, 2000]);
        assert!(s.redis.cluster);
        assert_eq!(s.telemetry.format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_profile_is_refused() {
        let e = Settings::load_from(&config_dir(), "staging").unwrap_err();
        assert!(e.to_string().contains("HERALD_ENV=staging"), "{e}");
    }
}
