//! The throughput scenarios: `post`, `batch-post`, `scan` and `batch-scan`.
//!
//! Each connection is one task sending requests back to back on its own
//! keep-alive connection until the [`Budget`] runs out. Latency is per
//! request: from the first byte written to the last byte of the answer read.
//! Scans check what they get: offsets consecutive per scanner, `X-Count`
//! equal to the records in a batch, and each record's CRC-32.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Link, Response, Target};
use crate::stats::{Budget, Counters, Histogram, Progress};

/// How long tasks may run past the deadline before they are abandoned.
const GRACE: Duration = Duration::from_secs(15);
/// Messages per request when pre-filling a topic.
const PREFILL_BATCH: u64 = 1000;
/// Connections used to pre-fill a topic.
const PREFILL_CONNECTIONS: usize = 4;
/// Bytes before a payload in netlog's plain framing: compver, CRC-32, length.
const FRAME_HEADER_BYTES: usize = 9;
/// Bytes before each message of a batch scan answer: its offset.
const OFFSET_BYTES: usize = 8;

/// What the tasks of one run share.
pub struct Run {
    pub target: Target,
    /// Shared by the runs of one scenario on two front ends (`--also`).
    pub budget: Arc<Budget>,
    pub counters: Arc<Counters>,
}

/// A payload of `size` printable bytes.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Appends one message in netlog's plain framing.
fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Runs `n` tasks and merges their histograms. Tasks still running
/// [`GRACE`] after `deadline` are abandoned and counted as errors, so a stuck
/// broker cannot hang the tool.
pub async fn run_tasks<F, Fut>(
    n: usize,
    deadline: Instant,
    counters: &Counters,
    task: F,
) -> Histogram
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Histogram> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(task).map(tokio::spawn).collect();
    let give_up = tokio::time::Instant::from_std(deadline + GRACE);
    let mut total = Histogram::default();
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(give_up, handle).await {
            Ok(Ok(h)) => total.merge(&h),
            Ok(Err(e)) => counters.error(|| format!("a task failed: {e}")),
            Err(_) => {
                abort.abort();
                counters.error(|| format!("a connection was still busy {GRACE:?} after the end"));
            }
        }
    }
    total
}

/// How one connection publishes: one message per request, or `batch`
/// messages per request in the binary framing.
pub struct Publisher {
    pub topic: Arc<str>,
    pub payload: Arc<[u8]>,
    pub batch: Option<u64>,
    /// Extra headers of a single publish (`--v1`).
    pub headers: Vec<(&'static str, &'static str)>,
}

/// A v1 message's headers: a key and 3 message headers.
pub fn v1_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Netlog-Key", "order-42"),
        ("Netlog-Header-Trace-Id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("Netlog-Header-Source", "checkout"),
        ("Netlog-Header-Content-Type", "application/json"),
    ]
}

impl Publisher {
    fn request(&self, target: &Target, n: u64) -> Vec<u8> {
        match self.batch {
            None => target.request(
                "POST",
                &format!("/{}/payload", self.topic),
                &self.headers,
                &self.payload,
            ),
            Some(_) => {
                let mut body =
                    Vec::with_capacity(n as usize * (FRAME_HEADER_BYTES + self.payload.len()));
                for _ in 0..n {
                    frame(&mut body, &self.payload);
                }
                target.request(
                    "POST",
                    &format!("/{}/messages", self.topic),
                    &[("Content-Type", "application/octet-stream")],
                    &body,
                )
            }
        }
    }

    /// Publishes until the budget runs out.
    pub async fn run(self: Arc<Self>, run: Arc<Run>) -> Histogram {
        let per_request = self.batch.unwrap_or(1);
        let full = self.request(&run.target, per_request);
        let mut link = Link::new(run.target.clone());
        let mut hist = Histogram::default();
        let size = self.payload.len() as u64;
        loop {
            let n = run.budget.claim(per_request);
            if n == 0 {
                break;
            }
            let short;
            let request = if n == per_request {
                &full
            } else {
                short = self.request(&run.target, n);
                &short
            };
            let sent = Instant::now();
            let answer = link.roundtrip(request).await;
            run.counters.request();
            match answer {
                Ok(r) if r.status == 201 => {
                    hist.record(sent.elapsed());
                    run.counters.messages(n, n * size);
                }
                Ok(r) => {
                    run.counters.error(|| r.describe());
                    run.budget.release(n);
                }
                Err(e) => {
                    run.counters.error(|| format!("publish: {e}"));
                    run.budget.release(n);
                }
            }
        }
        hist
    }
}

/// Fills `topic` with `count` messages of `size` bytes, in batches.
pub async fn prefill(
    target: &Target,
    topic: &Arc<str>,
    size: usize,
    count: u64,
) -> Result<(), String> {
    let counters = Arc::new(Counters::default());
    let run = Arc::new(Run {
        target: target.clone(),
        budget: Arc::new(Budget::new(Duration::from_secs(600), Some(count))),
        counters: counters.clone(),
    });
    let publisher = Arc::new(Publisher {
        topic: topic.clone(),
        payload: payload(size).into(),
        batch: Some(PREFILL_BATCH),
        headers: Vec::new(),
    });
    let _progress = Progress::start(format!("prefill {topic}"), counters.clone());
    run_tasks(
        PREFILL_CONNECTIONS,
        run.budget.deadline(),
        &counters,
        |_| publisher.clone().run(run.clone()),
    )
    .await;
    let done = counters.messages.load(std::sync::atomic::Ordering::Relaxed);
    if done < count {
        let why = counters.first_error().unwrap_or_default();
        return Err(format!(
            "pre-fill stopped at {done} of {count} messages: {why}"
        ));
    }
    Ok(())
}

/// One scanner from offset 0 read to the end: one message per request, or
/// up to `batch` with `max`.
pub async fn scan(run: Arc<Run>, topic: Arc<str>, batch: Option<u64>) -> Histogram {
    let mut hist = Histogram::default();
    let id = match crate::create_scanner(&run.target, &topic, "0").await {
        Ok(id) => id,
        Err(e) => {
            run.counters.error(|| e);
            return hist;
        }
    };
    let request = |max: Option<u64>| {
        let max = max.map(|m| format!("&max={m}")).unwrap_or_default();
        let path = format!("/{topic}/scan?id={id}&wait=1ms{max}");
        run.target.request("GET", &path, &[], b"")
    };
    let per_request = batch.unwrap_or(1);
    let full = request(batch);
    let mut link = Link::new(run.target.clone());
    let mut next = None;
    loop {
        let want = run.budget.claim(per_request);
        if want == 0 {
            break;
        }
        let short;
        let req = if want == per_request {
            &full
        } else {
            short = request(Some(want));
            &short
        };
        let sent = Instant::now();
        let answer = link.roundtrip(req).await;
        run.counters.request();
        let r = match answer {
            Ok(r) if r.status == 200 => r,
            Ok(r) if r.status == 404 => {
                run.budget.release(want);
                break;
            }
            Ok(r) => {
                run.counters.error(|| r.describe());
                run.budget.release(want);
                continue;
            }
            Err(e) => {
                run.counters.error(|| format!("scan: {e}"));
                run.budget.release(want);
                continue;
            }
        };
        hist.record(sent.elapsed());
        let checked = match batch {
            None => check_one(&r, next),
            Some(_) => check_records(&r, next),
        };
        match checked {
            Ok((n, bytes)) => {
                run.counters.messages(n, bytes);
                run.budget.release(want.saturating_sub(n));
                next = r.x_offset.map(|first| first + n);
            }
            Err(e) => {
                run.counters.error(|| e);
                run.budget.release(want);
                next = r.x_offset.map(|first| first + r.x_count.unwrap_or(1));
            }
        }
    }
    hist
}

/// Checks a single scan answer; gives (messages, payload bytes).
fn check_one(r: &Response, next: Option<u64>) -> Result<(u64, u64), String> {
    let offset = r.x_offset.ok_or("scan answer without X-Offset")?;
    if next.is_some_and(|n| n != offset) {
        return Err(format!("scan gave offset {offset} where {next:?} was due"));
    }
    Ok((1, r.body.len() as u64))
}

/// Parses and checks a batch scan answer: offset-prefixed netlog frames.
fn check_records(r: &Response, next: Option<u64>) -> Result<(u64, u64), String> {
    let body = &r.body[..];
    let mut expected = next.or(r.x_offset);
    let (mut at, mut count, mut bytes) = (0, 0u64, 0u64);
    while at < body.len() {
        let head = body
            .get(at..at + OFFSET_BYTES + FRAME_HEADER_BYTES)
            .ok_or_else(|| format!("record {count} truncated"))?;
        let offset = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let compver = head[8];
        let crc = u32::from_be_bytes(head[9..13].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(head[13..17].try_into().expect("4 bytes")) as usize;
        at += head.len();
        let payload = body
            .get(at..at + len)
            .ok_or_else(|| format!("record {count} payload truncated"))?;
        at += len;
        if compver != 0 {
            return Err(format!(
                "record {count} has compver {compver}, not a plain message"
            ));
        }
        if expected.is_some_and(|e| e != offset) {
            return Err(format!(
                "record {count} has offset {offset} where {expected:?} was due"
            ));
        }
        if crc32fast::hash(payload) != crc {
            return Err(format!("record {count} (offset {offset}) has a bad CRC"));
        }
        expected = Some(offset + 1);
        count += 1;
        bytes += len as u64;
    }
    if r.x_count != Some(count) {
        return Err(format!("X-Count {:?} but {count} records", r.x_count));
    }
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(records: &[(u64, &[u8])], x_count: u64) -> Response {
        let mut body = Vec::new();
        for (offset, payload) in records {
            body.extend_from_slice(&offset.to_be_bytes());
            frame(&mut body, payload);
        }
        Response {
            status: 200,
            x_offset: records.first().map(|r| r.0),
            x_count: Some(x_count),
            body: Bytes::from(body),
        }
    }

    /// Consecutive, CRC-correct records pass and are counted.
    #[test]
    fn good_records() {
        let r = answer(&[(5, b"ab"), (6, b"cde")], 2);
        assert_eq!(check_records(&r, Some(5)), Ok((2, 5)));
    }

    /// A gap in offsets, a wrong X-Count or a flipped byte is caught.
    #[test]
    fn bad_records() {
        assert!(check_records(&answer(&[(5, b"ab"), (7, b"c")], 2), None).is_err());
        assert!(check_records(&answer(&[(5, b"ab")], 2), None).is_err());
        assert!(check_records(&answer(&[(5, b"ab")], 1), Some(4)).is_err());
        let mut r = answer(&[(5, b"ab")], 1);
        let mut body = r.body.to_vec();
        *body.last_mut().unwrap() ^= 1;
        r.body = Bytes::from(body);
        assert!(check_records(&r, None).is_err());
    }
}
