//! A number's in-flight window: at most `sender.in_flight` sends under way at once, and fewer
//! while answers come back much slower than the fastest lately seen.
//!
//! Why: a window opens a connection per send under way, and a full one costs where nothing
//! gains by it. Against an API that answers at once on a busy machine (B1), 4 numbers × 512
//! sends under way made over 2,000 connections and cost a fifth of the throughput of 16 a
//! number (BENCHMARKS.md, session 12); where answers take 50 ms, the same 16 would cap a number
//! at 320 msg/s. So the window starts small, grows by one with every answer that came back
//! within three times the smallest recent round trip (doubling per round trip, as TCP's slow
//! start does), and shrinks by one with every slower answer: a queue is building, in this
//! process, the network or the API, and more sends under way would only lengthen it. Ordinary
//! jitter stays well within three times. The smallest round trip is that of the smoothed round
//! trip (so a lone fast answer does not set the bar), over the last `MIN_RTT_PERIOD` (so a path
//! that became slower for good is relearnt).
//!
//! Invariant: the semaphore holds `max` permits in all; those the window holds back (to keep
//! it below `max`) are owned by the window, so a stop that waits for every permit first
//! gives them back and keeps the window from moving again (`open_fully`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The fewest sends a number may have under way (unless `in_flight` is smaller).
const MIN_WINDOW: usize = 16;

/// An answer this many times slower than the fastest recent one says a queue is building.
const SLOWER: u32 = 3;

/// How long the smallest round trip seen counts.
const MIN_RTT_PERIOD: Duration = Duration::from_secs(10);

pub(super) struct Window {
    permits: Arc<Semaphore>,
    max: usize,
    state: Mutex<State>,
}

struct State {
    /// Permits the window holds back.
    held: Vec<OwnedSemaphorePermit>,
    /// Permits to hold back as sends give them back.
    to_hold: usize,
    /// The round trip, smoothed (an eighth of each answer's difference).
    smoothed: Option<Duration>,
    /// The smallest smoothed round trip of the previous period and this one so far.
    min_rtt: Option<Duration>,
    /// The smallest of this period.
    period_min: Option<Duration>,
    period_end: Option<Instant>,
    /// A stop is waiting for every place (`open_fully`): the window no longer moves, or a slow
    /// last answer would hold its own place back and the stop would wait for it forever.
    stopping: bool,
}

impl Window {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let permits = Arc::new(Semaphore::new(max));
        let start = MIN_WINDOW.min(max);
        let held = (start..max)
            .map(|_| {
                permits
                    .clone()
                    .try_acquire_owned()
                    .expect("a new semaphore has its permits")
            })
            .collect();
        Self {
            permits,
            max,
            state: Mutex::new(State {
                held,
                to_hold: 0,
                smoothed: None,
                min_rtt: None,
                period_min: None,
                period_end: None,
                stopping: false,
            }),
        }
    }

    /// Sends that may be under way now.
    fn open(&self, s: &State) -> usize {
        self.max - s.held.len() - s.to_hold
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.open(&self.state.lock().expect("window lock"))
    }

    /// A place for one send, once one is free.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.permits.clone().acquire_owned().await
    }

    /// Moves the window by a send's round trip.
    pub fn answered(&self, rtt: Duration, now: Instant) {
        let mut s = self.state.lock().expect("window lock");
        if s.stopping {
            return;
        }
        if s.period_end.is_none_or(|end| now >= end) {
            s.min_rtt = s.period_min.take().or(s.min_rtt);
            s.period_end = Some(now + MIN_RTT_PERIOD);
        }
        // Smoothed, so that one answer faster than any other cannot set the bar for the rest.
        let smoothed = match s.smoothed {
            Some(before) if rtt >= before => before + (rtt - before) / 8,
            Some(before) => before - (before - rtt) / 8,
            None => rtt,
        };
        s.smoothed = Some(smoothed);
        s.period_min = Some(s.period_min.map_or(smoothed, |m| m.min(smoothed)));
        let min = s.min_rtt.map_or(smoothed, |m| m.min(smoothed));
        s.min_rtt = Some(min);
        if rtt <= min * SLOWER {
            if s.to_hold > 0 {
                s.to_hold -= 1;
            } else {
                s.held.pop();
            }
        } else if self.open(&s) > MIN_WINDOW {
            s.to_hold += 1;
        }
    }

    /// Gives back a send's place (or keeps it, when the window is shrinking).
    pub fn release(&self, permit: OwnedSemaphorePermit) {
        let mut s = self.state.lock().expect("window lock");
        if s.to_hold > 0 {
            s.to_hold -= 1;
            s.held.push(permit);
        }
    }

    /// Opens the window to `max` and waits until no send is under way.
    pub async fn open_fully(&self) {
        {
            let mut s = self.state.lock().expect("window lock");
            s.stopping = true;
            s.to_hold = 0;
            s.held.clear();
        }
        let _ = self.permits.acquire_many(self.max as u32).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Every send under way answered `rtt` after it started, `rounds` times over.
    async fn rounds(window: &Window, rtt: Duration, rounds: usize, now: &mut Instant) {
        for _ in 0..rounds {
            let mut permits = Vec::new();
            for _ in 0..window.limit() {
                permits.push(window.acquire().await.unwrap());
            }
            *now += rtt;
            for p in permits {
                window.answered(rtt, *now);
                window.release(p);
            }
        }
    }

    /// A window of 512 that started at the minimum and was opened fully by steady answers of
    /// `rtt` within a few round trips.
    async fn opened(rtt: Duration) -> (Window, Instant) {
        let window = Window::new(512);
        assert_eq!(window.limit(), MIN_WINDOW);
        let mut now = Instant::now();
        rounds(&window, rtt, 6, &mut now).await;
        assert_eq!(window.limit(), 512);
        (window, now)
    }

    #[tokio::test]
    async fn steady_answers_open_the_window_to_its_maximum_within_a_few_round_trips() {
        opened(50 * MS).await;
    }

    #[tokio::test]
    async fn answers_slowing_down_close_it_to_the_minimum_and_jitter_leaves_it() {
        let (window, mut now) = opened(MS).await;
        // Up to three times the fastest: jitter, not a queue.
        rounds(&window, 3 * MS, 3, &mut now).await;
        assert_eq!(window.limit(), 512);
        // Ten times: a queue; the window closes as the sends give their places back.
        rounds(&window, 10 * MS, 3, &mut now).await;
        assert_eq!(window.limit(), MIN_WINDOW);
        // Once the slow answers are all that was seen for a period, they are the new normal.
        rounds(&window, 10 * MS, 3000, &mut now).await;
        assert_eq!(window.limit(), 512);
    }

    #[tokio::test]
    async fn one_answer_much_faster_than_the_rest_does_not_close_the_window() {
        let (window, mut now) = opened(200 * MS).await;
        let permit = window.acquire().await.unwrap();
        window.answered(MS, now);
        window.release(permit);
        rounds(&window, 200 * MS, 3, &mut now).await;
        assert_eq!(window.limit(), 512);
    }

    /// A stop of `window` with one send under way: `answer` is what happens to that send
    /// (it gives its place back in the end); the stop must end then.
    async fn stop_with_one_send_under_way(window: Window, answer: impl FnOnce(&Window)) {
        let window = Arc::new(window);
        let under_way = window.acquire().await.unwrap();
        let stop = tokio::spawn({
            let window = window.clone();
            async move { window.open_fully().await }
        });
        tokio::task::yield_now().await;
        assert!(!stop.is_finished(), "the stop waits for the send");
        answer(&window);
        window.release(under_way);
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the stop ends once the send gave its place back")
            .unwrap();
    }

    #[tokio::test]
    async fn a_stop_waits_for_every_send_under_way_however_small_the_window() {
        stop_with_one_send_under_way(Window::new(64), |_| {}).await;
    }

    #[tokio::test]
    async fn a_stop_ends_when_the_last_send_under_way_answers_slowly() {
        let (window, now) = opened(MS).await;
        // A hundred times slower than the fastest: while sending, the window would shrink by
        // this send's own place.
        stop_with_one_send_under_way(window, |w| w.answered(100 * MS, now + 100 * MS)).await;
    }
}
