//! The gate before a send, in order: the campaign must not be held (a paused one's entry is
//! parked, a cancelled one's dropped), a retry's message must still be unsent, the portfolio's daily limit must have room (else the
//! entry waits in the retry set), a place in the in-flight window, the number's pace, no app
//! or WABA hold, and a lease still valid.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_shared::clock::Clock;
use herald_shared::db::messages;
use herald_shared::domain::{CampaignState, MessageStatus};
use herald_shared::stream::Entry;
use herald_shared::whatsapp::{ErrorClass, SendResult, classify};
use tokio::sync::OwnedSemaphorePermit;

use super::window::Window;
use super::{LeaseLost, NumberWorker, WorkerConfig};
use crate::pacing::{Pacer, Signal, StartLog};

/// What the gate says of one entry.
pub(super) enum Admission {
    /// Send it, holding this place in the window until its outcome is handed over.
    Go(OwnedSemaphorePermit),
    /// Its campaign is paused.
    Park,
    /// Its campaign is cancelled.
    Drop,
    /// The portfolio is at its daily limit for this long.
    Defer(Duration),
    /// Its recipient opted out since it was queued: record it `suppressed`, unsent.
    Suppress,
    /// A retry whose message moved on meanwhile: a receipt showed an ambiguous attempt (a
    /// timeout, a reset) went out after all. Acknowledged, not sent again.
    Settled,
}

impl NumberWorker {
    pub(super) async fn admit(&mut self, entry: &Entry) -> anyhow::Result<Admission> {
        match self.shared.held.state(entry.campaign) {
            None => {}
            Some(CampaignState::Paused) => return Ok(Admission::Park),
            Some(_) => return Ok(Admission::Drop),
        }
        if entry.attempt > 0 && self.moved_on(entry).await? {
            return Ok(Admission::Settled);
        }
        let shared = &self.shared;
        if shared
            .suppressed
            .holds(&shared.pool, entry.campaign, &entry.recipient)
            .await?
        {
            return Ok(Admission::Suppress);
        }
        if let Some(limit) = &self.config.daily_cap {
            let now_ms = self.shared.clock.unix_ms();
            if let Some(wait) = limit
                .admit(&mut self.commands, now_ms, &entry.recipient)
                .await?
            {
                return Ok(Admission::Defer(wait));
            }
        }
        let permit = self.pace.window.acquire().await?;
        self.pace.wait().await;
        // The app or the number's WABA met a Graph rate limit: nothing goes until it ends.
        while let Some(left) = self.shared.scopes.hold(&self.config.scopes) {
            tokio::time::sleep(left.min(crate::scope::REFRESH)).await;
        }
        if !self.lease.is_valid() {
            // Left pending: the next owner takes it over.
            return Err(LeaseLost.into());
        }
        self.pace.started();
        Ok(Admission::Go(permit))
    }
}

impl NumberWorker {
    /// Whether the message of a retried entry is no longer waiting to be sent.
    async fn moved_on(&self, entry: &Entry) -> anyhow::Result<bool> {
        let statuses = messages::statuses(&self.shared.pool, &[entry.message]).await?;
        Ok(statuses
            .first()
            .is_some_and(|(_, s)| !matches!(s, MessageStatus::Pending | MessageStatus::Queued)))
    }
}

/// A number's pace: the in-flight window, a GCRA limiter at the rate the pacer wants, and the
/// log of recent starts.
pub(super) struct Pace {
    pub window: Arc<Window>,
    limiter: DefaultDirectRateLimiter,
    limiter_clock: DefaultClock,
    /// The rate `limiter` runs at.
    rate: u32,
    feedback: Feedback,
    starts: StartLog,
    clock: Clock,
}

impl Pace {
    pub fn new(config: &WorkerConfig, clock: Clock) -> Self {
        let pacer = Pacer::new(&config.pacing, config.rate, config.ceiling, clock.now_std());
        let rate = pacer.rate();
        Self {
            window: Arc::new(Window::new(config.in_flight)),
            limiter: limiter(rate),
            limiter_clock: DefaultClock::default(),
            rate,
            feedback: Feedback {
                pacer: Arc::new(Mutex::new(pacer)),
                target: Arc::new(AtomicU32::new(rate)),
                clock,
            },
            starts: StartLog::new(Duration::from_millis(config.pacing.guard_ms)),
            clock,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// What a send reports its result to.
    pub fn feedback(&self) -> Feedback {
        self.feedback.clone()
    }

    /// Waits until the next send may start.
    pub async fn wait(&mut self) {
        let target = self.feedback.target.load(Ordering::Relaxed);
        if target != self.rate {
            // A quota cannot change in place: a new limiter at the new rate.
            self.limiter = limiter(target);
            self.rate = target;
        }
        // On tokio's own timer (governor's `until_ready` wakes a thread of its own for every
        // wait: at 1,000 msg/s a number, a context switch or two per send).
        while let Err(not_until) = self.limiter.check() {
            let now = governor::clock::Clock::now(&self.limiter_clock);
            tokio::time::sleep(not_until.wait_time_from(now)).await;
        }
        while let Some(wait) = self.starts.wait(self.rate, self.clock.now_std()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Notes that a send started now.
    pub fn started(&mut self) {
        self.starts.record(self.rate, self.clock.now_std());
    }
}

/// Where sends report their results, so the pacer can move the number's rate.
#[derive(Clone)]
pub(super) struct Feedback {
    pacer: Arc<Mutex<Pacer>>,
    target: Arc<AtomicU32>,
    clock: Clock,
}

impl Feedback {
    /// The rate the pacer wants now.
    pub fn target(&self) -> u32 {
        self.target.load(Ordering::Relaxed)
    }

    /// Feeds a send's result to the pacer; the new rate when it changed.
    pub fn record(&self, result: &SendResult) -> Option<u32> {
        let changed = self
            .pacer
            .lock()
            .expect("pacer lock")
            .record(signal(result), self.clock.now_std());
        if let Some(rate) = changed {
            self.target.store(rate, Ordering::Relaxed);
        }
        changed
    }
}

/// A GCRA limiter admitting `rate` sends a second, evenly spaced but for a burst of `burst`.
fn limiter(rate: u32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(quota(rate))
}

fn quota(rate: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst(rate))
}

/// How many sends may go at once: 5 ms of the rate, and at least 2. A wait is slept on tokio's
/// timer, which ends it up to a millisecond late; within the burst that lateness is made up,
/// not lost, and one wake lets several sends through at high rates. A second may then hold a
/// few sends over the rate by GCRA alone; the start log (`StartLog`) keeps every second (and
/// its guard) within the rate.
fn burst(rate: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new((rate.get() / 200).max(2)).expect("at least 2")
}

/// What a send's result says about the number's rate.
fn signal(result: &SendResult) -> Signal {
    match result {
        SendResult::Accepted { .. } => Signal::Fine,
        SendResult::Rejected { error, .. } => match classify(error.code) {
            ErrorClass::ThrottleNumber | ErrorClass::ThrottleScope => Signal::Throttled,
            ErrorClass::Transient => Signal::Failed,
            _ => Signal::Fine,
        },
        SendResult::Transport(_) => Signal::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn the_limiter_spaces_sends_and_with_the_start_log_never_lets_a_second_exceed_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota(80), clock.clone());
        // Two at once (the burst), then one every 12.5 ms.
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_micros(12_400));
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_micros(100));
        assert!(limiter.check().is_ok());
        // As `Pace::wait` does it, woken once a millisecond (tokio's timer): the limiter, then
        // the start log.
        let mut starts = StartLog::new(Duration::from_millis(20));
        let t0 = std::time::Instant::now();
        let (mut cleared, mut admitted) = (false, Vec::new());
        for ms in 0..3000u64 {
            let now = t0 + Duration::from_millis(ms);
            cleared = cleared || limiter.check().is_ok();
            if cleared && starts.wait(80, now).is_none() {
                starts.record(80, now);
                admitted.push(ms);
                cleared = false;
            }
            clock.advance(Duration::from_millis(1));
        }
        for (i, start) in admitted.iter().enumerate() {
            let within = admitted[i..]
                .iter()
                .take_while(|t| **t < start + 1000)
                .count();
            assert!(within <= 80, "{within} sends in the second from {start} ms");
        }
        // A wake up to 1 ms late is made up within the burst: all the rate but the guard's
        // share (80 per 1.02 s) is used.
        assert!(
            admitted.len() >= 3000 * 80 / 1020,
            "the rate is used: {}",
            admitted.len()
        );
    }

    #[test]
    fn a_burst_is_five_milliseconds_of_the_rate_and_at_least_two() {
        let burst = |rate: u32| burst(NonZeroU32::new(rate).unwrap()).get();
        assert_eq!(
            (burst(1), burst(80), burst(1_000), burst(1_000_000)),
            (2, 2, 5, 5_000)
        );
    }
}
