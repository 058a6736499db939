//! App- and WABA-wide holds (THROTTLE-SCOPE in the reference: codes 4 and 80007). When one
//! number meets such a limit, every number of that scope holds its sends, within its tenant:
//! a tenant's app is its own, and a WABA id is what the tenant typed, so one tenant's limit
//! must not hold another's numbers. The holds are kept in this process at
//! once, and in every other sender within `REFRESH` of the recorder sharing it, through a Redis
//! key whose expiry is the end of the hold. The message that met the limit is retried without
//! using an attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use herald_shared::clock::Clock;
use herald_shared::domain::TenantId;
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

/// The scopes a number's sends belong to: its tenant's app, and its WABA within the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberScopes {
    app: String,
    waba: String,
}

impl NumberScopes {
    pub fn new(tenant: TenantId, waba: &str) -> Self {
        Self {
            app: format!("app:{tenant}"),
            waba: format!("waba:{tenant}:{waba}"),
        }
    }

    /// The scope a Graph rate-limit error holds: the whole app (4) or the number's WABA
    /// (80007).
    pub fn of(&self, code: i64) -> Option<&str> {
        match code {
            4 => Some(&self.app),
            80007 => Some(&self.waba),
            _ => None,
        }
    }
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
            watched: Mutex::default(),
        }
    }

    /// Follows the holds of a number's scopes.
    pub fn watch(&self, scopes: &NumberScopes) {
        let mut watched = self.watched.lock().expect("scope lock");
        watched.insert(scopes.app.clone());
        watched.insert(scopes.waba.clone());
    }

    /// How long a number of `scopes` must still hold its sends, if at all.
    pub fn hold(&self, scopes: &NumberScopes) -> Option<Duration> {
        let until = self.until.read().expect("scope lock");
        let end = [&scopes.app, &scopes.waba]
            .into_iter()
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
    fn code_4_holds_the_tenants_app_and_80007_its_waba() {
        let tenant = TenantId::new();
        let scopes = NumberScopes::new(tenant, "w1");
        assert_eq!(scopes.of(4), Some(format!("app:{tenant}").as_str()));
        assert_eq!(scopes.of(80007), Some(format!("waba:{tenant}:w1").as_str()));
        assert_eq!(scopes.of(130429), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_applies_to_its_scope_only_and_ends() {
        let throttles = ScopeThrottles::new(Keys::new("t"), Clock::driven(1_000_000));
        let (tenant, other) = (TenantId::new(), TenantId::new());
        let w1 = NumberScopes::new(tenant, "w1");
        let w3 = NumberScopes::new(tenant, "w3");
        // Another tenant that typed the same WABA id.
        let theirs = NumberScopes::new(other, "w1");
        let held = w1.of(80007).unwrap();
        assert!(throttles.hold_here(held, Duration::from_secs(60)).is_some());
        assert!(
            throttles.hold_here(held, Duration::from_secs(30)).is_none(),
            "a shorter hold changes nothing and is not shared"
        );
        let left = throttles.hold(&w1).expect("w1 is held");
        assert_eq!(left, Duration::from_secs(60));
        assert_eq!(throttles.hold(&w3), None);
        assert_eq!(
            throttles.hold(&theirs),
            None,
            "another tenant's w1 is not held"
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(throttles.hold(&w1), Some(Duration::from_secs(1)));
        throttles.hold_here(w1.of(4).unwrap(), Duration::from_secs(5));
        assert!(
            throttles.hold(&w3).is_some(),
            "an app hold holds every WABA of the tenant"
        );
        assert_eq!(throttles.hold(&theirs), None, "and no other tenant's");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            throttles.hold(&w1),
            Some(Duration::from_secs(4)),
            "the app's"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(throttles.hold(&w1), None, "an ended hold holds nothing");
        assert_eq!(throttles.hold(&w3), None);
    }
}
