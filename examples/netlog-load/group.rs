//! The `group` scenario: workers share a topic through a consumer group,
//! each receiving up to `--batch` messages under leases (ndjson) and acking
//! them in one request, as a work queue runs. Reported: deliveries per
//! second (each also acked), and the delay between a lease running out and
//! its message's next delivery (p50, p99), measured on a second group whose
//! leases are left to expire.
//!
//! With `--redis HOST:PORT` the same work runs, in the same run, against a
//! Redis stream: `XADD` to fill it, then per worker `XREADGROUP ... COUNT
//! batch` and one `XACK` of every id received, over one connection each
//! (RESP written and read here, no client library). Redis has no lease
//! expiry of its own (a client claims idle entries with `XAUTOCLAIM`), so
//! only the throughput is compared.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{Link, Target};
use crate::stats::{Counters, Histogram};

/// Leases left to expire to time redeliveries.
const REDELIVER_SAMPLE: usize = 200;

/// What one worker loop needs.
pub struct Work {
    pub target: Target,
    pub topic: Arc<str>,
    pub batch: u64,
    pub deadline: Instant,
    pub cap: Option<u64>,
    pub counters: Arc<Counters>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Creates group `name` on `topic` with `settings` (JSON).
pub async fn create(
    target: &Target,
    topic: &str,
    name: &str,
    settings: &str,
) -> Result<(), String> {
    let r = target
        .call(
            "POST",
            &format!("/{topic}/groups/{name}"),
            settings.as_bytes(),
        )
        .await
        .map_err(|e| format!("creating group {name}: {e}"))?;
    if r.status != 201 {
        return Err(format!("creating group {name}: {}", r.describe()));
    }
    Ok(())
}

/// One receive of up to `max` (ndjson): each message's lease, offset and
/// lease expiry.
async fn receive(
    link: &mut Link,
    target: &Target,
    path: &str,
) -> Result<Vec<(String, u64, u64)>, String> {
    let req = target.request("POST", path, &[("Accept", "application/x-ndjson")], b"");
    let r = link
        .roundtrip(&req)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    match r.status {
        200 => {}
        404 => return Ok(Vec::new()),
        _ => return Err(format!("receive: {}", r.describe())),
    }
    let mut out = Vec::new();
    for line in r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("receive: {e}"))?;
        let lease = v["lease"].as_str().unwrap_or_default().to_string();
        out.push((
            lease,
            v["offset"].as_u64().unwrap_or_default(),
            v["lease_expires"].as_u64().unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// A worker: receive a batch, ack it in one request, until the deadline.
pub async fn worker(work: Arc<Work>, group: String) -> Histogram {
    let mut link = Link::new(work.target.clone());
    let mut hist = Histogram::default();
    let path = format!(
        "/{}/groups/{group}/receive?max={}&wait=100ms",
        work.topic, work.batch
    );
    let ack = format!("/{}/groups/{group}/ack", work.topic);
    while Instant::now() < work.deadline {
        if work.cap.is_some_and(|cap| {
            work.counters
                .messages
                .load(std::sync::atomic::Ordering::Relaxed)
                >= cap
        }) {
            break;
        }
        let sent = Instant::now();
        let got = match receive(&mut link, &work.target, &path).await {
            Ok(got) => got,
            Err(e) => {
                work.counters.error(|| e);
                continue;
            }
        };
        work.counters.request();
        if got.is_empty() {
            continue;
        }
        let leases: Vec<&str> = got.iter().map(|(l, _, _)| l.as_str()).collect();
        let body = serde_json::json!({ "leases": leases }).to_string();
        let req = work.target.request(
            "POST",
            &ack,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        match link.roundtrip(&req).await {
            Ok(r) if r.status == 200 => {
                work.counters.request();
                work.counters.messages(got.len() as u64, 0);
                hist.record(sent.elapsed());
            }
            Ok(r) => work.counters.error(|| format!("ack: {}", r.describe())),
            Err(e) => work.counters.error(|| format!("ack: {e}")),
        }
    }
    hist
}

/// Leaves [`REDELIVER_SAMPLE`] leases of group `group` (lease_time 1 s) to
/// expire, then times each message's next delivery against its old lease's
/// expiry: the delays, in a histogram.
pub async fn redelivery_delays(
    target: &Target,
    topic: &str,
    group: &str,
) -> Result<Histogram, String> {
    let mut link = Link::new(target.clone());
    let path = format!("/{topic}/groups/{group}/receive?max=100&wait=1s");
    let mut expires: HashMap<u64, u64> = HashMap::new();
    while expires.len() < REDELIVER_SAMPLE {
        let got = receive(&mut link, target, &path).await?;
        if got.is_empty() {
            return Err("the redelivery sample ran dry".into());
        }
        for (_, offset, at) in got {
            expires.insert(offset, at);
        }
    }
    let mut hist = Histogram::default();
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    let path = format!("/{topic}/groups/{group}/receive?max=100&wait=2s");
    while seen < expires.len() && Instant::now() < give_up {
        let got = receive(&mut link, target, &path).await?;
        let at = now_ms();
        for (_, offset, _) in got {
            if let Some(expired) = expires.get(&offset) {
                hist.record(Duration::from_millis(at.saturating_sub(*expired)));
                seen += 1;
            }
        }
    }
    if seen < expires.len() {
        return Err(format!(
            "only {seen} of {} expired leases came back within 30 s",
            expires.len()
        ));
    }
    Ok(hist)
}

/// A RESP connection to Redis.
struct Resp {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

/// A RESP reply, as far as this scenario reads them.
#[derive(Debug)]
enum Reply {
    Simple,
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Resp {
    async fn connect(addr: &str) -> Result<Resp, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("redis {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (r, w) = tokio::io::split(stream);
        Ok(Resp {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    async fn send(&mut self, buf: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(buf)
            .await
            .map_err(|e| format!("redis write: {e}"))
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut buf = Vec::new();
        Self::encode(args, &mut buf);
        self.send(&buf).await?;
        self.read().await
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("redis read: {e}"))?;
        Ok(line.trim_end_matches("\r\n").to_string())
    }

    fn read(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Reply, String>> + Send + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let (kind, rest) = line.split_at(1.min(line.len()));
            let n = || {
                rest.parse::<i64>()
                    .map_err(|e| format!("redis: {e} in {line:?}"))
            };
            match kind {
                "+" => Ok(Reply::Simple),
                "-" => Err(format!("redis error: {rest}")),
                ":" => Ok(Reply::Int(n()?)),
                "$" => {
                    let len = n()?;
                    if len < 0 {
                        return Ok(Reply::Bulk(None));
                    }
                    let mut data = vec![0; len as usize + 2];
                    self.reader
                        .read_exact(&mut data)
                        .await
                        .map_err(|e| format!("redis read: {e}"))?;
                    data.truncate(len as usize);
                    Ok(Reply::Bulk(Some(data)))
                }
                "*" => {
                    let len = n()?;
                    if len < 0 {
                        return Ok(Reply::Array(None));
                    }
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.read().await?);
                    }
                    Ok(Reply::Array(Some(items)))
                }
                _ => Err(format!("redis: unexpected reply {line:?}")),
            }
        })
    }
}

/// Fills stream `key` with `count` messages of `payload`, pipelined.
pub async fn redis_fill(addr: &str, key: &str, payload: &[u8], count: u64) -> Result<(), String> {
    let mut r = Resp::connect(addr).await?;
    let _ = r.call(&[b"DEL", key.as_bytes()]).await?;
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let mut buf = Vec::new();
        for _ in 0..n {
            Resp::encode(&[b"XADD", key.as_bytes(), b"*", b"m", payload], &mut buf);
        }
        r.send(&buf).await?;
        for _ in 0..n {
            r.read().await?;
        }
        left -= n;
    }
    match r
        .call(&[b"XGROUP", b"CREATE", key.as_bytes(), b"load", b"0"])
        .await?
    {
        Reply::Simple => Ok(()),
        other => Err(format!("XGROUP CREATE: {other:?}")),
    }
}

/// A Redis worker: `XREADGROUP COUNT batch` then one `XACK` of every id.
pub async fn redis_worker(addr: String, key: String, work: Arc<Work>, me: usize) -> Histogram {
    let mut hist = Histogram::default();
    let mut r = match Resp::connect(&addr).await {
        Ok(r) => r,
        Err(e) => {
            work.counters.error(|| e);
            return hist;
        }
    };
    let consumer = format!("c{me}");
    let count = work.batch.to_string();
    while Instant::now() < work.deadline {
        if work.cap.is_some_and(|cap| {
            work.counters
                .messages
                .load(std::sync::atomic::Ordering::Relaxed)
                >= cap
        }) {
            break;
        }
        let sent = Instant::now();
        let reply = r
            .call(&[
                b"XREADGROUP",
                b"GROUP",
                b"load",
                consumer.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                b"100",
                b"STREAMS",
                key.as_bytes(),
                b">",
            ])
            .await;
        work.counters.request();
        let ids = match reply {
            Ok(reply) => ids_of(reply),
            Err(e) => {
                work.counters.error(|| e);
                continue;
            }
        };
        if ids.is_empty() {
            continue;
        }
        let mut args: Vec<&[u8]> = vec![b"XACK", key.as_bytes(), b"load"];
        args.extend(ids.iter().map(Vec::as_slice));
        match r.call(&args).await {
            Ok(Reply::Int(n)) => {
                work.counters.request();
                work.counters.messages(n as u64, 0);
                hist.record(sent.elapsed());
            }
            Ok(other) => work.counters.error(|| format!("XACK: {other:?}")),
            Err(e) => work.counters.error(|| e),
        }
    }
    hist
}

/// The entry ids of an `XREADGROUP` reply: `[[key, [[id, [f, v]], …]]]`.
fn ids_of(reply: Reply) -> Vec<Vec<u8>> {
    let Reply::Array(Some(streams)) = reply else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for stream in streams {
        let Reply::Array(Some(mut parts)) = stream else {
            continue;
        };
        let Some(Reply::Array(Some(entries))) = parts.pop() else {
            continue;
        };
        for entry in entries {
            if let Reply::Array(Some(mut fields)) = entry
                && !fields.is_empty()
                && let Reply::Bulk(Some(id)) = fields.swap_remove(0)
            {
                ids.push(id);
            }
        }
    }
    ids
}
