//! What to do with each Cloud API outcome: a classification plus a pure delay function.

use std::time::Duration;

use herald_shared::domain::NumberState;
use herald_shared::settings::SenderSettings;
use herald_shared::whatsapp::{ErrorClass, SendResult, TransportFailure, classify};

/// The retry schedule, from settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub transient_delays: Vec<Duration>,
    pub throttle_delay: Duration,
    /// The least wait before resending after an ambiguous failure (a timeout, a reset, a bare
    /// 5xx: Meta may have taken the message): long enough for the `sent` receipt carrying the
    /// message id to arrive, which the worker checks before resending.
    pub ambiguous_hold: Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &SenderSettings) -> Self {
        Self {
            max_attempts: s.max_attempts.max(1) as u32,
            transient_delays: s
                .retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            throttle_delay: Duration::from_millis(s.throttle_delay_ms),
            ambiguous_hold: Duration::from_millis(s.reconciliation_window_ms),
        }
    }
}

/// What the recorder does with one outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Record `sent` with Meta's id.
    Sent { wamid: String },
    /// Send again after `delay`; `counts` says whether this try used up an attempt.
    Retry { delay: Duration, counts: bool },
    /// Record `failed` with the code and title.
    Fail { code: i32, title: String },
    /// The number cannot send (token, permission, policy, quality): pause it; the message
    /// waits, unspent, for the number to resume.
    PauseNumber {
        state: NumberState,
        code: i32,
        title: String,
    },
    /// The template is unusable: pause the campaign with the reason; the message waits.
    PauseCampaign { code: i32, title: String },
}

/// Decides what to do after attempt number `attempt` (0-based) ended in `result`.
/// `jitter` in [0, 1) spreads retries (up to +20%) so they do not return together.
pub fn decide(result: &SendResult, attempt: u32, policy: &RetryPolicy, jitter: f64) -> Action {
    let mut retry_after = None;
    if let SendResult::Transport(TransportFailure::Ambiguous(_)) = result {
        retry_after = Some(policy.ambiguous_hold);
    }
    let (class, code, title) = match result {
        SendResult::Accepted { wamid } => {
            return Action::Sent {
                wamid: wamid.clone(),
            };
        }
        SendResult::Rejected {
            error,
            retry_after: after,
            ..
        } => {
            retry_after = *after;
            (
                classify(error.code),
                error.code as i32,
                error.message.clone(),
            )
        }
        SendResult::Transport(TransportFailure::NotSent(reason))
        | SendResult::Transport(TransportFailure::Ambiguous(reason)) => {
            (ErrorClass::Transient, 0, reason.clone())
        }
    };
    // Never sooner than Meta asked.
    let with_jitter = |d: Duration| {
        d.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
            .max(retry_after.unwrap_or_default())
    };
    match class {
        ErrorClass::ThrottleNumber | ErrorClass::ThrottleScope => Action::Retry {
            delay: with_jitter(policy.throttle_delay),
            counts: false,
        },
        ErrorClass::Transient | ErrorClass::PairLater if attempt + 1 < policy.max_attempts => {
            let delay = if code == 131049 {
                // Meta: wait at least 24 h before sending to this user again.
                Duration::from_secs(24 * 3600)
            } else if code == 131056 {
                // Meta: 4^n seconds after the n-th consecutive pair-rate refusal.
                Duration::from_secs(4u64.saturating_pow(attempt + 1))
            } else {
                let i = (attempt as usize).min(policy.transient_delays.len() - 1);
                policy.transient_delays[i]
            };
            Action::Retry {
                delay: with_jitter(delay),
                counts: true,
            }
        }
        ErrorClass::PauseNumber => Action::PauseNumber {
            state: if is_auth_error(code) {
                NumberState::PausedAuth
            } else {
                NumberState::PausedQuality
            },
            code,
            title,
        },
        ErrorClass::Template => Action::PauseCampaign { code, title },
        _ => Action::Fail { code, title },
    }
}

/// Token and permission problems, fixed by a new token; the other pausing codes are policy,
/// billing or quality problems, fixed by an operator.
fn is_auth_error(code: i32) -> bool {
    matches!(code, 0 | 3 | 10 | 190 | 200..=299 | 131005)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::whatsapp::GraphError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            transient_delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(20),
                Duration::from_secs(45),
            ],
            throttle_delay: Duration::from_secs(1),
            ambiguous_hold: Duration::from_secs(10),
        }
    }

    fn rejected(code: i64) -> SendResult {
        SendResult::Rejected {
            http_status: 400,
            retry_after: None,
            error: GraphError {
                code,
                message: format!("(#{code}) test"),
                kind: None,
                error_subcode: None,
                error_data: None,
                fbtrace_id: None,
            },
        }
    }

    #[test]
    fn transient_errors_back_off_5_then_20_seconds_then_fail() {
        let p = policy();
        let r = rejected(131000);
        assert_eq!(
            decide(&r, 0, &p, 0.0),
            Action::Retry {
                delay: Duration::from_secs(5),
                counts: true
            }
        );
        assert_eq!(
            decide(&r, 1, &p, 0.0),
            Action::Retry {
                delay: Duration::from_secs(20),
                counts: true
            }
        );
        assert!(matches!(
            decide(&r, 2, &p, 0.0),
            Action::Fail { code: 131000, .. }
        ));
    }

    #[test]
    fn a_retry_after_longer_than_the_schedule_is_honoured() {
        let SendResult::Rejected {
            http_status, error, ..
        } = rejected(131000)
        else {
            unreachable!()
        };
        let r = SendResult::Rejected {
            http_status,
            error,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            decide(&r, 0, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(30),
                counts: true
            }
        );
        // A shorter one changes nothing.
        let SendResult::Rejected {
            http_status, error, ..
        } = rejected(130429)
        else {
            unreachable!()
        };
        let r = SendResult::Rejected {
            http_status,
            error,
            retry_after: Some(Duration::from_millis(10)),
        };
        assert_eq!(
            decide(&r, 0, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(1),
                counts: false
            }
        );
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        let Action::Retry { delay, .. } = decide(&rejected(2), 0, &policy(), 0.999) else {
            panic!("a transient error is retried");
        };
        assert!(delay > Duration::from_secs(5) && delay < Duration::from_secs(6));
    }

    #[test]
    fn throttling_retries_without_using_an_attempt() {
        for attempt in [0, 7] {
            assert_eq!(
                decide(&rejected(130429), attempt, &policy(), 0.0),
                Action::Retry {
                    delay: Duration::from_secs(1),
                    counts: false
                }
            );
        }
    }

    #[test]
    fn a_permanent_recipient_error_fails_at_once() {
        assert!(matches!(
            decide(&rejected(131026), 0, &policy(), 0.0),
            Action::Fail { code: 131026, .. }
        ));
    }

    #[test]
    fn an_expired_token_pauses_the_number_and_a_policy_block_pauses_it_for_quality() {
        assert!(matches!(
            decide(&rejected(190), 0, &policy(), 0.0),
            Action::PauseNumber {
                state: NumberState::PausedAuth,
                code: 190,
                ..
            }
        ));
        assert!(matches!(
            decide(&rejected(368), 0, &policy(), 0.0),
            Action::PauseNumber {
                state: NumberState::PausedQuality,
                code: 368,
                ..
            }
        ));
    }

    #[test]
    fn a_template_error_pauses_the_campaign() {
        assert!(matches!(
            decide(&rejected(132001), 0, &policy(), 0.0),
            Action::PauseCampaign { code: 132001, .. }
        ));
    }

    #[test]
    fn a_timeout_is_retried_once_its_receipt_could_have_come() {
        let r = SendResult::Transport(TransportFailure::Ambiguous("timed out".into()));
        assert_eq!(
            decide(&r, 0, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(10),
                counts: true
            }
        );
        // Later retries wait their own, longer, delay.
        assert_eq!(
            decide(&r, 1, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(20),
                counts: true
            }
        );
        let not_sent = SendResult::Transport(TransportFailure::NotSent("refused".into()));
        assert_eq!(
            decide(&not_sent, 0, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(5),
                counts: true
            }
        );
    }

    #[test]
    fn the_pair_rate_limit_waits_four_to_the_n_seconds() {
        assert_eq!(
            decide(&rejected(131056), 1, &policy(), 0.0),
            Action::Retry {
                delay: Duration::from_secs(16),
                counts: true
            }
        );
    }
}
