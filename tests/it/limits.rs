//! The connection layer's limits, tried as a hostile client would: silent
//! connections, stalled and huge bodies, a full connection table, malformed
//! request heads, web pages from other origins, and shutdown.
//!
//! The broker runs as the real binary (with `ulimit -n` where descriptors
//! matter, and its RSS read from /proc) or in this process; every client
//! here speaks raw HTTP/1.1 over TCP to 127.0.0.1, with bounded loops and
//! timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a raw exchange of these tests may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// The `netlog` binary with a config file, under `ulimit` (soft and hard)
/// when asked: started by the tests' launcher through `bash`.
struct LimitedBroker {
    netlog: NetlogProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl LimitedBroker {
    /// Starts the broker with `server_keys` in its `[server]` table, under
    /// `ulimit <ulimit>` if given (`-n 1024`), and waits for its start-up
    /// line.
    async fn start(server_keys: &str, ulimit: Option<&str>) -> LimitedBroker {
        let dir = data_dir();
        let config = dir.path().join("netlog.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{server_keys}\n"),
        )
        .expect("write the config");
        let mut launch = Launch::new()
            .listen_from_config()
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .log_to(&dir.path().join("netlog.log"));
        if let Some(limit) = ulimit {
            launch = launch.ulimit(limit);
        }
        let netlog = launch.start().await;
        let addr = netlog.addr();
        LimitedBroker {
            netlog,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.netlog.log()
    }

    /// A line of /proc/<pid>/status (`VmRSS`, `VmHWM`), in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        proc_status_bytes(self.netlog.pid(), field)
    }
}

/// A `field:  N kB` line of /proc/`pid`/status, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// A `GET path` that closes the connection after the answer.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: netlog\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A `POST path` of `body` that closes the connection after the answer.
fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: n\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` on a new connection and reads until the server closes
/// it: (status, head in lower case, body).
async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    tokio::time::timeout(RAW_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        read_answer(&mut stream).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

/// Reads one answer to the end of the connection.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    split_answer(&answer)
}

fn split_answer(answer: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, head, answer[end + 4..].to_vec()))
}

/// Asserts an answer in netlog's error shape with `status` and `text`.
fn assert_error(answer: &(u16, String, Vec<u8>), status: u16, text: &str) -> Value {
    let (got, head, body) = answer;
    assert_eq!(*got, status, "{head}\n{}", String::from_utf8_lossy(body));
    assert!(
        head.contains("content-type: application/json"),
        "JSON answer: {head}"
    );
    let body: Value = serde_json::from_slice(body).expect("a JSON body");
    check_error_body(&body, status, text);
    body
}

/// Whether the server has closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// 2,000 silent connections under `ulimit -n 1024` neither starve a normal
/// client nor stay open past the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_starve_a_client() {
    const SILENT: usize = 2_000;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
    let _ = netlog::log::raise_open_file_limit();
    let broker = LimitedBroker::start("header_timeout = \"3s\"", Some("-n 1024")).await;
    let opened = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(broker.addr)).await {
            Ok(Ok(s)) => silent.push(s),
            other => panic!("connect {} failed: {other:?}", silent.len()),
        }
    }
    let took = Instant::now();
    let answer = exchange(broker.addr, &get("/")).await.expect("an answer");
    let answered_in = took.elapsed();
    eprintln!(
        "opened {SILENT} silent connections in {:?}; a normal GET / was answered in {answered_in:?}",
        took - opened
    );
    assert_eq!(answer.0, 200, "{answer:?}\n{}", broker.log());
    assert!(
        answered_in < Duration::from_secs(3),
        "answered in {answered_in:?}"
    );
    // Every silent one is closed by the header timeout (counted from its
    // accept, which was at most the time to open them all ago).
    let waits = silent
        .iter_mut()
        .map(|s| closed_within(s, HEADER_TIMEOUT + Duration::from_secs(5)));
    let closed = futures_util::future::join_all(waits).await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "silent connections still open after the header timeout"
    );
    assert!(
        opened.elapsed() < HEADER_TIMEOUT + Duration::from_secs(15),
        "closing took {:?}",
        opened.elapsed()
    );
    let log = broker.log();
    assert!(
        log.contains("descriptor limit"),
        "the limit is logged:\n{log}"
    );
    let again = exchange(broker.addr, &get("/")).await.expect("an answer");
    assert_eq!(again.0, 200);
}

/// A keep-alive connection with nothing in flight is closed after the idle
/// timeout, while a new connection gets the (longer) header timeout.
#[tokio::test]
async fn idle_keep_alive_is_closed_after_idle_timeout() {
    let broker = LimitedBroker::start("idle_timeout = \"1s\"\nheader_timeout = \"4s\"", None).await;
    let mut silent = TcpStream::connect(broker.addr).await.expect("connect");
    let mut kept = TcpStream::connect(broker.addr).await.expect("connect");
    kept.write_all(b"GET / HTTP/1.1\r\nHost: n\r\n\r\n")
        .await
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !(got.ends_with(b"]") || got.ends_with(b"}")) {
        let n = tokio::time::timeout(RAW_TIMEOUT, kept.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(4)).await);
    let idle_for = answered.elapsed();
    eprintln!("idle keep-alive closed after {idle_for:?}");
    assert!(idle_for >= Duration::from_millis(900), "{idle_for:?}");
    assert!(
        !closed_within(&mut silent, Duration::from_millis(500)).await,
        "a new connection is held to the header timeout, not the idle one"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
}

/// A client that asks for large answers and never reads them holds no
/// request in flight once its answer is handed to the socket: the idle
/// timeout closes it. The reads here are of the shape the lane
/// (`serve/lane.rs`) serves, which keeps to hyper's rule; a lane that held
/// the request until the socket took the whole answer would keep the
/// connection forever.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_closed_when_idle() {
    let broker = LimitedBroker::start("idle_timeout = \"2s\"\nheader_timeout = \"2s\"", None).await;
    create_t(broker.addr).await;
    let big = "r".repeat(1 << 20);
    let published = exchange(broker.addr, &post("/t/payload", &big))
        .await
        .expect("publish");
    assert_eq!(published.0, 201);
    let api = Api::new(&format!("http://{}", broker.addr));
    let fds = || async { metric(&api, "process_open_fds", &[]).await.expect("fds") };
    // The publish's connection closes on the broker's side a moment after
    // the client's: count once two readings agree (at most 2 s), or the
    // stalled connection below could take its place unseen.
    let mut before = fds().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fds().await;
        if now == before {
            break;
        }
        before = now;
    }
    let mut stalled = TcpStream::connect(broker.addr).await.expect("connect");
    let read = b"GET /t/payload/0 HTTP/1.1\r\nHost: n\r\n\r\n".repeat(32);
    stalled.write_all(&read).await.expect("send the reads");
    // Far more than the sockets' buffers hold: the broker's write stalls.
    // The client reads nothing (reading would let the answers through), so
    // the broker's descriptors tell whether it closed the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fds().await > before,
        "the stalled connection is open at first"
    );
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while fds().await > before {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a connection whose client stopped reading was never closed"
    );
    drop(stalled);
    let again = exchange(broker.addr, &get("/t/payload/0"))
        .await
        .expect("an answer");
    assert_eq!(again.0, 200);
}

/// The idle spin's counters: (spins, spins that caught work, seconds spun).
async fn spin_figures(api: &Api) -> (f64, f64, f64) {
    let get = |name: &'static str| async move { metric(api, name, &[]).await.expect(name) };
    (
        get("netlog_idle_spins_total").await,
        get("netlog_idle_spin_catches_total").await,
        get("netlog_idle_spin_seconds_total").await,
    )
}

/// `[server] idle_spin`: with a spin of 1ms, a client that sends one read at
/// a time on one connection finds the worker still watching for most of its
/// requests; every spin stays within its bound; an idle broker does not
/// spin its CPU away; and `idle_spin = "0"` never spins.
#[tokio::test]
async fn the_idle_spin_catches_requests_one_at_a_time_and_keeps_its_bound() {
    let broker = LimitedBroker::start("idle_spin = \"1ms\"", None).await;
    create_t(broker.addr).await;
    let published = exchange(broker.addr, &post("/t/payload", "spin"))
        .await
        .expect("publish");
    assert_eq!(published.0, 201);
    let api = Api::new(&format!("http://{}", broker.addr));
    let (spins0, catches0, seconds0) = spin_figures(&api).await;
    let mut c = Raw::connect(broker.addr).await;
    const READS: u32 = 200;
    for _ in 0..READS {
        c.send(b"GET /t/payload/0 HTTP/1.1\r\nHost: n\r\n\r\n")
            .await;
        let answer = c.answer().await;
        assert_eq!((answer.status(), &answer.body[..]), (200, &b"spin"[..]));
    }
    let (spins1, catches1, seconds1) = spin_figures(&api).await;
    let (spins, catches) = (spins1 - spins0, catches1 - catches0);
    assert!(
        catches >= f64::from(READS) / 2.0,
        "{catches} of {spins} spins caught one of {READS} reads sent one at a time"
    );
    // A spin may overrun its 1ms by a preemption, never by much on average.
    let mean = (seconds1 - seconds0) / spins;
    assert!(mean <= 0.0015, "spins took {mean} s on average");

    // Idle: no client at all. An unbounded spin would burn a whole CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = || async {
        metric(&api, "process_cpu_seconds_total", &[])
            .await
            .expect("cpu")
    };
    let (cpu0, (idle_spins0, ..)) = (cpu().await, spin_figures(&api).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu1, (idle_spins1, ..)) = (cpu().await, spin_figures(&api).await);
    assert!(
        cpu1 - cpu0 < 0.5,
        "an idle broker used {} s of CPU in 2 s",
        cpu1 - cpu0
    );
    assert!(
        idle_spins1 - idle_spins0 < 200.0,
        "an idle broker spun {} times in 2 s",
        idle_spins1 - idle_spins0
    );

    let off = LimitedBroker::start("idle_spin = \"0\"", None).await;
    create_t(off.addr).await;
    let mut c = Raw::connect(off.addr).await;
    for _ in 0..20 {
        c.send(b"GET /t/payload/0 HTTP/1.1\r\nHost: n\r\n\r\n")
            .await;
        assert_eq!(c.answer().await.status(), 404);
    }
    let off_api = Api::new(&format!("http://{}", off.addr));
    assert_eq!(spin_figures(&off_api).await, (0.0, 0.0, 0.0));
}

/// An event stream that stays silent for longer than the idle and header
/// timeouts is not idle: it is kept and delivers what is published later.
#[tokio::test]
async fn silent_streams_outlive_the_idle_timeout() {
    let broker = LimitedBroker::start("idle_timeout = \"1s\"\nheader_timeout = \"1s\"", None).await;
    create_t(broker.addr).await;
    let mut stream = TcpStream::connect(broker.addr).await.expect("connect");
    stream
        .write_all(b"GET /t/stream?from=0&heartbeat=1h HTTP/1.1\r\nHost: n\r\n\r\n")
        .await
        .expect("open the stream");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let publish = b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 12\r\n\
                    Connection: close\r\n\r\nlate-payload";
    assert_eq!(
        exchange(broker.addr, publish).await.expect("publish").0,
        201
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + RAW_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("late-payload") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the event arrives in time")
            .expect("read the stream");
        assert!(
            n > 0,
            "the stream was closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The soft descriptor limit is raised to the hard one at start-up, and
/// both are logged.
#[tokio::test]
async fn raises_the_soft_descriptor_limit() {
    let broker = LimitedBroker::start("", Some("-S -n 256")).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", broker.netlog.pid()))
        .expect("read /proc/<pid>/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a descriptor limit line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(numbers[0], numbers[1], "soft raised to hard: {line}");
    assert_ne!(numbers[0], "256", "{line}");
    let log = broker.log();
    assert!(log.contains("soft_before") && log.contains("256"), "{log}");
}

/// Creates topic `t` over raw HTTP.
async fn create_t(addr: SocketAddr) {
    let created = exchange(addr, &post("/t", "")).await.expect("create");
    assert_eq!(created.0, 201, "{created:?}");
}

/// Creates topic `t` and `n` scanners on it over raw HTTP; their ids.
async fn topic_with_scanners(addr: SocketAddr, n: usize) -> Vec<String> {
    create_t(addr).await;
    let mut ids = Vec::new();
    for _ in 0..n {
        let scanner = exchange(addr, &post("/t/scanner", ""))
            .await
            .expect("scanner");
        let id: Value = serde_json::from_slice(&scanner.2).expect("scanner JSON");
        ids.push(id["id"].as_str().expect("scanner id").to_string());
    }
    ids
}

/// A full table of long polls (not idle: they outlive the idle timeout)
/// does not lock producers out: a publish sheds the oldest poll, which gets
/// its normal empty answer at once, is answered 201 within a second, and
/// wakes the other polls with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_shed_before_a_producer_is_refused() {
    let broker = LimitedBroker::start(
        "max_connections = 3\nidle_timeout = \"1s\"\nheader_timeout = \"1s\"",
        None,
    )
    .await;
    let ids = topic_with_scanners(broker.addr, 3).await;
    let mut polls = Vec::new();
    for id in &ids {
        let mut s = TcpStream::connect(broker.addr).await.expect("connect");
        s.write_all(&get(&format!("/t/scan?id={id}&wait=1h")))
            .await
            .expect("send the long poll");
        polls.push(s);
        // In order, so the first is the oldest.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the idle timeout: the polls are in flight, not idle.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let started = Instant::now();
    let published = exchange(broker.addr, &post("/t/payload", "wake"))
        .await
        .expect("an answer to the publish");
    let took = started.elapsed();
    assert_eq!(published.0, 201, "{published:?}\n{}", broker.log());
    assert!(
        took < Duration::from_secs(1),
        "publish answered in {took:?}"
    );
    let mut polls = polls.into_iter();
    let mut oldest = polls.next().expect("three polls");
    let shed = tokio::time::timeout(RAW_TIMEOUT, read_answer(&mut oldest))
        .await
        .expect("the shed poll ends at once")
        .expect("an answer to the shed poll");
    assert_error(&shed, 404, "end of topic");
    assert!(shed.1.contains("connection: close"), "{}", shed.1);
    for mut poll in polls {
        let woken = tokio::time::timeout(RAW_TIMEOUT, read_answer(&mut poll))
            .await
            .expect("the publish wakes the poll")
            .expect("an answer to the poll");
        assert_eq!((woken.0, &woken.2[..]), (200, &b"wake"[..]), "{}", woken.1);
    }
    let again = exchange(broker.addr, &get("/")).await.expect("an answer");
    assert_eq!(again.0, 200, "served again once the polls ended");
}

/// A full table of busy connections that are not long polls (bodies on
/// their way) turns the next connection away with a fast 503 in the JSON
/// shape; a long poll among them is shed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_table_refuses_with_503_once_no_long_poll_is_left() {
    let broker = LimitedBroker::start(
        "max_connections = 3\nidle_timeout = \"1s\"\nheader_timeout = \"1s\"\nbody_timeout = \"5s\"",
        None,
    )
    .await;
    let ids = topic_with_scanners(broker.addr, 1).await;
    let mut poll = TcpStream::connect(broker.addr).await.expect("connect");
    poll.write_all(&get(&format!("/t/scan?id={}&wait=3s", ids[0])))
        .await
        .expect("send the long poll");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut uploads = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(broker.addr).await.expect("connect");
        s.write_all(b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 100\r\n\r\nhalf")
            .await
            .expect("start a body");
        uploads.push(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The third upload took the long poll's place.
    let shed = tokio::time::timeout(RAW_TIMEOUT, read_answer(&mut poll))
        .await
        .expect("the shed poll ends")
        .expect("an answer to the shed poll");
    assert_error(&shed, 404, "end of topic");
    let started = Instant::now();
    let refused = exchange(broker.addr, &get("/")).await.expect("an answer");
    eprintln!("refused in {:?}", started.elapsed());
    let body = assert_error(&refused, 503, "too many connections");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
    assert!(refused.1.contains("connection: close"), "{}", refused.1);
    drop(uploads);
}

/// A body that stalls is cut after its timeout with 408 and the
/// connection is closed; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_is_dropped() {
    let broker = LimitedBroker::start("body_timeout = \"1s\"", None).await;
    create_t(broker.addr).await;
    let mut s = TcpStream::connect(broker.addr).await.expect("connect");
    s.write_all(b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .expect("send a partial body");
    let started = Instant::now();
    let answer = tokio::time::timeout(RAW_TIMEOUT, read_answer(&mut s))
        .await
        .expect("dropped in time")
        .expect("an answer");
    let took = started.elapsed();
    eprintln!("stalled body dropped after {took:?}");
    assert_error(&answer, 408, "request timeout");
    assert!(answer.1.contains("connection: close"));
    assert!(
        took >= Duration::from_millis(900),
        "not before its timeout: {took:?}"
    );
    let end = exchange(broker.addr, &get("/t/payload/0"))
        .await
        .expect("read");
    assert_eq!(end.0, 404, "nothing was written");
}

/// 30 chunked uploads of 63 MiB that stall keep the broker's peak RSS
/// under its idle RSS plus the body budget (256 MiB here, with 64 MiB of
/// slack for buffers), and the uploads that find no room get 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_stay_within_the_body_budget() {
    const UPLOADS: usize = 30;
    const UPLOAD_BYTES: usize = 63 << 20;
    const CHUNK: usize = 1 << 20;
    const BUDGET: u64 = 256 << 20;
    const SLACK: u64 = 64 << 20;
    let broker = LimitedBroker::start(
        "body_budget = \"256MiB\"\nbody_budget_wait = \"2s\"\nbody_timeout = \"4s\"",
        None,
    )
    .await;
    create_t(broker.addr).await;
    let idle_rss = broker.status_bytes("VmRSS");
    let chunk = std::sync::Arc::new({
        let mut c = format!("{CHUNK:x}\r\n").into_bytes();
        c.extend(std::iter::repeat_n(0xA5u8, CHUNK));
        c.extend_from_slice(b"\r\n");
        c
    });
    let started = Instant::now();
    let mut uploads = Vec::new();
    for _ in 0..UPLOADS {
        let chunk = chunk.clone();
        let addr = broker.addr;
        uploads.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                b"POST /t/payload HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await
            .expect("head");
            // Send until 63 MiB are out or the broker stops reading; then
            // stall without the final chunk.
            let mut sent = 0;
            while sent < UPLOAD_BYTES {
                match tokio::time::timeout(Duration::from_secs(1), s.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += CHUNK,
                    _ => break,
                }
            }
            let answer = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut s)).await;
            let answer = match answer {
                Ok(Ok(a)) => Ok(a.0),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in 20 s".to_string()),
            };
            (sent, answer)
        }));
    }
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(4) {
        peak = peak.max(broker.status_bytes("VmRSS"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hwm = broker.status_bytes("VmHWM");
    let mut statuses = Vec::new();
    let mut total_sent = 0;
    for u in uploads {
        let (sent, answer) = u.await.expect("upload task");
        total_sent += sent;
        statuses.push(answer);
    }
    eprintln!(
        "idle RSS {} MiB; peak RSS sampled {} MiB; VmHWM {} MiB; {} MiB sent in all; answers {statuses:?}",
        idle_rss >> 20,
        peak >> 20,
        hwm >> 20,
        total_sent >> 20
    );
    assert!(
        hwm < idle_rss + BUDGET + SLACK,
        "peak RSS {} MiB over idle {} MiB + budget 256 MiB + 64 MiB",
        hwm >> 20,
        idle_rss >> 20
    );
    assert!(statuses.contains(&Ok(503)), "some uploads found no room");
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(503) | Ok(408))),
        "every stalled upload is answered 503 or 408: {statuses:?}\n{}",
        broker.log()
    );
    let alive = exchange(broker.addr, &get("/")).await.expect("an answer");
    assert_eq!(alive.0, 200);
}

/// Request heads hyper refuses by itself are answered in netlog's JSON
/// shape: a bad header value, Content-Length beside Transfer-Encoding, a
/// 70,000-character path and an oversized head.
#[tokio::test]
async fn malformed_heads_get_the_json_shape() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let addr = broker.addr();
    let bad_value = b"GET / HTTP/1.1\r\nHost: n\r\nX Bad: v\r\n\r\n".to_vec();
    let answer = exchange(addr, &bad_value).await.expect("an answer");
    assert_error(&answer, 400, "bad request");
    // hyper reads a body with both Content-Length and Transfer-Encoding as
    // chunked and closes the connection after it (RFC 9112, 6.3), so the
    // request is answered (here: no such topic) in the usual shape.
    let cl_te = b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\
                  Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        .to_vec();
    let answer = exchange(addr, &cl_te).await.expect("an answer");
    assert_error(&answer, 404, "topic not found");
    assert!(answer.1.contains("connection: close"), "{}", answer.1);
    let long_path = get(&format!("/{}", "a".repeat(70_000)));
    let answer = exchange(addr, &long_path).await.expect("an answer");
    assert_error(&answer, 414, "uri too long");
    let mut huge_head = b"GET / HTTP/1.1\r\nHost: n\r\n".to_vec();
    for i in 0..2_000 {
        huge_head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(200)).as_bytes());
    }
    huge_head.extend_from_slice(b"\r\n");
    let answer = exchange(addr, &huge_head).await.expect("an answer");
    assert_error(&answer, 431, "request header fields too large");
    let ok = exchange(addr, &get("/")).await.expect("an answer");
    assert_eq!(ok.0, 200, "well-formed requests still work");
    broker.stop().await;
}

/// A page from an origin that is not allowed gets 403 and writes nothing;
/// an allowed one gets CORS headers on answers and preflights.
#[tokio::test]
async fn origins_are_checked() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.server.allowed_origins = vec!["https://app.example".into()];
    let broker = spawn_broker_with(config);
    let addr = broker.addr();
    let post = |origin: &str, path: &str| {
        let body = if path.ends_with("/payload") {
            "hello"
        } else {
            ""
        };
        format!(
            "POST {path} HTTP/1.1\r\nHost: n\r\nOrigin: {origin}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let refused = exchange(addr, &post("https://evil.example", "/t"))
        .await
        .expect("an answer");
    let body = assert_error(&refused, 403, "forbidden");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("evil.example"))
    );
    assert!(!refused.1.contains("access-control-allow-origin"));
    let missing = exchange(addr, &get("/t")).await.expect("an answer");
    assert_error(&missing, 404, "topic not found");

    let created = exchange(addr, &post("https://app.example", "/t"))
        .await
        .expect("an answer");
    assert_eq!(created.0, 201, "{created:?}");
    assert!(
        created
            .1
            .contains("access-control-allow-origin: https://app.example"),
        "{}",
        created.1
    );
    assert!(created.1.contains("vary: origin"));
    assert!(
        created
            .1
            .contains("access-control-expose-headers: x-offset")
    );

    let preflight = b"OPTIONS /t/payload HTTP/1.1\r\nHost: n\r\nOrigin: https://app.example\r\n\
        Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
        Connection: close\r\n\r\n";
    let answer = exchange(addr, preflight).await.expect("an answer");
    assert_eq!(answer.0, 204, "{answer:?}");
    for expected in [
        "access-control-allow-origin: https://app.example",
        "access-control-allow-methods: get, post, delete",
        "access-control-allow-headers: authorization, content-type",
        "access-control-max-age: 600",
    ] {
        assert!(answer.1.contains(expected), "{expected} in {}", answer.1);
    }
    let evil_preflight = String::from_utf8_lossy(preflight).replace("app.example", "evil.example");
    let answer = exchange(addr, evil_preflight.as_bytes())
        .await
        .expect("an answer");
    assert_error(&answer, 403, "forbidden");

    let written = exchange(addr, &post("https://evil.example", "/t/payload"))
        .await
        .expect("an answer");
    assert_error(&written, 403, "forbidden");
    let nothing = exchange(addr, &get("/t/payload/0"))
        .await
        .expect("an answer");
    assert_eq!(nothing.0, 404, "the refused publish wrote nothing");
    broker.stop().await;
}

/// An answer written after shutdown began says `Connection: close`.
#[tokio::test]
async fn answers_during_shutdown_close_the_connection() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let addr = broker.addr();
    let api = broker.api();
    api.create_topic("t").await;
    let id = api.scanner_id("t", "0").await;
    let mut poll = TcpStream::connect(addr).await.expect("connect");
    poll.write_all(format!("GET /t/scan?id={id}&wait=20s HTTP/1.1\r\nHost: n\r\n\r\n").as_bytes())
        .await
        .expect("send the long poll");
    until_long_polls(&api, 1).await;
    let stopping = tokio::spawn(broker.stop());
    let answer = tokio::time::timeout(RAW_TIMEOUT, read_answer(&mut poll))
        .await
        .expect("the poll ends at shutdown")
        .expect("an answer");
    assert!(answer.1.contains("connection: close"), "{}", answer.1);
    stopping.await.expect("the broker stops");
}

/// The admin listener is bounded too: 300 silent connections to it leave
/// the main listener answering at once, the admin listener holds at most
/// its cap of them (the rest are refused or closed right away), every one
/// is closed by the header timeout, and then `/health` answers there again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_flood_of_the_admin_listener_stays_bounded() {
    const SILENT: usize = 300;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    // `ADMIN_MAX_CONNECTIONS` in src/http/admin.rs, as documented.
    const ADMIN_CAP: usize = 64;
    let dir = data_dir();
    let config = dir.path().join("netlog.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nadmin_listen = \"127.0.0.1:0\"\nheader_timeout = \"{}s\"\n",
            HEADER_TIMEOUT.as_secs()
        ),
    )
    .expect("write the config");
    let mut broker = Launch::new()
        .dir(&dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .start()
        .await;
    let admin = broker.admin_addr().expect("the admin listener's address");
    let main = broker.api();
    assert_eq!(main.get("/_health").await.status(), 200);
    let (status, _, _) = exchange(admin, &get("/health"))
        .await
        .expect("admin answers");
    assert_eq!(status, 200);

    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(admin)).await {
            Ok(Ok(s)) => silent.push(s),
            other => panic!("connect {} failed: {other:?}", silent.len()),
        }
    }
    let started = Instant::now();
    assert_eq!(main.get("/_health").await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the main listener answered in {:?}",
        started.elapsed()
    );
    // Well before the header timeout, all but the cap are already gone.
    let quick = silent
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(700)));
    let gone = futures_util::future::join_all(quick)
        .await
        .iter()
        .filter(|c| **c)
        .count();
    let held = SILENT - gone;
    assert!(
        held <= ADMIN_CAP,
        "the admin listener holds {held} silent connections"
    );
    let late = silent
        .iter_mut()
        .map(|s| closed_within(s, HEADER_TIMEOUT + Duration::from_secs(5)));
    let still_open = futures_util::future::join_all(late)
        .await
        .iter()
        .filter(|c| !**c)
        .count();
    assert_eq!(
        still_open, 0,
        "silent admin connections outlive the header timeout"
    );
    let (status, _, _) = exchange(admin, &get("/health"))
        .await
        .expect("admin answers again");
    assert_eq!(status, 200);
    broker.terminate().await;
}

/// Wake-ups a connection gets while it is being polled are folded into the
/// same poll (`serve.rs`, `Folded`); none may be lost. On one keep-alive
/// connection, bodies that trickle in 100-byte pieces (each piece wakes the
/// connection while the handler waits for the next) are each answered at
/// once, not after a watchdog's timer.
#[tokio::test]
async fn trickled_requests_are_answered_at_once() {
    let broker = LimitedBroker::start("", None).await;
    create_t(broker.addr).await;
    let mut c = Raw::connect(broker.addr).await;
    for i in 0..20u64 {
        c.stream
            .write_all(b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 2000\r\n\r\n")
            .await
            .expect("head");
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            c.stream.write_all(&[b'x'; 100]).await.expect("piece");
        }
        let sent = Instant::now();
        let answer = c.answer().await;
        assert_eq!(
            (answer.status(), answer.body),
            (201, format!("{{\"offset\":{i}}}").into_bytes())
        );
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "answer {i} came {:?} after its last byte",
            sent.elapsed()
        );
    }
}

/// Requests written back to back in one write on a keep-alive connection
/// are answered in order, at once, however the answers are split or joined
/// on their way back.
#[tokio::test]
async fn pipelined_requests_are_answered_at_once() {
    let broker = LimitedBroker::start("", None).await;
    create_t(broker.addr).await;
    let mut c = Raw::connect(broker.addr).await;
    let mut pipelined = Vec::new();
    for _ in 0..10 {
        pipelined.extend_from_slice(
            b"POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\n\r\nabc",
        );
    }
    let sent = Instant::now();
    c.stream.write_all(&pipelined).await.expect("pipelined");
    for i in 0..10u64 {
        let answer = c.answer().await;
        assert_eq!(
            (answer.status(), answer.body),
            (201, format!("{{\"offset\":{i}}}").into_bytes())
        );
    }
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "ten pipelined answers took {:?}",
        sent.elapsed()
    );
}

/// A client that leaves in the middle of a long poll takes nothing with it:
/// its wait ends when it leaves, so a message published afterwards is
/// neither moved past on the scanner nor leased to the group it polled,
/// and the next scan and receive get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_whose_client_leaves_takes_nothing() {
    let broker = LimitedBroker::start("", None).await;
    let ids = topic_with_scanners(broker.addr, 1).await;
    let group = exchange(broker.addr, &post("/t/groups/g", ""))
        .await
        .expect("group");
    assert_eq!(group.0, 201, "{group:?}");
    let polls = [
        format!(
            "GET /t/scan?id={}&wait=30s HTTP/1.1\r\nHost: n\r\n\r\n",
            ids[0]
        ),
        "POST /t/groups/g/receive?wait=30s HTTP/1.1\r\nHost: n\r\nContent-Length: 0\r\n\r\n"
            .to_string(),
    ];
    let mut leavers = Vec::new();
    for poll in &polls {
        let mut s = TcpStream::connect(broker.addr).await.expect("connect");
        s.write_all(poll.as_bytes()).await.expect("poll");
        leavers.push(s);
    }
    // Both polls wait (nothing to take), then their clients go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(leavers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = exchange(broker.addr, &post("/t/payload", "abc"))
        .await
        .expect("publish");
    assert_eq!(published.0, 201, "{published:?}");
    let scan = format!("/t/scan?id={}", ids[0]);
    let (status, _, body) = exchange(broker.addr, &get(&scan)).await.expect("scan");
    assert_eq!(
        (status, body),
        (200, b"abc".to_vec()),
        "the scanner moved past it"
    );
    let received = exchange(broker.addr, &post("/t/groups/g/receive", ""))
        .await
        .expect("receive");
    assert_eq!(
        (received.0, received.2.as_slice()),
        (200, &b"abc"[..]),
        "the message was leased to a client that had left: {received:?}"
    );
}

/// Watches for a client leaving hold a descriptor each, so they are bounded
/// (an eighth of the descriptor limit, `serve/departure.rs`): under
/// `ulimit -n 1024` (768 connections, 128 watches), 700 long polls leave
/// descriptors to spare. A producer still gets in, its publish is answered
/// 201 and reaches exactly one poll, and no accept fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_for_leaving_clients_leave_descriptors_to_spare() {
    const POLLS: usize = 700;
    let _ = netlog::log::raise_open_file_limit();
    let broker = LimitedBroker::start("", Some("-n 1024")).await;
    let ids = topic_with_scanners(broker.addr, 1).await;
    let poll = format!(
        "GET /t/scan?id={}&wait=30s HTTP/1.1\r\nHost: n\r\n\r\n",
        ids[0]
    );
    let mut polls = Vec::with_capacity(POLLS);
    for _ in 0..POLLS {
        let mut s = TcpStream::connect(broker.addr).await.expect("connect");
        s.write_all(poll.as_bytes()).await.expect("poll");
        polls.push(s);
    }
    // Every poll is waiting by now, as many as the bound allows watched.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let published = exchange(broker.addr, &post("/t/payload", "abc"))
        .await
        .expect("publish");
    assert_eq!(published.0, 201, "{published:?}\n{}", broker.log());
    let reads = polls.iter_mut().map(|s| async move {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
            _ => false,
        }
    });
    let answered = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .filter(|got| *got)
        .count();
    assert_eq!(answered, 1, "polls answered with the message");
    let log = broker.log();
    assert!(!log.contains("accept failed"), "an accept failed:\n{log}");
}
