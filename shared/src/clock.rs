//! Herald's one clock. Timing decisions — pacing, lease deadlines, retry due times, the daily
//! cap's window, the reconciliation window, app and WABA holds — read time here, never from
//! std, tokio or chrono directly, so that a test can pause or drive it.
//!
//! Monotonic time is tokio's (`tokio::time::pause` and `advance` move it). Wall time, which
//! Herald shares through Redis and Postgres (retry due times, hold ends, the daily cap's
//! scores), is the system's in production; a driven clock derives it from tokio's instead, so
//! a paused test moves both together.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// For a driven clock: wall time at `base`.
    driven: Option<(Instant, i64)>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system's wall time and tokio's monotonic time.
    pub fn system() -> Self {
        Self { driven: None }
    }

    /// Wall time that moves only with tokio's clock, starting at `unix_ms`.
    pub fn driven(unix_ms: i64) -> Self {
        Self {
            driven: Some((Instant::now(), unix_ms)),
        }
    }

    /// Monotonic now.
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Monotonic now, as std's type (what `governor`-style pure state machines take).
    pub fn now_std(&self) -> std::time::Instant {
        self.now().into_std()
    }

    /// Wall-clock now, Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        match self.driven {
            None => Utc::now().timestamp_millis(),
            Some((base, base_ms)) => base_ms + self.now().duration_since(base).as_millis() as i64,
        }
    }

    /// Wall-clock now.
    pub fn utc(&self) -> DateTime<Utc> {
        match self.driven {
            None => Utc::now(),
            Some(_) => DateTime::from_timestamp_millis(self.unix_ms()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_driven_clock_moves_wall_and_monotonic_time_together_with_tokio() {
        let clock = Clock::driven(1_000_000);
        let start = clock.now();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.unix_ms(), 1_001_500);
        assert_eq!(clock.now() - start, Duration::from_millis(1_500));
        assert_eq!(clock.utc().timestamp_millis(), 1_001_500);
    }

    #[test]
    fn the_system_clock_reads_the_system_wall_time() {
        let before = Utc::now().timestamp_millis();
        let now = Clock::system().unix_ms();
        assert!(now >= before && now - before < 1_000);
    }
}
