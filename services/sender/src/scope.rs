//! App- and WABA-wide holds (THROTTLE-SCOPE in the reference: codes 4 and 80007). When one
//! number meets such a limit, every number of that scope holds its sends: in this process at
//! once, and in every other sender within `REFRESH` of the recorder sharing it, through a Redis
//! key whose expiry is the end of the hold. The message that met the limit is retried without
//! using an attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::stream::{Connection, Keys, RedisResult, holds};
use tokio_util::sync::CancellationToken;

pub const REFRESH: Duration = Duration::from_millis(250);

/// A hold this process set, for the recorder to share with every other sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeHold {
    pub scope: String,
    /// When it ends, Unix ms.
    pub end_ms: i64,
    pub length: Duration,
}

impl ScopeHold {
    /// Writes the hold to Redis, where other senders read it; a longer one there is kept.
    pub async fn share(&self, redis: &mut Connection, keys: &Keys) -> RedisResult<()> {
        let key = keys.scope_throttle(&self.scope);
        holds::extend_hold(redis, &key, self.end_ms, self.length).await
    }
}

/// The scope a Graph rate-limit error holds: the whole app (4) or the number's WABA (80007).
pub fn scope_of(code: i64, waba: &str) -> Option<String> {
    match code {
        4 => Some(APP.to_owned()),
        80007 => Some(waba_scope(waba)),
        _ => None,
    }
}

const APP: &str = "app";

fn waba_scope(waba: &str) -> String {
    format!("waba:{waba}")
}

pub struct ScopeThrottles {
    keys: Keys,
    clock: Clock,
    /// Scope → the Unix ms its hold ends.
    until: RwLock<HashMap<String, i64>>,
    /// The scopes of the numbers this process sends for.
    watched: Mutex<HashSet<String>>,
}

impl ScopeThrottles {
    pub fn new(keys: Keys, clock: Clock) -> Self {
        Self {
            keys,
            clock,
            until: RwLock::default(),
            watched: Mutex::new(HashSet::from([APP.to_owned()])),
        }
    }

    /// Follows the holds of a number of `waba`.
    pub fn watch(&self, waba: &str) {
        self.watched
            .lock()
            .expect("scope lock")
            .insert(waba_scope(waba));
    }

    /// How long a number of `waba` must still hold its sends, if at all.
    pub fn hold(&self, waba: &str) -> Option<Duration> {
        let until = self.until.read().expect("scope lock");
        let end = [APP.to_owned(), waba_scope(waba)]
            .iter()
            .filter_map(|scope| until.get(scope))
            .max()
            .copied()?;
        let left = end - self.clock.unix_ms();
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    /// Holds every number of `scope` in this process for `length`; a longer hold already
    /// under way is kept. The hold to share with other senders (`share`), when it grew.
    pub fn hold_here(&self, scope: &str, length: Duration) -> Option<ScopeHold> {
        let end_ms = self.clock.unix_ms() + length.as_millis() as i64;
        {
            let mut until = self.until.write().expect("scope lock");
            let kept = until.entry(scope.to_owned()).or_default();
            if *kept >= end_ms {
                return None;
            }
            *kept = end_ms;
        }
        tracing::warn!(
            scope,
            hold_ms = length.as_millis() as u64,
            "Graph rate limit: every number of the scope holds its sends"
        );
        metrics::counter!("herald_sender_scope_holds_total").increment(1);
        Some(ScopeHold {
            scope: scope.to_owned(),
            end_ms,
            length,
        })
    }

    /// Reads the holds of the watched scopes from Redis.
    pub async fn refresh(&self, redis: &mut Connection) -> RedisResult<()> {
        let scopes: Vec<String> = self
            .watched
            .lock()
            .expect("scope lock")
            .iter()
            .cloned()
            .collect();
        let keys: Vec<String> = scopes.iter().map(|s| self.keys.scope_throttle(s)).collect();
        let ends = holds::hold_ends(redis, &keys).await?;
        let mut fresh: HashMap<String, i64> = scopes
            .into_iter()
            .zip(ends)
            .filter_map(|(scope, end)| Some((scope, end?)))
            .collect();
        let mut until = self.until.write().expect("scope lock");
        let now = self.clock.unix_ms();
        // Holds only ever grow: one set here but not yet in Redis is kept until it ends.
        for (scope, end) in until.drain().filter(|(_, end)| *end > now) {
            let kept = fresh.entry(scope).or_default();
            *kept = (*kept).max(end);
        }
        *until = fresh;
        Ok(())
    }

    /// Refreshes until `shutdown`.
    pub async fn keep_fresh(&self, mut redis: Connection, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.refresh(&mut redis).await {
                tracing::error!(error = %e, "cannot read app and WABA holds");
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_4_holds_the_app_and_80007_the_waba() {
        assert_eq!(scope_of(4, "w1").as_deref(), Some("app"));
        assert_eq!(scope_of(80007, "w1").as_deref(), Some("waba:w1"));
        assert_eq!(scope_of(130429, "w1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_applies_to_its_scope_only_and_ends() {
        let throttles = ScopeThrottles::new(Keys::new("t"), Clock::driven(1_000_000));
        assert!(
            throttles
                .hold_here("waba:w1", Duration::from_secs(60))
                .is_some()
        );
        assert!(
            throttles
                .hold_here("waba:w1", Duration::from_secs(30))
                .is_none(),
            "a shorter hold changes nothing and is not shared"
        );
        let left = throttles.hold("w1").expect("w1 is held");
        assert_eq!(left, Duration::from_secs(60));
        assert_eq!(throttles.hold("w3"), None);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(throttles.hold("w1"), Some(Duration::from_secs(1)));
        throttles.hold_here("app", Duration::from_secs(5));
        assert!(
            throttles.hold("w3").is_some(),
            "an app hold holds every WABA"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            throttles.hold("w1"),
            Some(Duration::from_secs(4)),
            "the app's"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(throttles.hold("w1"), None, "an ended hold holds nothing");
        assert_eq!(throttles.hold("w3"), None);
    }
}
