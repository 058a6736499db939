//! Reproducible randomness without locks: every request draws from its own generator, seeded
//! from the configured seed and the request's sequence number.

use std::time::Duration;

use crate::config::Delay;

/// SplitMix64: tiny, fast, and good enough for choosing faults and delays.
#[derive(Debug, Clone)]
pub struct Rand(u64);

impl Rand {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Self(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn delay(&mut self, delay: &Delay) -> Duration {
        let ms = match *delay {
            Delay::None => 0.0,
            Delay::Fixed { ms } => ms,
            Delay::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * self.unit(),
            Delay::LogNormal { median_ms, sigma } => median_ms * (sigma * self.normal()).exp(),
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_stream_give_the_same_draws() {
        let a: Vec<u64> = (0..5).map(|_| Rand::new(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rand::new(7, 3).next_u64(), Rand::new(7, 4).next_u64());
    }

    #[test]
    fn draws_follow_their_distribution() {
        let mut r = Rand::new(1, 1);
        let n = 20_000;
        let hits = (0..n).filter(|_| r.chance(0.25)).count() as f64 / n as f64;
        assert!((hits - 0.25).abs() < 0.02, "{hits}");
        let mut ms: Vec<f64> = (0..n)
            .map(|_| {
                r.delay(&Delay::LogNormal {
                    median_ms: 50.0,
                    sigma: 0.5,
                })
                .as_secs_f64()
                    * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let median = ms[n / 2];
        assert!((median - 50.0).abs() < 3.0, "{median}");
        let u = r
            .delay(&Delay::Uniform {
                min_ms: 10.0,
                max_ms: 20.0,
            })
            .as_secs_f64()
            * 1e3;
        assert!((10.0..20.0).contains(&u));
    }
}
