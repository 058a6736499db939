//! The simulator's run-time state: the active configuration, each number's limits and
//! counters, the portfolios' daily recipients, and the decision for each send. What it
//! reports is in `stats`.

mod active;
mod stats;

pub use active::Active;
pub use stats::{Duplicates, StatsReport};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use herald_shared::hash::fnv1a;
use herald_shared::whatsapp::webhook::ReceiptStatus;

use crate::config::{CapMode, FaultKind, SimConfig};
use crate::random::Rand;

const ONE_SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Meta's pair rate: one message per 6 s, bursts of up to 45 (reference §3.2).
const PAIR_INTERVAL: Duration = Duration::from_secs(6);
const PAIR_BURST: u32 = 45;

/// One number's limiter state and counters.
#[derive(Default)]
struct NumberState {
    /// Acceptance times within the last second.
    window: VecDeque<Instant>,
    max_window: usize,
    /// GCRA theoretical arrival time, for `CapMode::Gcra`.
    tat: Option<Instant>,
    accepted: u64,
    /// Keyed by a 64-bit hash of the recipient (and below, of the callback data): a million
    /// recipients cost a few tens of megabytes, and a collision is vanishingly unlikely.
    recipients: HashMap<u64, Pair>,
    duplicate_recipients: u64,
    callbacks: HashMap<u64, u32>,
    duplicate_callbacks: u64,
    /// The highest sender fencing token seen, and sends that came with a lower one.
    fence: i64,
    fence_violations: u64,
}

impl NumberState {
    /// Drops from the window the acceptances more than a second before `now`.
    fn forget_before(&mut self, now: Instant) {
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= ONE_SECOND)
        {
            self.window.pop_front();
        }
    }

    /// Counts a send accepted at `now`, and the second that ends with it.
    fn accepted_at(&mut self, now: Instant) {
        self.forget_before(now);
        self.accepted += 1;
        self.window.push_back(now);
        self.max_window = self.max_window.max(self.window.len());
    }
}

#[derive(Default)]
struct Pair {
    sends: u32,
    /// Pair-rate GCRA theoretical arrival time.
    tat: Option<Instant>,
}

#[derive(Default)]
struct Portfolio {
    /// When each recipient was first messaged in the current 24 h, oldest first.
    first_seen: VecDeque<(Instant, String)>,
    recipients: HashMap<String, Instant>,
}

/// Everything the simulator keeps between requests.
pub struct Sim {
    active: RwLock<Arc<Active>>,
    numbers: RwLock<HashMap<String, Arc<Mutex<NumberState>>>>,
    portfolios: Mutex<HashMap<String, Portfolio>>,
    seq: AtomicU64,
    rejected: Mutex<BTreeMap<i64, u64>>,
    pub http_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub resets: AtomicU64,
    pub async_failures: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhooks_failed: AtomicU64,
    pub webhooks_retried: AtomicU64,
    pub statuses_posted: AtomicU64,
    /// The latest accepted send bodies, when capture is on.
    sent: Mutex<VecDeque<bytes::Bytes>>,
    /// Per message (callback data), the last status its webhooks will carry.
    intended: Mutex<HashMap<String, ReceiptStatus>>,
    /// Sends being answered now (their latency included), and the most at once.
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    /// Numbers whose profile was read: those the configuration does not give a WABA of their
    /// own belong to any WABA (see `numbers_of`).
    profiled: Mutex<std::collections::BTreeSet<String>>,
    /// How far the simulator's clock is ahead of the machine's, in seconds.
    clock_offset_s: AtomicI64,
    /// When each user (digits) last wrote to each number, on the simulator's clock.
    last_inbound: Mutex<HashMap<(String, String), i64>>,
    /// The files uploaded (`POST /{phone_number_id}/media`), as `GET /sim/media` lists them.
    media: Mutex<Vec<serde_json::Value>>,
}

/// The customer-service window: a free-form message may go this long after the user's last.
const SERVICE_WINDOW_S: i64 = 24 * 3600;

/// Counts one send as in flight for as long as it lives.
pub struct InFlight<'a>(&'a Sim);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// What to do with a send that passed authentication and validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accept(Acceptance),
    /// A Graph error with this code and HTTP status.
    Reject {
        code: i64,
        http_status: u16,
    },
    /// A bare HTTP error.
    Http {
        status: u16,
    },
    /// No answer; the message went out if `Some`.
    Timeout(Option<Acceptance>),
    /// The connection is closed; the message went out if `Some`.
    Reset(Option<Acceptance>),
}

/// An accepted message and what will become of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Acceptance {
    pub wamid: String,
    /// Fails asynchronously with this code instead of being delivered.
    pub fails_with: Option<i64>,
}

impl Sim {
    /// Keeps an accepted send's body, the latest `keep`.
    pub fn capture(&self, keep: usize, body: &bytes::Bytes) {
        if keep == 0 {
            return;
        }
        let mut sent = self.sent.lock().expect("sent lock");
        sent.push_back(body.clone());
        while sent.len() > keep {
            sent.pop_front();
        }
    }

    /// The captured send bodies, oldest first.
    pub fn sent(&self) -> Vec<bytes::Bytes> {
        self.sent
            .lock()
            .expect("sent lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn new(config: SimConfig) -> Self {
        Self {
            active: RwLock::new(Arc::new(Active::new(config))),
            numbers: RwLock::default(),
            portfolios: Mutex::default(),
            seq: AtomicU64::new(0),
            rejected: Mutex::default(),
            http_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            async_failures: AtomicU64::new(0),
            webhooks_delivered: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            webhooks_retried: AtomicU64::new(0),
            statuses_posted: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            intended: Mutex::default(),
            sent: Mutex::default(),
            profiled: Mutex::default(),
            clock_offset_s: AtomicI64::new(0),
            last_inbound: Mutex::default(),
            media: Mutex::default(),
        }
    }

    /// Keeps an uploaded file's description.
    pub fn uploaded(&self, media: serde_json::Value) {
        self.media.lock().expect("media lock").push(media);
    }

    /// The files uploaded so far, oldest first.
    pub fn media(&self) -> Vec<serde_json::Value> {
        self.media.lock().expect("media lock").clone()
    }

    /// Now on the simulator's clock, in Unix seconds.
    pub fn now_s(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset_s.load(Relaxed)
    }

    /// Moves the simulator's clock `seconds` ahead; returns its new now.
    pub fn advance_clock(&self, seconds: i64) -> i64 {
        self.clock_offset_s.fetch_add(seconds, Relaxed);
        self.now_s()
    }

    /// Notes that `user` wrote to `phone_number_id` now: their window opens.
    pub fn wrote_in(&self, phone_number_id: &str, user: &str) {
        let now = self.now_s();
        self.last_inbound
            .lock()
            .expect("inbound lock")
            .insert((phone_number_id.to_owned(), digits(user)), now);
    }

    /// Whether `to` wrote to `phone_number_id` within the customer-service window.
    pub fn window_open(&self, phone_number_id: &str, to: &str) -> bool {
        let last = self
            .last_inbound
            .lock()
            .expect("inbound lock")
            .get(&(phone_number_id.to_owned(), digits(to)))
            .copied();
        last.is_some_and(|at| self.now_s() - at < SERVICE_WINDOW_S)
    }

    /// Notes that the profile of `phone_number_id` was read.
    pub fn profiled(&self, phone_number_id: &str) {
        self.profiled
            .lock()
            .expect("profiled lock")
            .insert(phone_number_id.to_owned());
    }

    /// The numbers `waba` lists: those the configuration gives it, and every number whose
    /// profile was read that the configuration gives no WABA (or does not define): a sandbox
    /// number belongs to whichever WABA it is registered with.
    pub fn numbers_of(&self, waba: &str) -> Vec<String> {
        let active = self.active();
        let mut listed: Vec<String> = active
            .config
            .numbers
            .iter()
            .filter(|n| n.waba_id == waba)
            .map(|n| n.phone_number_id.clone())
            .collect();
        let profiled = self.profiled.lock().expect("profiled lock");
        listed.extend(
            profiled
                .iter()
                .filter(|id| {
                    active.number(id).is_none_or(|n| {
                        n.waba_id == crate::config::DEFAULT_WABA && waba != n.waba_id
                    })
                })
                .cloned(),
        );
        listed
    }

    /// Notes the last status a message's webhooks will carry.
    pub fn intend(&self, callback: &str, last: ReceiptStatus) {
        self.intended
            .lock()
            .expect("intended lock")
            .insert(callback.to_owned(), last);
    }

    pub fn active(&self) -> Arc<Active> {
        self.active.read().expect("config lock").clone()
    }

    /// Puts a new configuration in force (fault schedules restart from now).
    pub fn configure(&self, config: SimConfig) {
        *self.active.write().expect("config lock") = Arc::new(Active::new(config));
    }

    /// A wamid for a send of `phone_number_id` accepted in lean mode: unique, like every
    /// other (the sequence is shared), and in no particular order, like Meta's (whose start
    /// encodes the recipient): a sequence would make every insert into a wamid index land at
    /// its end, which real traffic never does. The send is counted for its number, and in its
    /// number's busiest second, as a full one is: nothing more is kept.
    pub fn lean_accept(&self, phone_number_id: &str) -> String {
        let seq = self.seq.fetch_add(1, Relaxed);
        self.number(phone_number_id)
            .lock()
            .expect("number lock")
            .accepted_at(Instant::now());
        let mixed = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        format!("wamid.HBgE{mixed:016X}{seq:08X}")
    }

    /// A generator for the next request.
    pub fn next_rand(&self) -> (u64, Rand) {
        let seq = self.seq.fetch_add(1, Relaxed);
        (seq, Rand::new(self.active().config.seed, seq))
    }

    pub fn rejected(&self, code: i64) {
        *self
            .rejected
            .lock()
            .expect("stats lock")
            .entry(code)
            .or_default() += 1;
    }

    fn number(&self, phone_number_id: &str) -> Arc<Mutex<NumberState>> {
        if let Some(n) = self
            .numbers
            .read()
            .expect("numbers lock")
            .get(phone_number_id)
        {
            return n.clone();
        }
        self.numbers
            .write()
            .expect("numbers lock")
            .entry(phone_number_id.to_owned())
            .or_default()
            .clone()
    }

    /// Decides the fate of one valid send: faults first, then the number's cap and the pair
    /// rate, then acceptance (and the portfolio's daily cap).
    pub fn decide(
        &self,
        active: &Active,
        rand: &mut Rand,
        seq: u64,
        phone_number_id: &str,
        recipient: &str,
        callback: Option<&str>,
    ) -> Verdict {
        let now = Instant::now();
        let elapsed = now.duration_since(active.since).as_secs_f64();
        let fault = active.config.faults.iter().find(|f| {
            elapsed >= f.after_s
                && f.for_s.is_none_or(|d| elapsed < f.after_s + d)
                && (f.numbers.is_empty() || f.numbers.iter().any(|n| n == phone_number_id))
                && rand.chance(f.probability)
        });
        let mut fails_with = None;
        let mut outcome: fn(Option<Acceptance>) -> Verdict =
            |a| Verdict::Accept(a.expect("accepted"));
        match fault.map(|f| &f.kind) {
            Some(FaultKind::Error { code, http_status }) => {
                return Verdict::Reject {
                    code: *code,
                    http_status: http_status.unwrap_or_else(|| http_status_of(*code)),
                };
            }
            Some(FaultKind::Http { status }) => return Verdict::Http { status: *status },
            Some(FaultKind::Timeout { accepted: false }) => return Verdict::Timeout(None),
            Some(FaultKind::Reset { accepted: false }) => return Verdict::Reset(None),
            Some(FaultKind::Timeout { accepted: true }) => outcome = Verdict::Timeout,
            Some(FaultKind::Reset { accepted: true }) => outcome = Verdict::Reset,
            Some(FaultKind::AsyncFailure { code }) => fails_with = Some(*code),
            None => {}
        }

        let cap = active.cap_for(phone_number_id);
        let number = self.number(phone_number_id);
        let mut n = number.lock().expect("number lock");
        n.forget_before(now);
        if cap > 0 {
            let admitted = match active.config.cap_mode {
                CapMode::Window => n.window.len() < cap as usize,
                CapMode::Gcra => {
                    let interval = ONE_SECOND / cap;
                    match n.tat {
                        Some(tat) if now < tat => false,
                        _ => {
                            n.tat = Some(now + interval);
                            true
                        }
                    }
                }
            };
            if !admitted {
                return Verdict::Reject {
                    code: 130429,
                    http_status: 400,
                };
            }
        }
        let pair = n.recipients.entry(fnv1a(recipient)).or_default();
        if active.config.pair_limit {
            let tolerance = PAIR_INTERVAL * (PAIR_BURST - 1);
            let tat = pair.tat.unwrap_or(now).max(now);
            if tat.duration_since(now) > tolerance {
                return Verdict::Reject {
                    code: 131056,
                    http_status: 400,
                };
            }
            pair.tat = Some(tat + PAIR_INTERVAL);
        }
        pair.sends += 1;
        if pair.sends == 2 {
            n.duplicate_recipients += 1;
        }
        if let Some(callback) = callback {
            let seen = n.callbacks.entry(fnv1a(callback)).or_default();
            *seen += 1;
            if *seen == 2 {
                n.duplicate_callbacks += 1;
            }
        }
        n.accepted_at(now);
        drop(n);

        if fails_with.is_none()
            && active.config.daily_cap > 0
            && let Some(portfolio) = active.portfolio_of(phone_number_id)
            && !self.within_daily_cap(portfolio, recipient, active.config.daily_cap, now)
        {
            fails_with = Some(active.config.daily_cap_error);
        }
        if fails_with.is_some() {
            self.async_failures.fetch_add(1, Relaxed);
        }
        let wamid = format!("wamid.HBgL{seq:012X}{:08X}", rand.next_u64() as u32);
        outcome(Some(Acceptance { wamid, fails_with }))
    }

    /// Notes a send's fencing token (`x-herald-fence`): one lower than a token already seen
    /// for the number came from an owner that had lost the number to another.
    pub fn observe_fence(&self, phone_number_id: &str, fence: i64) {
        let number = self.number(phone_number_id);
        let mut n = number.lock().expect("number lock");
        if fence < n.fence {
            n.fence_violations += 1;
        }
        n.fence = n.fence.max(fence);
    }

    /// Counts `recipient` against the portfolio's unique recipients in the last 24 h.
    fn within_daily_cap(&self, portfolio: &str, recipient: &str, cap: u32, now: Instant) -> bool {
        let mut portfolios = self.portfolios.lock().expect("portfolio lock");
        let p = portfolios.entry(portfolio.to_owned()).or_default();
        while let Some((t, _)) = p.first_seen.front()
            && now.duration_since(*t) >= DAY
        {
            let (_, old) = p.first_seen.pop_front().expect("peeked");
            p.recipients.remove(&old);
        }
        if p.recipients.contains_key(recipient) {
            return true;
        }
        if p.recipients.len() >= cap as usize {
            return false;
        }
        p.recipients.insert(recipient.to_owned(), now);
        p.first_seen.push_back((now, recipient.to_owned()));
        true
    }

    /// Marks a send in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Relaxed);
        InFlight(self)
    }
}

/// The HTTP status Meta's error table gives a code (reference §2.4).
pub fn http_status_of(code: i64) -> u16 {
    match code {
        0 | 190 => 401,
        10 | 200..=299 | 368 | 131005 | 131031 => 403,
        132001 => 404,
        2 => 503,
        3 | 131000 | 131016 | 131045 | 131057 => 500,
        _ => 400,
    }
}

/// A phone number's digits: how Meta matches `to` with a user's `wa_id`.
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numbers_busiest_second_is_the_most_acceptances_within_any_one_second() {
        let mut n = NumberState::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Three within the first second; the next two fall within a second of the third.
        for ms in [0, 400, 900, 1_500, 1_800] {
            n.accepted_at(at(ms));
        }
        assert_eq!((n.accepted, n.max_window), (5, 3));
        // Later, the window holds only what came within the last second.
        n.accepted_at(at(2_700));
        assert_eq!((n.accepted, n.max_window, n.window.len()), (6, 3, 2));
        for ms in [2_710, 2_720] {
            n.accepted_at(at(ms));
        }
        assert_eq!(n.max_window, 4);
    }
}
