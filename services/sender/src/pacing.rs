//! Adaptive pacing: each number's rate follows what the Cloud API tells it. A pure state
//! machine fed with each send's class and the time, so it is tested without clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herald_shared::settings::PacingSettings;

/// After a cut, the throttles of sends already under way say nothing new: no further cut for
/// this long, or a burst of in-flight refusals would drive the rate to the floor at once.
const COOLDOWN: Duration = Duration::from_secs(1);

/// `throttles_to_slow` rate-limit errors within this span cut the rate, accepted sends between
/// them or not. Strictly consecutive errors are not enough: a number a little over its cap
/// (a rolling one-second window) gets one refusal among many acceptances, so it would never
/// slow down and be refused for ever (B3 measured 4.5% refused that way).
const THROTTLE_SPAN: Duration = Duration::from_secs(1);

/// What a send says about the number's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Accepted, or refused for a reason that is not the number's rate.
    Fine,
    /// A rate-limit error (130429, 4, 80007).
    Throttled,
    /// A platform error (5xx, timeout): counts against raising the rate.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u32,
    ceiling: u32,
    floor: u32,
    window: Duration,
    max_error_share: f64,
    increase: f64,
    decrease: f64,
    throttles_to_slow: u32,
    /// The latest throttles, at most `throttles_to_slow` of them.
    recent_throttles: VecDeque<Instant>,
    last_cut: Option<Instant>,
    window_start: Instant,
    sends: u64,
    errors: u64,
}

impl Pacer {
    pub fn new(settings: &PacingSettings, rate: u32, ceiling: u32, now: Instant) -> Self {
        let ceiling = ceiling.max(1);
        let floor = settings.floor.clamp(1, ceiling);
        Self {
            rate: rate.clamp(floor, ceiling),
            ceiling,
            floor,
            window: Duration::from_secs(settings.window_s.max(1)),
            max_error_share: settings.max_error_share,
            increase: settings.increase,
            decrease: settings.decrease,
            throttles_to_slow: settings.throttles_to_slow.max(1),
            recent_throttles: VecDeque::new(),
            last_cut: None,
            window_start: now,
            sends: 0,
            errors: 0,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes one send's signal; returns the new rate when it changed.
    pub fn record(&mut self, signal: Signal, now: Instant) -> Option<u32> {
        self.sends += 1;
        match signal {
            Signal::Fine => {}
            Signal::Failed => self.errors += 1,
            Signal::Throttled => {
                self.errors += 1;
                self.recent_throttles.push_back(now);
                if self.recent_throttles.len() > self.throttles_to_slow as usize {
                    self.recent_throttles.pop_front();
                }
                let cooling = self
                    .last_cut
                    .is_some_and(|t| now.duration_since(t) < COOLDOWN);
                let dense = self.recent_throttles.len() == self.throttles_to_slow as usize
                    && self
                        .recent_throttles
                        .front()
                        .is_some_and(|first| now.duration_since(*first) < THROTTLE_SPAN);
                if dense && !cooling {
                    self.recent_throttles.clear();
                    self.last_cut = Some(now);
                    self.start_window(now);
                    let slower = ((self.rate as f64) * (1.0 - self.decrease)).floor() as u32;
                    return self.set(slower.max(self.floor));
                }
            }
        }
        if now.duration_since(self.window_start) >= self.window {
            let quiet = (self.errors as f64) <= self.max_error_share * self.sends as f64;
            self.start_window(now);
            if quiet {
                let faster = ((self.rate as f64) * (1.0 + self.increase)).ceil() as u32;
                return self.set(faster.min(self.ceiling));
            }
        }
        None
    }

    fn start_window(&mut self, now: Instant) {
        self.window_start = now;
        self.sends = 0;
        self.errors = 0;
    }

    fn set(&mut self, rate: u32) -> Option<u32> {
        (rate != self.rate).then(|| {
            self.rate = rate;
            rate
        })
    }
}

/// Rates above this keep no log of starts: only benchmarks with no cap go there (Meta's highest
/// tier is 1,000 msg/s), and their log would be megabytes long.
const MAX_LOGGED_RATE: u32 = 10_000;

/// The starts of a number's latest sends, so that no span of one second and `guard` holds more
/// sends than the rate. Meta counts sends as they arrive: spacing starts evenly at the rate (the
/// GCRA limiter) puts exactly `rate` of them in a second, and a send held up on its way (a busy
/// core, a new connection) then arrives in the same second as the `rate` after it, and one is
/// refused with 130429. `guard` is how late a send may arrive without that.
#[derive(Debug)]
pub struct StartLog {
    guard: Duration,
    starts: VecDeque<Instant>,
}

impl StartLog {
    pub fn new(guard: Duration) -> Self {
        Self {
            guard,
            starts: VecDeque::new(),
        }
    }

    /// How long the next send must wait, at `rate` a second; `None` when it may start now.
    pub fn wait(&self, rate: u32, now: Instant) -> Option<Duration> {
        let rate = rate as usize;
        if rate > MAX_LOGGED_RATE as usize || self.starts.len() < rate {
            return None;
        }
        let opens = self.starts[self.starts.len() - rate] + Duration::from_secs(1) + self.guard;
        opens.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Notes a send started at `now`.
    pub fn record(&mut self, rate: u32, now: Instant) {
        if rate > MAX_LOGGED_RATE {
            self.starts.clear();
            return;
        }
        self.starts.push_back(now);
        while self.starts.len() > rate as usize {
            self.starts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PacingSettings {
        PacingSettings {
            window_s: 300,
            max_error_share: 0.01,
            increase: 0.10,
            decrease: 0.20,
            throttles_to_slow: 3,
            floor: 10,
            guard_ms: 20,
        }
    }

    #[test]
    fn three_throttles_in_a_row_cut_the_rate_by_a_fifth_down_to_the_floor() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 80, 1000, t0);
        assert_eq!(p.record(Signal::Throttled, t0), None);
        assert_eq!(p.record(Signal::Throttled, t0), None);
        assert_eq!(p.record(Signal::Throttled, t0), Some(64));
        let mut rate = 64;
        for second in 1..30 {
            let t = t0 + Duration::from_secs(second);
            for _ in 0..3 {
                if let Some(r) = p.record(Signal::Throttled, t) {
                    rate = r;
                }
            }
        }
        assert_eq!(rate, 10);
        assert_eq!(p.rate(), 10);
    }

    #[test]
    fn a_burst_of_refusals_from_sends_already_under_way_cuts_the_rate_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 200, 1000, t0);
        let cuts = (0..300)
            .filter_map(|i| p.record(Signal::Throttled, t0 + Duration::from_millis(i)))
            .count();
        assert_eq!((cuts, p.rate()), (1, 160));
    }

    #[test]
    fn throttles_spread_thinner_than_three_a_second_do_not_slow_the_number() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 80, 1000, t0);
        for i in 0..20 {
            let t = t0 + Duration::from_millis(600 * i);
            assert_eq!(p.record(Signal::Throttled, t), None);
            assert_eq!(p.record(Signal::Fine, t), None);
        }
    }

    #[test]
    fn three_throttles_within_a_second_slow_the_number_even_among_successes() {
        // A little over a rolling-window cap: one refusal among many acceptances.
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 253, 1000, t0);
        let mut cut = None;
        for i in 0..253u64 {
            let t = t0 + Duration::from_millis(i * 1000 / 253);
            let signal = if i % 84 == 83 {
                Signal::Throttled
            } else {
                Signal::Fine
            };
            cut = cut.or(p.record(signal, t));
        }
        assert_eq!(cut, Some(202));
    }

    #[test]
    fn a_quiet_window_raises_the_rate_by_a_tenth_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 80, 100, t0);
        let minute = Duration::from_secs(60);
        for i in 1..5 {
            assert_eq!(p.record(Signal::Fine, t0 + minute * i), None);
        }
        assert_eq!(p.record(Signal::Fine, t0 + minute * 5), Some(88));
        assert_eq!(p.record(Signal::Fine, t0 + minute * 10), Some(97));
        assert_eq!(p.record(Signal::Fine, t0 + minute * 15), Some(100));
        assert_eq!(p.record(Signal::Fine, t0 + minute * 20), None);
    }

    #[test]
    fn a_window_with_more_than_one_percent_errors_keeps_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&settings(), 80, 1000, t0);
        for _ in 0..97 {
            p.record(Signal::Fine, t0);
        }
        p.record(Signal::Failed, t0);
        p.record(Signal::Failed, t0);
        assert_eq!(p.record(Signal::Fine, t0 + Duration::from_secs(300)), None);
        assert_eq!(p.rate(), 80);
    }

    /// Starts as a sender makes them: as soon as both the even spacing and the log allow.
    fn starts(log: &mut StartLog, rate: u32, from: Instant, until: Instant) -> Vec<Instant> {
        let spacing = Duration::from_secs(1) / rate;
        let (mut now, mut out) = (from, Vec::new());
        while now < until {
            if let Some(wait) = log.wait(rate, now) {
                now += wait;
                continue;
            }
            log.record(rate, now);
            out.push(now);
            now += spacing;
        }
        out
    }

    /// The most starts within any span of `span` beginning at a start.
    fn densest(starts: &[Instant], span: Duration) -> usize {
        (0..starts.len())
            .map(|i| {
                starts[i..]
                    .iter()
                    .take_while(|t| **t < starts[i] + span)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_second_and_guard_holds_more_starts_than_the_rate() {
        let guard = Duration::from_millis(20);
        let mut log = StartLog::new(guard);
        let t0 = Instant::now();
        let made = starts(&mut log, 80, t0, t0 + Duration::from_secs(5));
        assert_eq!(densest(&made, Duration::from_secs(1) + guard), 80);
        // The 81st waits for the first's second and the guard, no longer.
        assert_eq!(made[80] - made[0], Duration::from_secs(1) + guard);
        // What the guard costs: 80 sends in each 1.02 s.
        assert!(made.len() >= 390, "{} starts in 5 s", made.len());
        // A send 20 ms late on its way still leaves every arriving second at 80 at most.
        let mut arrivals = made.clone();
        arrivals[0] += guard;
        arrivals.sort();
        assert_eq!(densest(&arrivals, Duration::from_secs(1)), 80);
    }

    #[test]
    fn a_lowered_rate_counts_the_latest_starts_against_the_new_one() {
        let mut log = StartLog::new(Duration::from_millis(20));
        let t0 = Instant::now();
        let made = starts(&mut log, 100, t0, t0 + Duration::from_millis(1000));
        assert_eq!(made.len(), 100);
        let now = t0 + Duration::from_millis(1000);
        // At 80 a second, the 80th latest start (the 21st made) opens the next one.
        let wait = log.wait(80, now).expect("must wait");
        assert_eq!(now + wait, made[20] + Duration::from_millis(1020));
    }

    #[test]
    fn rates_beyond_any_tier_keep_no_log() {
        let mut log = StartLog::new(Duration::from_millis(20));
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            log.record(1_000_000, t0 + Duration::from_nanos(u64::from(i)));
        }
        assert_eq!(log.wait(1_000_000, t0), None);
        assert!(log.starts.is_empty());
    }
}
