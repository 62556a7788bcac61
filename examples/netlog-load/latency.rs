//! The latency scenarios: `stream-latency` (Server-Sent Events) and
//! `poll-latency` (long-polling scans).
//!
//! Subscribers attach at the end of a fresh topic first; then publishers post
//! single messages at a fixed rate (`--rate`, spread over `--publishers`
//! connections, each message on its own slot of the schedule). A payload
//! starts with the moment it was sent, in nanoseconds since an `Instant`
//! shared by the whole process, as 20 ASCII digits, padded with `.` to
//! `--size`. A subscriber reads the digits back and records now minus then:
//! the publish-to-receive latency, which includes the POST, the broker's
//! write, its wake-up of waiting readers and the delivery. The stamp is taken
//! when the request is written, so a publisher that falls behind its schedule
//! does not inflate the figures; the result says if that happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::{EventStream, Link, Target};
use crate::stats::{Budget, Counters, Histogram};
use crate::throughput::run_tasks;

/// How long subscribers may take to catch up once publishing has stopped.
const DRAIN: Duration = Duration::from_secs(5);
/// Digits of a send stamp.
pub const STAMP_DIGITS: usize = 20;
/// A message sent this long after its slot counts as late (the timer's
/// resolution is 1 ms, so being a little late is normal).
const LATE: Duration = Duration::from_millis(5);
/// How long one long poll waits for a message.
const POLL_WAIT: &str = "10s";

/// How subscribers read.
#[derive(Clone, Copy)]
pub enum Subscribe {
    /// `GET /{topic}/stream?from=end`.
    Stream,
    /// A scanner at `end`, then `GET /{topic}/scan?id=X&wait=10s` in a loop.
    Poll,
}

/// How a latency run went.
pub struct Outcome {
    pub latency: Histogram,
    pub elapsed: Duration,
    pub notes: Vec<String>,
}

/// What a latency run needs to know.
pub struct Setup {
    /// Where the publishers write.
    pub target: Target,
    /// Where the subscribers read: `--also` if given, else `target`.
    pub read_target: Target,
    pub topic: Arc<str>,
    pub origin: Instant,
    pub size: usize,
    pub rate: u64,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration: Duration,
    pub cap: Option<u64>,
}

/// Runs one latency scenario; `counters` gets the received messages (and
/// their bytes), the publish requests, and the errors.
pub async fn run(setup: Setup, how: Subscribe, counters: Arc<Counters>) -> Result<Outcome, String> {
    let setup = Arc::new(setup);
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = Vec::new();
    for _ in 0..setup.subscribers {
        let task = match how {
            Subscribe::Stream => {
                let events = open_stream(&setup).await?;
                tokio::spawn(read_stream(
                    events,
                    setup.origin,
                    counters.clone(),
                    stopped.clone(),
                ))
            }
            Subscribe::Poll => {
                let id = crate::create_scanner(&setup.read_target, &setup.topic, "end").await?;
                tokio::spawn(poll(setup.clone(), id, counters.clone(), stopped.clone()))
            }
        };
        subscribers.push(task);
    }

    let start = Instant::now();
    let budget = Arc::new(Budget::new(setup.duration, setup.cap));
    let published = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(AtomicU64::new(0));
    run_tasks(setup.publishers, budget.deadline(), &counters, |_| {
        publish(
            setup.clone(),
            budget.clone(),
            counters.clone(),
            [slots.clone(), published.clone(), late.clone()],
        )
    })
    .await;
    let elapsed = start.elapsed();
    let published = published.load(Ordering::Relaxed);

    let expected = published * setup.subscribers as u64;
    let drain_until = Instant::now() + DRAIN;
    while counters.messages.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let mut latency = Histogram::default();
    for task in subscribers {
        match task.await {
            Ok(h) => latency.merge(&h),
            Err(e) => counters.error(|| format!("a subscriber failed: {e}")),
        }
    }

    let mut notes = vec![format!(
        "{published} published at a target of {} msgs/s by {} publishers, {} subscribers",
        setup.rate, setup.publishers, setup.subscribers
    )];
    let received = counters.messages.load(Ordering::Relaxed);
    if received < expected {
        let missing = expected - received;
        counters.errors.fetch_add(missing, Ordering::Relaxed);
        notes.push(format!(
            "{missing} messages not received {DRAIN:?} after the end (counted as errors)"
        ));
    }
    let late = late.load(Ordering::Relaxed);
    if late > 0 {
        notes.push(format!(
            "{late} messages went out over {LATE:?} after their slot (busy machine or slow publishes)"
        ));
    }
    Ok(Outcome {
        latency,
        elapsed,
        notes,
    })
}

/// Opens a stream at the end of the topic and waits for the broker's first
/// comment, so the subscription is in place before anything is published.
async fn open_stream(setup: &Setup) -> Result<EventStream, String> {
    let path = format!("/{}/stream?from=end", setup.topic);
    let mut events = EventStream::open(&setup.read_target, &path)
        .await
        .map_err(|e| format!("stream {path}: {e}"))?;
    loop {
        match events.next_line().await {
            Ok(Some(line)) if line.starts_with(b":") => return Ok(events),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(format!("stream {path} ended before it started")),
            Err(e) => return Err(format!("stream {path}: {e}")),
        }
    }
}

/// A payload stamped with now.
fn stamped(origin: Instant, size: usize) -> Vec<u8> {
    let mut p = format!(
        "{:0width$}",
        origin.elapsed().as_nanos(),
        width = STAMP_DIGITS
    )
    .into_bytes();
    if p.len() < size {
        p.resize(size, b'.');
    }
    p
}

/// How long ago the stamp at the start of `payload` was taken.
fn since_stamp(origin: Instant, payload: &[u8]) -> Option<Duration> {
    let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
    let sent: u64 = std::str::from_utf8(&payload[..digits]).ok()?.parse().ok()?;
    let now = u64::try_from(origin.elapsed().as_nanos()).ok()?;
    Some(Duration::from_nanos(now.saturating_sub(sent)))
}

/// One publisher: takes the next slot of the schedule, waits for it, posts.
async fn publish(
    setup: Arc<Setup>,
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    [slots, published, late]: [Arc<AtomicU64>; 3],
) -> Histogram {
    let period = Duration::from_secs_f64(1.0 / setup.rate as f64);
    let start = tokio::time::Instant::from_std(budget.started());
    let path = format!("/{}/payload", setup.topic);
    let mut link = Link::new(setup.target.clone());
    while budget.claim(1) == 1 {
        let slot = start + period.mul_f64(slots.fetch_add(1, Ordering::Relaxed) as f64);
        if slot.into_std() >= budget.deadline() {
            break;
        }
        tokio::time::sleep_until(slot).await;
        if slot.elapsed() > LATE {
            late.fetch_add(1, Ordering::Relaxed);
        }
        let request = setup
            .target
            .request("POST", &path, &[], &stamped(setup.origin, setup.size));
        let answer = link.roundtrip(&request).await;
        counters.request();
        match answer {
            Ok(r) if r.status == 201 => {
                published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => counters.error(|| r.describe()),
            Err(e) => counters.error(|| format!("publish: {e}")),
        }
    }
    Histogram::default()
}

/// Reads events until told to stop, recording each one's latency.
async fn read_stream(
    mut events: EventStream,
    origin: Instant,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Histogram {
    let mut hist = Histogram::default();
    loop {
        let line = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            line = events.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                counters.error(|| "the stream ended early".into());
                break;
            }
            Err(e) => {
                counters.error(|| format!("stream: {e}"));
                break;
            }
        };
        if let Some(data) = line.strip_prefix(b"data: ") {
            record(&mut hist, &counters, origin, data);
        }
    }
    hist
}

/// Long-polls one scanner until told to stop.
async fn poll(
    setup: Arc<Setup>,
    id: String,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Histogram {
    let mut hist = Histogram::default();
    let path = format!("/{}/scan?id={id}&wait={POLL_WAIT}", setup.topic);
    let request = setup.read_target.request("GET", &path, &[], b"");
    let mut link = Link::new(setup.read_target.clone());
    loop {
        let answer = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            answer = link.roundtrip(&request) => answer,
        };
        match answer {
            Ok(r) if r.status == 200 => record(&mut hist, &counters, setup.origin, &r.body),
            Ok(r) if r.status == 404 => {}
            Ok(r) => counters.error(|| r.describe()),
            Err(e) => counters.error(|| format!("poll: {e}")),
        }
    }
    hist
}

fn record(hist: &mut Histogram, counters: &Counters, origin: Instant, payload: &[u8]) {
    match since_stamp(origin, payload) {
        Some(latency) => {
            hist.record(latency);
            counters.messages(1, payload.len() as u64);
        }
        None => counters.error(|| "a message without a send stamp".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stamp reads back as a short, non-negative latency, at any size.
    #[test]
    fn stamps_round_trip() {
        let origin = Instant::now() - Duration::from_secs(3);
        for size in [1, 20, 100] {
            let p = stamped(origin, size);
            assert_eq!(p.len(), size.max(STAMP_DIGITS));
            let d = since_stamp(origin, &p).unwrap();
            assert!(d < Duration::from_secs(1), "{d:?}");
        }
        assert_eq!(since_stamp(origin, b"hello"), None);
    }
}
