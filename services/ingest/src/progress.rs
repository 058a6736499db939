//! How fast each running campaign sends, from its counters sampled every second: the rate over
//! the last minute and the ETA that follows. In memory, per ingest replica (a replica that just
//! started knows a campaign's rate from its second sample on); no index on the send path.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_shared::db::campaigns::Counters;
use herald_shared::domain::CampaignId;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often running campaigns' counters are read.
const EVERY: Duration = Duration::from_secs(1);
/// The window `send_rate` is measured over.
const WINDOW: Duration = Duration::from_secs(60);

/// Messages that left the queue: sent, delivered, read, failed, cancelled, suppressed,
/// skipped.
pub fn left_queue(c: &Counters) -> i64 {
    c.total - c.pending - c.queued
}

#[derive(Default)]
pub struct Progress {
    samples: Mutex<HashMap<CampaignId, VecDeque<(Instant, i64)>>>,
}

impl Progress {
    /// Samples the running campaigns every second until `shutdown`.
    pub async fn run(&self, pool: PgPool, shutdown: CancellationToken) {
        loop {
            match herald_shared::db::campaigns::running_counters(&pool).await {
                Ok(running) => self.record(Instant::now(), running),
                Err(e) => tracing::warn!(error = %e, "cannot sample running campaigns"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn record(&self, now: Instant, running: Vec<(CampaignId, Counters)>) {
        let mut samples = self.samples.lock().expect("progress samples poisoned");
        let live: HashMap<CampaignId, Counters> = running.into_iter().collect();
        samples.retain(|id, _| live.contains_key(id));
        for (id, counters) in live {
            let window = samples.entry(id).or_default();
            window.push_back((now, left_queue(&counters)));
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                window.pop_front();
            }
        }
    }

    /// Messages leaving the queue per second over the last minute (or since sampling began),
    /// once two samples exist.
    pub fn rate(&self, campaign: CampaignId) -> Option<f64> {
        let samples = self.samples.lock().expect("progress samples poisoned");
        let window = samples.get(&campaign)?;
        let (first, last) = (window.front()?, window.back()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        (seconds > 0.0).then(|| (last.1 - first.1).max(0) as f64 / seconds)
    }
}

/// Seconds to the last message at `rate`, when it is moving.
pub fn eta(counters: &Counters, rate: Option<f64>) -> Option<f64> {
    let rate = rate.filter(|r| *r > 0.0)?;
    Some(((counters.pending + counters.queued) as f64 / rate).ceil())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: i64) -> Counters {
        Counters {
            total: 1000,
            pending: 1000 - n,
            ..Counters::default()
        }
    }

    #[test]
    fn the_eta_follows_the_rate_and_a_finished_campaign_is_forgotten() {
        let p = Progress::default();
        let id = CampaignId::new();
        let t0 = Instant::now();
        p.record(t0, vec![(id, sent(0))]);
        assert_eq!(p.rate(id), None);
        let c = sent(500);
        assert_eq!(eta(&c, Some(10.0)), Some(50.0));
        assert_eq!(eta(&c, Some(0.0)), None);
        assert_eq!(eta(&c, None), None);
        p.record(t0 + Duration::from_secs(1), Vec::new());
        assert_eq!(p.rate(id), None);
    }

    #[test]
    fn rate_counts_messages_leaving_the_queue() {
        let p = Progress::default();
        let id = CampaignId::new();
        let t0 = Instant::now();
        p.record(t0, vec![(id, sent(100))]);
        p.record(t0 + Duration::from_secs(2), vec![(id, sent(300))]);
        assert_eq!(p.rate(id), Some(100.0));
        p.record(t0 + Duration::from_secs(62), vec![(id, sent(900))]);
        // The first sample fell out of the window: (900 - 300) / 60.
        assert_eq!(p.rate(id), Some(10.0));
    }
}
