//! A latency histogram made of atomics, for the publish path and plugin calls.
//!
//! Observing a duration is three relaxed `fetch_add`s (its bucket, the count,
//! the sum) and never takes a lock, so a scrape reading the histogram never
//! holds up the publish or the plugin call being measured. The bucket bounds
//! are fixed ([`BOUNDS_NANOS`], 100 µs to 10 s, roughly 1-2.5-5 per decade),
//! the ones Prometheus users expect for request latency. A snapshot reads the
//! atomics one by one: under concurrent observations its count and sum may
//! disagree by the observations in flight, which Prometheus tolerates (every
//! series only grows).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds; one more bucket (`+Inf`)
/// takes the rest.
pub const BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets including `+Inf`.
pub const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// A histogram of durations. See the module docs.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// What a [`Histogram`] held at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    pub buckets: [u64; BUCKETS],
    /// Observations.
    pub count: u64,
    /// Sum of the observed durations, in nanoseconds.
    pub sum_nanos: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS.partition_point(|b| *b < nanos);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Reads the histogram.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// `(upper bound in seconds, observations)` per bucket, `+Inf` last, as
    /// the Prometheus encoder takes them.
    pub fn seconds_buckets(&self) -> [(f64, u64); BUCKETS] {
        std::array::from_fn(|i| {
            let bound = BOUNDS_NANOS
                .get(i)
                .map_or(f64::INFINITY, |n| *n as f64 / 1e9);
            (bound, self.buckets[i])
        })
    }

    /// The sum in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration lands in the first bucket whose bound is at or above it.
    #[test]
    fn durations_land_in_their_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_nanos, 60_000_201_000);
        assert_eq!(s.seconds_buckets()[0].0, 0.0001);
        assert!(s.seconds_buckets()[BUCKETS - 1].0.is_infinite());
    }
}
