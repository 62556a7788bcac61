//! Measurements: a latency histogram, the counters every task of a run adds
//! to, the budget (a deadline and an optional message cap) that tells tasks
//! when to stop, the progress line, and the result block.
//!
//! The histogram is log-linear, like HdrHistogram: exact below 256 ns, then
//! 128 buckets per power of two, so a percentile is within 0.4% of the true
//! value (the midpoint of a bucket at most 1/128 wide). Each task keeps its
//! own and they are merged at the end; the hot path never shares one.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// Values below `1 << SIG_BITS` get a bucket each; above, every power of two
/// is split in `1 << (SIG_BITS - 1)` buckets.
const SIG_BITS: u32 = 8;
const EXACT: u64 = 1 << SIG_BITS;
const PER_OCTAVE: u64 = EXACT / 2;
const BUCKETS: usize = (EXACT + (64 - SIG_BITS as u64) * PER_OCTAVE) as usize;
/// How often the progress line is rewritten.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The progress line is padded to this many columns, so a shorter line
/// covers a longer one without terminal escapes.
const PROGRESS_WIDTH: usize = 79;

/// CPU time (user and system) used so far by this process, from
/// `/proc/self/stat` on Linux; `None` elsewhere.
pub fn process_cpu() -> Option<Duration> {
    cpu_of("self")
}

/// CPU time (user and system) used so far by process `pid` (a number, or
/// `self`), from `/proc/<pid>/stat` on Linux; `None` elsewhere or when it
/// is gone.
pub fn cpu_of(pid: &str) -> Option<Duration> {
    /// Linux reports these times in USER_HZ ticks, 100 a second.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Nanosecond latencies.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let octave = 63 - u64::from(v.leading_zeros());
    let shift = octave - u64::from(SIG_BITS - 1);
    let mantissa = v >> shift;
    (EXACT + (octave - u64::from(SIG_BITS)) * PER_OCTAVE + (mantissa - PER_OCTAVE)) as usize
}

/// The middle of bucket `i`.
fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let k = i - EXACT;
    let octave = u64::from(SIG_BITS) + k / PER_OCTAVE;
    let shift = octave - u64::from(SIG_BITS - 1);
    let low = (PER_OCTAVE + k % PER_OCTAVE) << shift;
    low + (1 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0 to 1), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_value(i).min(self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_nanos(self.max))
    }
}

/// What all tasks of a run count, read by the progress line.
#[derive(Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` messages carrying `bytes` bytes of payload went through.
    pub fn messages(&self, n: u64, bytes: u64) {
        self.messages.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts an error; the first one is kept for the result block.
    pub fn error(&self, what: impl FnOnce() -> String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut first = self.first_error.lock().expect("not poisoned");
            first.get_or_insert_with(what);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("not poisoned").clone()
    }
}

/// When to stop: at the deadline, or once `cap` messages were claimed.
pub struct Budget {
    started: Instant,
    deadline: Instant,
    cap: u64,
    claimed: AtomicU64,
}

impl Budget {
    pub fn new(duration: Duration, cap: Option<u64>) -> Budget {
        let started = Instant::now();
        Budget {
            started,
            deadline: started + duration,
            cap: cap.unwrap_or(u64::MAX),
            claimed: AtomicU64::new(0),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes up to `want` messages from the cap; 0 means stop.
    pub fn claim(&self, want: u64) -> u64 {
        if Instant::now() >= self.deadline {
            return 0;
        }
        let cap = self.cap;
        match self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < cap).then(|| c + want.min(cap - c))
            }) {
            Ok(before) => want.min(cap - before),
            Err(_) => 0,
        }
    }

    /// Gives back claimed messages that did not come (a short batch scan).
    pub fn release(&self, n: u64) {
        if n > 0 && self.cap != u64::MAX {
            self.claimed.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// The progress line on stderr, rewritten until dropped.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: String, counters: std::sync::Arc<Counters>) -> Progress {
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            let mut last = (0, start);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let done = counters.messages.load(Ordering::Relaxed);
                let rate = (done - last.0) as f64 / (now - last.1).as_secs_f64();
                last = (done, now);
                let errors = counters.errors.load(Ordering::Relaxed);
                let line = format!(
                    "{label}  {:6.1} s  {done:>11} msgs  {rate:>10.0} msgs/s  {errors} errors",
                    (now - start).as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{line:<PROGRESS_WIDTH$}");
                let _ = err.flush();
            }
        });
        Progress { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{:PROGRESS_WIDTH$}\r", "");
        let _ = err.flush();
    }
}

/// What a scenario reports.
pub struct Report {
    pub scenario: &'static str,
    pub topic: String,
    pub connections: usize,
    pub size: usize,
    pub batch: usize,
    pub elapsed: Duration,
    pub messages: u64,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    /// What the latencies are: `per request` or `publish to receive`.
    pub latency_kind: &'static str,
    pub latency: Histogram,
    pub first_error: Option<String>,
    pub notes: Vec<String>,
    /// CPU time this process used during the run, when the OS tells.
    pub client_cpu: Option<Duration>,
}

impl Report {
    pub fn from_counters(scenario: &'static str, c: &Counters) -> Report {
        Report {
            scenario,
            topic: String::new(),
            connections: 0,
            size: 0,
            batch: 1,
            elapsed: Duration::ZERO,
            messages: c.messages.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            latency_kind: "per request",
            latency: Histogram::default(),
            first_error: c.first_error(),
            notes: Vec::new(),
            client_cpu: None,
        }
    }

    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The block printed after a scenario.
    pub fn text(&self) -> String {
        let ms = |d: Option<Duration>| match d {
            Some(d) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
            None => "-".into(),
        };
        let h = &self.latency;
        let mut out = format!(
            "{}: {} connections, {} B messages, batch {}, {:.2} s, topic {}\n",
            self.scenario,
            self.connections,
            self.size,
            self.batch,
            self.elapsed.as_secs_f64(),
            self.topic
        );
        out += &format!("  messages  {}\n", self.messages);
        out += &format!("  requests  {}\n", self.requests);
        out += &format!("  errors    {}\n", self.errors);
        out += &format!("  msgs/s    {:.0}\n", self.per_second(self.messages));
        out += &format!(
            "  MB/s      {:.2} (payload)\n",
            self.per_second(self.bytes) / 1e6
        );
        out += &format!(
            "  latency   p50 {}  p99 {}  p99.9 {}  max {}  ({})\n",
            ms(h.quantile(0.5)),
            ms(h.quantile(0.99)),
            ms(h.quantile(0.999)),
            ms(h.max()),
            self.latency_kind
        );
        if let Some(cpu) = self.client_cpu {
            out += &format!(
                "  client    {:.2} s CPU ({:.0}% of one core)\n",
                cpu.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
            );
        }
        if let Some(e) = &self.first_error {
            out += &format!("  first error: {e}\n");
        }
        for note in &self.notes {
            out += &format!("  note: {note}\n");
        }
        out
    }

    /// The same as one JSON object; latencies in microseconds.
    pub fn json(&self) -> serde_json::Value {
        let us = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e7).round() / 10.0);
        let h = &self.latency;
        json!({
            "scenario": self.scenario,
            "topic": self.topic,
            "connections": self.connections,
            "size": self.size,
            "batch": self.batch,
            "seconds": self.elapsed.as_secs_f64(),
            "messages": self.messages,
            "requests": self.requests,
            "errors": self.errors,
            "msgs_per_s": self.per_second(self.messages).round(),
            "mb_per_s": (self.per_second(self.bytes) / 1e4).round() / 100.0,
            "latency": self.latency_kind,
            "p50_us": us(h.quantile(0.5)),
            "p99_us": us(h.quantile(0.99)),
            "p999_us": us(h.quantile(0.999)),
            "max_us": us(h.max()),
            "first_error": self.first_error,
            "client_cpu_s": self.client_cpu.map(|d| d.as_secs_f64()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets are contiguous, and a value's bucket contains it.
    #[test]
    fn buckets_contain_their_values() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = bucket(v);
            assert!(i < BUCKETS, "{v}");
            let mid = bucket_value(i);
            let err = mid.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(err <= 1.0 / 256.0 + 1e-12, "{v} -> {mid}");
        }
        assert_eq!(bucket(EXACT - 1) + 1, bucket(EXACT));
    }

    /// Quantiles of 1..=1000 µs land within 0.4%.
    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1e6;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1e6;
        assert!((p50 - 500.0).abs() < 2.0, "{p50}");
        assert!((p99 - 990.0).abs() < 4.0, "{p99}");
        assert_eq!(h.max(), Some(Duration::from_micros(1000)));
    }

    /// On Linux, the process's CPU time is readable and grows with work.
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_cpu_time() {
        let before = process_cpu().unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = std::hint::black_box(spin + 1);
        }
        assert!(process_cpu().unwrap() >= before);
    }

    /// The cap is handed out exactly once.
    #[test]
    fn budget_caps() {
        let b = Budget::new(Duration::from_secs(60), Some(250));
        assert_eq!(b.claim(100), 100);
        assert_eq!(b.claim(100), 100);
        assert_eq!(b.claim(100), 50);
        assert_eq!(b.claim(100), 0);
        b.release(20);
        assert_eq!(b.claim(100), 20);
    }
}
