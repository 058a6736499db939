//! What the simulator does, as data: set from settings and a scenario file at start, and
//! changed at run time through `POST /sim/config` (a JSON merge patch of this structure) and
//! `PUT /sim/numbers/{phone_number_id}`.

use std::path::Path;

use anyhow::Context;
use herald_shared::settings::SimulatorSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seeds every random choice: the same seed and the same requests give the same answers.
    pub seed: u64,
    /// Only configured numbers, tokens and templates are accepted; otherwise any number and
    /// any non-empty token work and unknown templates are accepted as they come.
    pub strict: bool,
    /// Accepted messages per second for a number without its own cap; 0 means no cap.
    pub cap_per_number: u32,
    /// How the cap is enforced.
    pub cap_mode: CapMode,
    /// Meta's pair rate limit: about one message per 6 s from a number to one recipient, with
    /// bursts of up to 45; over it, error 131056.
    pub pair_limit: bool,
    /// Unique recipients per portfolio per rolling 24 h; over it, messages are accepted but
    /// fail asynchronously with `daily_cap_error`. 0 means no cap.
    pub daily_cap: u32,
    pub daily_cap_error: i64,
    /// Time taken to answer a send.
    pub latency: Delay,
    pub faults: Vec<Fault>,
    pub webhooks: WebhookBehaviour,
    pub numbers: Vec<NumberDef>,
    /// The templates served and checked; by default a catalogue with one of each kind
    /// (`catalogue/templates.json`), for every WABA.
    pub templates: Vec<TemplateDef>,
    /// Most templates on one page of `message_templates`, whatever `limit` asks.
    pub template_page_size: usize,
    /// How many accepted send bodies `GET /sim/sent` keeps (the latest); 0 keeps none.
    pub capture: usize,
    /// Answers every send at once with a wamid and nothing else: no validation, limits,
    /// faults or receipts; only what is accepted is counted (per number, with each number's
    /// busiest second) and the in-flight figures. A stand-in that costs the machine as little
    /// as possible, so that a benchmark reads Herald's own cost, and still shows whether a
    /// sender kept to its numbers' rates.
    pub lean: bool,
    /// Free-form messages (every type but `template`) go only to a user who wrote to the
    /// number within the last 24 hours of the simulator's clock (`POST /sim/clock` moves it);
    /// others get 131047, as Meta answers.
    pub window: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            strict: false,
            cap_per_number: 0,
            cap_mode: CapMode::Window,
            pair_limit: true,
            daily_cap: 0,
            daily_cap_error: 131049,
            latency: Delay::None,
            faults: Vec::new(),
            webhooks: WebhookBehaviour::default(),
            numbers: Vec::new(),
            templates: catalogue(),
            template_page_size: 100,
            capture: 0,
            lean: false,
            window: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapMode {
    /// At most `cap` accepted in any one-second window: bursts allowed, the window never over.
    Window,
    /// GCRA with no burst: sends must be at least 1/cap apart; also never over in a window,
    /// but with no tolerance for jitter.
    Gcra,
}

/// A delay drawn from a distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delay {
    None,
    Fixed {
        ms: f64,
    },
    Uniform {
        min_ms: f64,
        max_ms: f64,
    },
    /// Log-normal with the given median and shape (sigma of the underlying normal).
    LogNormal {
        median_ms: f64,
        sigma: f64,
    },
}

/// One fault, injected with `probability` into sends (of `numbers`, or all), while active:
/// from `after_s` seconds after it was configured, for `for_s` seconds (or for ever).
// No `deny_unknown_fields` here: serde does not support it together with `flatten`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    pub probability: f64,
    #[serde(default)]
    pub after_s: f64,
    #[serde(default)]
    pub for_s: Option<f64>,
    #[serde(default)]
    pub numbers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// A Graph error answered at once, with Meta's HTTP status for the code unless given.
    Error { code: i64, http_status: Option<u16> },
    /// Accepted (200), then a `failed` status webhook with this code.
    AsyncFailure { code: i64 },
    /// A bare HTTP error without a Graph body.
    Http { status: u16 },
    /// No answer until the client gives up; `accepted` says whether the message went out.
    Timeout { accepted: bool },
    /// The connection is closed without an answer; `accepted` as for timeouts.
    Reset { accepted: bool },
}

/// What happens after a message is accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookBehaviour {
    /// Chance that a sent message is delivered, and that a delivered one is read.
    pub delivered: f64,
    pub read: f64,
    /// After acceptance, before `sent`; after `sent`, before `delivered`; after that, `read`.
    pub sent_delay: Delay,
    pub delivered_delay: Delay,
    pub read_delay: Delay,
    /// Statuses per POST, at most.
    pub batch: usize,
    /// Shuffle the statuses of each POST.
    pub shuffle: bool,
    /// Chance that a status is sent twice.
    pub duplicate: f64,
}

impl Default for WebhookBehaviour {
    fn default() -> Self {
        Self {
            delivered: 1.0,
            read: 1.0,
            sent_delay: Delay::None,
            delivered_delay: Delay::None,
            read_delay: Delay::None,
            batch: 100,
            shuffle: false,
            duplicate: 0.0,
        }
    }
}

/// A business number known to the simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberDef {
    /// Taken from the path in `PUT /sim/numbers/{phone_number_id}`.
    #[serde(default)]
    pub phone_number_id: String,
    /// The access token sends must carry; any non-empty one when absent.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_waba")]
    pub waba_id: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// This number's cap; the global one when absent.
    #[serde(default)]
    pub cap: Option<u32>,
    #[serde(default)]
    pub portfolio_id: Option<String>,
    #[serde(default = "default_quality")]
    pub quality_rating: String,
    #[serde(default = "default_tier")]
    pub messaging_limit: String,
}

/// A template known to the simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    /// The WABA that owns it; every WABA when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<String>,
    pub name: String,
    pub language: String,
    /// Body variables the template takes, when `components` does not say.
    #[serde(default)]
    pub body_params: usize,
    /// The components as Graph lists them; sends are checked against them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_format: Option<String>,
    #[serde(default = "default_category")]
    pub category: String,
    #[serde(default = "default_status")]
    pub status: String,
}

/// The WABA of a number the configuration gives none: it belongs to any WABA.
pub const DEFAULT_WABA: &str = "simulated-waba";

fn default_waba() -> String {
    DEFAULT_WABA.into()
}
fn default_quality() -> String {
    "GREEN".into()
}
fn default_tier() -> String {
    "TIER_UNLIMITED".into()
}
fn default_category() -> String {
    "MARKETING".into()
}
fn default_status() -> String {
    "APPROVED".into()
}

/// One template of each kind Herald fills: body only, image / video / document / text header,
/// named parameters, URL, quick-reply and copy-code buttons; and some it must refuse.
fn catalogue() -> Vec<TemplateDef> {
    serde_json::from_str(include_str!("catalogue/templates.json"))
        .expect("the built-in catalogue is valid")
}

impl TemplateDef {
    /// The components Graph lists: as configured, or a body with `body_params` variables.
    pub fn graph_components(&self) -> Vec<Value> {
        match &self.components {
            Some(components) => components.clone(),
            None => {
                let variables: Vec<String> = (1..=self.body_params)
                    .map(|p| format!("{{{{{p}}}}}"))
                    .collect();
                vec![
                    serde_json::json!({"type": "BODY", "text": format!("Hello {}", variables.join(" "))}),
                ]
            }
        }
    }
}

impl SimConfig {
    /// The configuration from settings, then the scenario file they name, if any.
    pub fn from_settings(settings: &SimulatorSettings) -> anyhow::Result<Self> {
        let mut config = Self {
            seed: settings.seed,
            cap_per_number: settings.cap_per_number,
            ..Self::default()
        };
        config.webhooks.delivered_delay = fixed(settings.delivered_delay_ms);
        config.webhooks.read_delay = fixed(settings.read_delay_ms);
        config.webhooks.batch = settings.webhook_batch.max(1);
        if !settings.scenario.is_empty() {
            let path = Path::new(&settings.scenario);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the scenario {}", path.display()))?;
            let json = path.extension().is_some_and(|e| e == "json");
            config = config
                .with_scenario(&text, json)
                .with_context(|| format!("the scenario {}", path.display()))?;
        }
        Ok(config)
    }

    /// This configuration with a scenario (TOML, or JSON when `json`) applied as a patch.
    pub fn with_scenario(&self, text: &str, json: bool) -> anyhow::Result<Self> {
        let patch: Value = if json {
            serde_json::from_str(text)?
        } else {
            serde_json::to_value(toml::from_str::<toml::Value>(text)?)?
        };
        self.patched(&patch)
    }

    /// This configuration with a JSON merge patch (RFC 7386) applied: objects merge, anything
    /// else (lists included) replaces.
    pub fn patched(&self, patch: &Value) -> anyhow::Result<Self> {
        let mut current = serde_json::to_value(self)?;
        merge(&mut current, patch);
        Ok(serde_json::from_value(current)?)
    }
}

fn fixed(ms: u64) -> Delay {
    if ms == 0 {
        Delay::None
    } else {
        Delay::Fixed { ms: ms as f64 }
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let base = SimConfig::default();
        let patched = base
            .patched(&json!({"cap_per_number": 80, "webhooks": {"read": 0.5}}))
            .unwrap();
        assert_eq!(patched.cap_per_number, 80);
        assert_eq!(patched.webhooks.read, 0.5);
        assert_eq!(patched.webhooks.delivered, 1.0);
        assert!(patched.pair_limit);
    }

    #[test]
    fn faults_and_delays_read_from_json() {
        let c = SimConfig::default()
            .patched(&json!({
                "latency": {"kind": "log_normal", "median_ms": 50, "sigma": 0.3},
                "faults": [
                    {"kind": "error", "code": 131000, "probability": 0.1},
                    {"kind": "timeout", "accepted": true, "probability": 0.01, "after_s": 5, "for_s": 10}
                ]}))
            .unwrap();
        assert_eq!(c.faults.len(), 2);
        assert_eq!(c.faults[1].kind, FaultKind::Timeout { accepted: true });
        assert!(matches!(c.latency, Delay::LogNormal { .. }));
    }

    #[test]
    fn the_example_scenario_loads() {
        let text = include_str!("../../../config/simulator-scenario.example.toml");
        let c = SimConfig::default().with_scenario(text, false).unwrap();
        assert!(c.strict);
        assert_eq!((c.seed, c.cap_per_number), (7, 80));
        assert_eq!(c.numbers[0].token.as_deref(), Some("EAAG-sandbox-token"));
        assert_eq!(
            c.faults[0].kind,
            FaultKind::Error {
                code: 131000,
                http_status: None
            }
        );
        assert_eq!(c.webhooks.read, 0.6);
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        assert!(SimConfig::default().patched(&json!({"cap": 3})).is_err());
    }
}
