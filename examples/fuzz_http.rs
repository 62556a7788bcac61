//! A grammar fuzzer for netlog's HTTP API.
//!
//! Starts a broker in this process on `127.0.0.1:0` (a temporary data
//! directory, removed at the end), then sends requests generated from a
//! grammar of netlog's routes: methods (the right ones and wrong ones),
//! topic names (a small pool, so requests meet each other's topics, plus
//! absurd ones), query parameters (`from`, `wait`, `heartbeat`, `max`,
//! `max_bytes`, `id`, `persist`) with valid, boundary and absurd values,
//! headers (`Content-Type`, `Accept`, `Last-Event-ID`, `Origin`) and bodies
//! (settings JSON, netlog frames whole or damaged, ndjson, random bytes).
//! The random source is a seeded SplitMix64, so a run is repeatable from its
//! seed (up to the interleaving of its workers).
//!
//! The oracle: every request gets an answer (a long poll the client gives up
//! on is counted, not a finding), every answer is a success or netlog's
//! error shape `{"ok":false,"status":N,"error":"netlog: ..."}` with N the
//! HTTP status, no answer is a 500, the broker answers `GET /` at the end,
//! and every topic's `GET /{topic}/check` says `topic healthy`. Streams are
//! read for a bounded prefix and dropped.
//!
//! ```text
//! cargo run --release --example fuzz_http -- --requests 20000 --seconds 300
//! cargo run --release --example fuzz_http -- --seed 7 --requests 2000
//! ```
//!
//! `tests/it/fuzz_http.rs` runs the same code at CI size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What one run does.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// The seed of the random source.
    pub seed: u64,
    /// How many requests to send (fewer if `time` runs out first).
    pub requests: usize,
    /// Longest the run may send requests for.
    pub time: Duration,
    /// Requests in flight at once.
    pub workers: usize,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            seed: 1,
            requests: 2_000,
            time: Duration::from_secs(30),
            workers: 8,
        }
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct FuzzReport {
    /// Requests sent.
    pub requests: usize,
    /// Answers by status.
    pub statuses: BTreeMap<u16, usize>,
    /// Long polls the client stopped waiting for (not findings).
    pub gave_up: usize,
    /// Streams read for a prefix and dropped.
    pub streams: usize,
    /// Requests whose connection the broker closed while their body was
    /// still being sent: it answered early (404, 405, 413, or a 400 about
    /// the query) without reading the body, which HTTP allows. Not findings.
    pub early_close: usize,
    /// Topics checked at the end.
    pub topics_checked: usize,
    /// Broken oracle rules, each with the request that broke it.
    pub findings: Vec<String>,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Longest any non-polling request may take before it is a finding.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scan may long-poll before the client stops waiting.
const POLL_GIVE_UP: Duration = Duration::from_millis(500);
/// How long to wait for a stream's first chunk.
const STREAM_PREFIX_WAIT: Duration = Duration::from_secs(2);
/// Most bytes read from a stream before dropping it.
const STREAM_PREFIX_BYTES: usize = 64 * 1024;
/// Largest request body the broker takes in this run: 1 MiB.
const MAX_BODY: u64 = 1 << 20;
/// Findings kept in the report (the rest are counted in `statuses`).
const MAX_FINDINGS: usize = 50;

/// SplitMix64: small, seeded, good enough for choosing grammar branches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Topic names requests share, so they meet each other's state.
const TOPICS: &[&str] = &["a", "b", "c", "events.v1", "x_y-z"];

/// Names that are not topics: refused by the name check, or not routed.
const BAD_TOPICS: &[&str] = &[
    "..",
    ".",
    "a%2Fb",
    "%2e%2e",
    "%00",
    "caf%C3%A9",
    "%FF%FE",
    "a b",
    "-",
    "_",
    "CON",
];

/// Durations: valid, boundary and absurd.
const DURATIONS: &[&str] = &[
    "0",
    "1ns",
    "5ms",
    "50ms",
    "100ms",
    "1.5ms",
    "0s",
    "1h",
    "10min",
    "1day",
    "500000000000year",
    "99999999999999999999year",
    "18446744073709551615s",
    "18446744073709551615h",
    "1e400h",
    "-5s",
    "+5s",
    "5",
    "",
    "soon",
    "NaN",
    "1yearyear",
    "٣s",
    "5%20s",
    "1month2day3h",
];

/// Offsets: words, numbers, durations and nonsense.
const OFFSETS: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "10",
    "100",
    "beginning",
    "oldest",
    "first",
    "start",
    "last",
    "latest",
    "end",
    "now",
    "1h",
    "1day",
    "500000000000year",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "-0",
    "1.5",
    "0x10",
    "NOW",
    "%20end%20",
];

/// Counts and sizes.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "10",
    "100",
    "100000",
    "100001",
    "4096",
    "1KiB",
    "64MiB",
    "65MiB",
    "1GiB",
    "1EiB",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1.5",
    "",
    "many",
    "1e3",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/x-ndjson; charset=utf-8",
    "application/octet-stream",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "",
    "nonsense",
];

const ACCEPTS: &[&str] = &[
    "application/x-ndjson",
    "application/octet-stream",
    "*/*",
    "text/event-stream",
    "application/json, application/x-ndjson;q=0.5",
    "",
];

const ORIGINS: &[&str] = &[
    "http://127.0.0.1",
    "http://localhost:3000",
    "https://evil.example",
    "null",
    "",
    "file://",
];

const LAST_EVENT_IDS: &[&str] = &[
    "0",
    "1",
    "5",
    "-1",
    "18446744073709551615",
    "18446744073709551614",
    "",
    " 3 ",
    "abc",
    "1e3",
];

/// One generated request.
#[derive(Debug)]
struct Request {
    method: reqwest::Method,
    /// Path and query, already percent-encoded where needed.
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// What to expect of the answer's timing.
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Answers at once.
    Plain,
    /// May long-poll (a scan).
    Poll,
    /// A stream: read a prefix, drop.
    Stream,
}

/// State the grammar draws on: scanner ids seen in answers.
#[derive(Default)]
struct Seen {
    scanners: BTreeMap<String, Vec<String>>,
}

fn topic(rng: &mut Rng) -> String {
    if rng.chance(92) {
        rng.pick(TOPICS).to_string()
    } else if rng.chance(80) {
        rng.pick(BAD_TOPICS).to_string()
    } else {
        "t".repeat(1 + rng.below(300))
    }
}

/// A query parameter value: usually from `values`, sometimes random text.
fn value(rng: &mut Rng, values: &[&str]) -> String {
    if rng.chance(85) {
        rng.pick(values).to_string()
    } else {
        let len = rng.below(12);
        let raw: String = (0..len)
            .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
            .collect();
        encode(&raw)
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v` pairs, each present by chance; sometimes a repeated or bare key.
fn query(rng: &mut Rng, params: &[(&str, &[&str])]) -> String {
    let mut parts = Vec::new();
    for (key, values) in params {
        if rng.chance(60) {
            parts.push(format!("{key}={}", value(rng, values)));
        }
    }
    if rng.chance(5) {
        parts.push("wait".into());
    }
    if rng.chance(3) {
        parts.push("=&&=x".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A settings JSON body: known keys with valid, boundary or absurd values.
fn settings_body(rng: &mut Rng) -> Vec<u8> {
    let keys = [
        "segment_age",
        "segment_size",
        "batch_num_messages",
        "batch_interval",
        "compression_type",
        "compression",
        "min_segment_bytes",
        "min_segment_age",
        "validation",
        "codecs",
        "bogus",
    ];
    let mut obj = serde_json::Map::new();
    for _ in 0..rng.below(4) {
        let key = *rng.pick(&keys);
        let v = match rng.below(7) {
            0 => json!(rng.pick(DURATIONS)),
            1 => json!(rng.pick(NUMBERS)),
            2 => json!(rng.next() >> rng.below(64)),
            3 => json!(*rng.pick(&[0u64, 1, 3, 4, 4096, 1 << 30, u64::MAX])),
            4 => json!(*rng.pick(&["none", "gzip", "snappy", "lz4", "2", "16"])),
            5 => json!({"plugin": "nope", "config": {}}),
            _ => json!(-1),
        };
        obj.insert(key.to_string(), v);
    }
    let mut body = serde_json::to_vec(&obj).expect("JSON");
    if rng.chance(10) && !body.is_empty() {
        let at = rng.below(body.len());
        body.truncate(at);
    }
    body
}

/// netlog frames, sometimes damaged (a byte flipped, cut, a set flag).
fn frames_body(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(20) {
        let len = if rng.chance(5) {
            rng.below(64 * 1024)
        } else {
            rng.below(200)
        };
        let payload = rng.bytes(len);
        netlog::message::encode(&mut out, netlog::message::PLAIN, &payload);
    }
    if !out.is_empty() && rng.chance(30) {
        let at = rng.below(out.len());
        match rng.below(3) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out.truncate(at),
            _ => out[0] = 0x12,
        }
    }
    out
}

fn ndjson_body(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(30) {
        match rng.below(4) {
            0 => out.extend_from_slice(b"{\"n\":1}"),
            1 => {
                let len = rng.below(100);
                out.extend(rng.bytes(len).into_iter().filter(|b| *b != b'\n'));
            }
            2 => out.extend_from_slice(b"\r"),
            _ => out.extend_from_slice("caf\u{e9} \u{1F600}".as_bytes()),
        }
        out.push(b'\n');
    }
    out
}

fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => settings_body(rng),
        2 => frames_body(rng),
        3 => ndjson_body(rng),
        4 => {
            let len = rng.below(4096);
            rng.bytes(len)
        }
        _ => {
            // Past max_body now and then.
            let len = if rng.chance(10) {
                MAX_BODY as usize + 1 + rng.below(1024)
            } else {
                rng.below(128 * 1024)
            };
            vec![b'x'; len]
        }
    }
}

/// A scanner id: one seen on this topic, or not.
fn scanner_id(rng: &mut Rng, seen: &Seen, topic: &str) -> String {
    let known = seen.scanners.get(topic).filter(|v| !v.is_empty());
    match known {
        Some(ids) if rng.chance(75) => rng.pick(ids).clone(),
        _ => value(
            rng,
            &[
                "",
                "00000000-0000-0000-0000-000000000000",
                "not-a-uuid",
                "../../etc",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
            ],
        ),
    }
}

fn generate(rng: &mut Rng, seen: &Seen) -> Request {
    use reqwest::Method;
    let t = topic(rng);
    let mut kind = Kind::Plain;
    let (method, target) = match rng.below(16) {
        0 => (Method::GET, "/".to_string()),
        1 => (Method::GET, format!("/{t}")),
        2 | 3 => (Method::POST, format!("/{t}")),
        4 => (
            Method::DELETE,
            // Deletes are rare, so topics live long enough to fill.
            if rng.chance(20) {
                format!("/{t}")
            } else {
                format!("/{t}/nothing")
            },
        ),
        5 | 6 => (Method::POST, format!("/{t}/payload")),
        7 => (Method::GET, format!("/{t}/payload/{}", value(rng, OFFSETS))),
        8 | 9 => (Method::POST, format!("/{t}/messages")),
        10 => (Method::GET, format!("/{t}/sync")),
        11 => (
            Method::POST,
            format!(
                "/{t}/scanner{}",
                query(
                    rng,
                    &[
                        ("from", OFFSETS),
                        ("persist", &["true", "false", "1", "yes", "x"])
                    ]
                )
            ),
        ),
        12 => {
            let id = scanner_id(rng, seen, &t);
            (Method::DELETE, format!("/{t}/scanner?id={id}"))
        }
        13 => {
            kind = Kind::Poll;
            let id = scanner_id(rng, seen, &t);
            let q = query(
                rng,
                &[
                    ("wait", DURATIONS),
                    ("max", NUMBERS),
                    ("max_bytes", NUMBERS),
                ],
            );
            let sep = if q.is_empty() { "?" } else { "&" };
            let q = if q.is_empty() {
                String::new()
            } else {
                q[1..].to_string()
            };
            (Method::GET, format!("/{t}/scan?id={id}{sep}{q}"))
        }
        14 => {
            kind = Kind::Stream;
            (
                Method::GET,
                format!(
                    "/{t}/stream{}",
                    query(rng, &[("from", OFFSETS), ("heartbeat", DURATIONS)])
                ),
            )
        }
        _ => {
            let method = rng
                .pick(&[
                    Method::PUT,
                    Method::PATCH,
                    Method::OPTIONS,
                    Method::HEAD,
                    Method::GET,
                    Method::POST,
                ])
                .clone();
            let path = rng
                .pick(&[
                    "/{t}/check",
                    "/{t}/check?from=0",
                    "/{t}/scan/extra",
                    "/{t}/payload/1/2",
                    "//",
                    "/{t}/",
                    "/%2e%2e/%2e%2e/etc/passwd",
                ])
                .replace("{t}", &t);
            (method, path)
        }
    };
    let mut headers = Vec::new();
    if rng.chance(50) {
        headers.push(("content-type", rng.pick(CONTENT_TYPES).to_string()));
    }
    if rng.chance(30) {
        headers.push(("accept", rng.pick(ACCEPTS).to_string()));
    }
    if kind == Kind::Stream && rng.chance(40) {
        headers.push(("last-event-id", rng.pick(LAST_EVENT_IDS).to_string()));
    }
    if rng.chance(5) {
        headers.push(("origin", rng.pick(ORIGINS).to_string()));
    }
    let body = if method == Method::POST || rng.chance(3) {
        body(rng)
    } else {
        Vec::new()
    };
    Request {
        method,
        target,
        headers,
        body,
        kind,
    }
}

/// Whether an answer keeps the oracle: a success or the error shape, never
/// a 500. Returns what is wrong.
fn judge(status: u16, body: &[u8], head: bool) -> Option<String> {
    if status == 500 {
        return Some(format!("500: {}", String::from_utf8_lossy(body)));
    }
    if (200..400).contains(&status) || head {
        return None;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Some(format!(
            "{status} with a non-JSON body: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    };
    let shaped = v["ok"] == Value::Bool(false)
        && v["status"] == status
        && v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("netlog: "));
    (!shaped).then(|| format!("{status} not in the error shape: {v}"))
}

struct Shared {
    rng: Mutex<Rng>,
    seen: Mutex<Seen>,
    report: Mutex<FuzzReport>,
    base: String,
    http: reqwest::Client,
    deadline: Instant,
    budget: usize,
}

impl Shared {
    fn finding(&self, what: String) {
        let mut r = self.report.lock().unwrap();
        if r.findings.len() < MAX_FINDINGS {
            r.findings.push(what);
        }
    }

    /// Takes the next request, or `None` when the budget or time is spent.
    fn next_request(&self) -> Option<Request> {
        if Instant::now() >= self.deadline {
            return None;
        }
        {
            let mut r = self.report.lock().unwrap();
            if r.requests >= self.budget {
                return None;
            }
            r.requests += 1;
        }
        let seen = self.seen.lock().unwrap();
        Some(generate(&mut self.rng.lock().unwrap(), &seen))
    }
}

async fn worker(shared: Arc<Shared>) {
    while let Some(req) = shared.next_request() {
        one(&shared, req).await;
    }
}

async fn one(shared: &Shared, req: Request) {
    let shown = format!("{} {}", req.method, req.target);
    let head = req.method == reqwest::Method::HEAD;
    let has_body = !req.body.is_empty();
    let mut builder = shared
        .http
        .request(req.method.clone(), format!("{}{}", shared.base, req.target))
        .body(req.body);
    for (name, value) in &req.headers {
        builder = builder.header(*name, value.as_str());
    }
    let limit = match req.kind {
        Kind::Poll => POLL_GIVE_UP,
        _ => ANSWER_TIMEOUT,
    };
    let resp = match tokio::time::timeout(limit, builder.send()).await {
        Err(_) if req.kind == Kind::Poll => {
            shared.report.lock().unwrap().gave_up += 1;
            return;
        }
        Err(_) => return shared.finding(format!("{shown}: no answer within {limit:?}")),
        Ok(Err(e)) if has_body && e.is_request() => return early_close(shared, &shown, &e).await,
        Ok(Err(e)) => return shared.finding(format!("{shown}: {}", chain(&e))),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status().as_u16();
    *shared
        .report
        .lock()
        .unwrap()
        .statuses
        .entry(status)
        .or_default() += 1;
    let body = if req.kind == Kind::Stream && status == 200 {
        shared.report.lock().unwrap().streams += 1;
        stream_prefix(resp).await
    } else {
        match tokio::time::timeout(ANSWER_TIMEOUT, resp.bytes()).await {
            Ok(Ok(b)) => b.to_vec(),
            // Closing with our body unread resets the connection, which can
            // cut the answer too: the same early close as above.
            Ok(Err(e)) if has_body => return early_close(shared, &shown, &e).await,
            Ok(Err(e)) => return shared.finding(format!("{shown}: body: {}", chain(&e))),
            Err(_) => return shared.finding(format!("{shown}: body not sent in time")),
        }
    };
    if let Some(what) = judge(status, &body, head) {
        return shared.finding(format!("{shown} ({:?}): {what}", req.headers));
    }
    if status == 201 && shown.contains("/scanner") {
        remember_scanner(shared, &req.target, &body);
    }
}

/// The broker closed a connection with the request body unread: allowed
/// (HTTP lets a server answer early and close), if it still answers.
async fn early_close(shared: &Shared, shown: &str, e: &reqwest::Error) {
    shared.report.lock().unwrap().early_close += 1;
    let probe = shared.http.get(format!("{}/", shared.base)).send().await;
    if !probe.is_ok_and(|r| r.status() == 200) {
        shared.finding(format!(
            "{shown}: the broker does not answer after: {}",
            chain(e)
        ));
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// Reads a stream until its first chunk after the greeting, a byte bound or
/// a short wait; then the stream is dropped.
async fn stream_prefix(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let until = Instant::now() + STREAM_PREFIX_WAIT;
    while out.len() < STREAM_PREFIX_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => out.extend_from_slice(&c),
            _ => break,
        }
        if out.len() > 6 {
            break;
        }
    }
    out
}

fn remember_scanner(shared: &Shared, target: &str, body: &[u8]) {
    let topic = target
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if let Some(id) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
    {
        let mut seen = shared.seen.lock().unwrap();
        let ids = seen.scanners.entry(topic.to_string()).or_default();
        if ids.len() < 20 {
            ids.push(id);
        }
    }
}

/// Runs the fuzzer against the broker at `base` (`http://127.0.0.1:PORT`),
/// then checks every topic. The broker is the caller's.
pub async fn fuzz(base: &str, opts: &FuzzOptions) -> FuzzReport {
    let started = Instant::now();
    // A fresh connection per request: an early close is then this
    // request's alone, never a stale pooled connection's.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(ANSWER_TIMEOUT)
        .build()
        .expect("HTTP client");
    let shared = Arc::new(Shared {
        rng: Mutex::new(Rng(opts.seed)),
        seen: Mutex::new(Seen::default()),
        report: Mutex::new(FuzzReport::default()),
        base: base.to_string(),
        http: http.clone(),
        deadline: started + opts.time,
        budget: opts.requests,
    });
    let workers: Vec<_> = (0..opts.workers.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    for w in workers {
        w.await.expect("a fuzz worker panicked");
    }
    let shared = Arc::into_inner(shared).expect("workers done");
    let mut report = shared.report.into_inner().unwrap();
    final_checks(&http, base, &mut report).await;
    report.elapsed = started.elapsed();
    report
}

/// The broker lives, and every topic it lists is healthy.
async fn final_checks(http: &reqwest::Client, base: &str, report: &mut FuzzReport) {
    let topics = match http.get(format!("{base}/")).send().await {
        Ok(r) if r.status() == 200 => {
            let bytes = r.bytes().await.unwrap_or_default();
            serde_json::from_slice::<Vec<String>>(&bytes).unwrap_or_default()
        }
        Ok(r) => {
            report
                .findings
                .push(format!("GET / at the end: {}", r.status()));
            return;
        }
        Err(e) => {
            report.findings.push(format!("the broker is gone: {e}"));
            return;
        }
    };
    for t in topics {
        let path = format!("{base}/{}/check", encode(&t));
        let answer = match http.get(&path).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, chain(&e)),
        };
        report.topics_checked += 1;
        let healthy = json!({"ok": true, "message": "topic healthy"});
        if answer.0 != 200 || serde_json::from_str::<Value>(&answer.1).ok() != Some(healthy) {
            report
                .findings
                .push(format!("check of {t:?}: {} {}", answer.0, answer.1));
        }
    }
}

/// Starts a broker in this process on `127.0.0.1:0` over `dir`; returns its
/// base URL and the sender that stops it.
pub fn start_broker(
    dir: &std::path::Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("non-blocking");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let config = netlog::config::Config {
        data_dir: dir.to_path_buf(),
        max_body: MAX_BODY,
        monitor_interval: Duration::from_millis(100),
        ..netlog::config::Config::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("broker runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            netlog::run(listener, config, async {
                let _ = rx.await;
            })
            .await
            .expect("the broker runs and stops cleanly");
        });
    });
    (base, tx, thread)
}

/// Starts a broker, fuzzes it, stops it (which must be clean) and returns
/// the report.
pub fn run(opts: &FuzzOptions) -> FuzzReport {
    // The broker's errors (the causes behind a 500) go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "netlog=error".to_string()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::Builder::new()
        .prefix("netlog-fuzz-")
        .tempdir()
        .expect("temporary directory");
    let (base, stop, thread) = start_broker(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let report = rt.block_on(fuzz(&base, opts));
    let _ = stop.send(());
    thread.join().expect("the broker thread does not panic");
    report
}

impl std::fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} requests in {:.1?} ({:.0}/s); {} long polls given up, {} streams read, \
             {} early closes; {} topics checked",
            self.requests,
            self.elapsed,
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.gave_up,
            self.streams,
            self.early_close,
            self.topics_checked
        )?;
        writeln!(f, "statuses: {:?}", self.statuses)?;
        writeln!(f, "findings: {}", self.findings.len())?;
        for finding in &self.findings {
            writeln!(f, "  - {finding}")?;
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn main() {
    let mut opts = FuzzOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a whole number"))
        };
        match flag.as_str() {
            "--requests" => opts.requests = number("--requests") as usize,
            "--seconds" => opts.time = Duration::from_secs(number("--seconds")),
            "--seed" => opts.seed = number("--seed"),
            "--workers" => opts.workers = number("--workers") as usize,
            other => {
                eprintln!(
                    "unknown flag {other:?}; usage: fuzz_http [--requests N] [--seconds S] \
                     [--seed N] [--workers N]"
                );
                std::process::exit(2);
            }
        }
    }
    let report = run(&opts);
    print!("{report}");
    if !report.findings.is_empty() {
        std::process::exit(1);
    }
}
