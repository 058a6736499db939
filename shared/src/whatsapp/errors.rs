//! Graph error bodies and the class of every error code (reference §2.3–§2.4).

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`, Meta's error envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphErrorBody {
    pub error: GraphError,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GraphError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

/// What the sender must do about an error (reference §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The number is over its throughput: slow the number and requeue; not an attempt.
    ThrottleNumber,
    /// The app or WABA hit a Graph call limit: back off the whole scope; not an attempt.
    ThrottleScope,
    /// Only this recipient is limited (pair rate, per-user marketing cap): retry it later.
    PairLater,
    /// A platform fault: retry with backoff, a bounded number of times.
    Transient,
    /// Never retry this message to this recipient.
    PermanentRecipient,
    /// Token, permission, billing, policy or quality: stop the number and alert.
    PauseNumber,
    /// The template or payload is wrong: every recipient would fail the same way.
    Template,
}

/// The class of a Cloud API error code. Branch on the code only (reference §2.5).
pub fn classify(code: i64) -> ErrorClass {
    use ErrorClass::*;
    match code {
        130429 => ThrottleNumber,
        4 | 80007 | 80008 => ThrottleScope,
        131056 | 131049 => PairLater,
        1 | 2 | 131000 | 131016 | 131057 | 2494100 | 134100 => Transient,
        470 | 130472 | 131021 | 131026 | 131030 | 131047 | 131050 | 130497 | 137000 => {
            PermanentRecipient
        }
        0
        | 3
        | 10
        | 33
        | 190
        | 200..=299
        | 368
        | 131005
        | 131031
        | 131037
        | 131042
        | 131045
        | 131048
        | 131064
        | 133010
        | 133016 => PauseNumber,
        100
        | 131008
        | 131009
        | 131051
        | 131053
        | 131055
        | 131062
        | 131063
        | 132000..=132999
        | 134101
        | 134102
        | 135000 => Template,
        // An unknown code is retried a bounded number of times rather than dropped.
        _ => Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_reference_classes() {
        assert_eq!(classify(130429), ErrorClass::ThrottleNumber);
        assert_eq!(classify(80007), ErrorClass::ThrottleScope);
        assert_eq!(classify(131056), ErrorClass::PairLater);
        assert_eq!(classify(131000), ErrorClass::Transient);
        assert_eq!(classify(131026), ErrorClass::PermanentRecipient);
        assert_eq!(classify(190), ErrorClass::PauseNumber);
        assert_eq!(classify(132001), ErrorClass::Template);
        assert_eq!(classify(999_999), ErrorClass::Transient);
    }

    #[test]
    fn the_fixture_error_bodies_parse() {
        let body: GraphErrorBody = serde_json::from_str(
            r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"Cz5"}}"#,
        )
        .unwrap();
        assert_eq!(body.error.code, 190);
        assert_eq!(body.error.error_subcode, Some(463));
        assert!(body.error.error_data.is_none());
    }
}
