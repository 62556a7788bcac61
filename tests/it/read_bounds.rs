//! Memory per answer is bounded: a batch scan stops at its byte cap, and a
//! large binary message costs about its encoded size in an ndjson scan.

use std::time::Duration;

use crate::common::*;

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

fn slow_api(base: String) -> Api {
    let http = client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    Api::with_client(&base, http)
}

/// `max=1000` over 20 MiB messages answers within the default byte cap
/// (16 MiB past the first message): one message, not a gigabyte.
#[tokio::test]
async fn batch_scan_stops_at_its_byte_cap() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = slow_api(broker.base_url());
    api.create_topic("big").await;
    for i in 0..4u8 {
        api.publish("big", vec![b'a' + i; 20 << 20]).await;
    }
    let id = api.scanner_id("big", "0").await;
    let resp = api.get(&format!("/big/scan?id={id}&max=1000")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-count").as_deref(), Some("1"));
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 17 + (20 << 20), "one framed message");
    // A smaller explicit cap still returns at least one message.
    let resp = api
        .get(&format!("/big/scan?id={id}&max=1000&max_bytes=1KiB"))
        .await;
    assert_eq!(header(&resp, "x-count").as_deref(), Some("1"));
    assert_eq!(header(&resp, "x-offset").as_deref(), Some("1"));
    assert_eq!(resp.bytes().await.unwrap().len(), 17 + (20 << 20));
    let bad = api
        .get(&format!("/big/scan?id={id}&max=2&max_bytes=1TiB"))
        .await;
    expect_bad_request(bad, "bad request").await;
    broker.stop().await;
}

/// A 63 MiB message that is not UTF-8, read through an ndjson batch scan,
/// costs the broker under 4x its size in peak RSS (base64, not a JSON
/// number per byte).
#[tokio::test]
async fn binary_message_in_ndjson_costs_its_encoded_size() {
    const SIZE: usize = 63 << 20;
    let dir = data_dir();
    {
        let netlog = spawn_netlog(dir.path()).await;
        let api = slow_api(netlog.base_url());
        api.create_topic("bin").await;
        let payload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8 | 0x80).collect();
        api.publish("bin", payload).await;
    }
    // A fresh process, so its peak is the scan's alone.
    let netlog = spawn_netlog(dir.path()).await;
    let api = slow_api(netlog.base_url());
    let before = peak_rss(netlog.pid());
    let id = api.scanner_id("bin", "0").await;
    let resp = api
        .http
        .get(api.url(&format!("/bin/scan?id={id}&max=10")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let line: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        line["message_base64"].as_str().unwrap().len(),
        SIZE.div_ceil(3) * 4
    );
    let cost = peak_rss(netlog.pid()).saturating_sub(before);
    eprintln!(
        "ndjson scan of a {} MiB binary message: peak RSS grew by {} MiB",
        SIZE >> 20,
        cost >> 20
    );
    assert!(
        cost < 4 * SIZE as u64,
        "peak RSS grew by {cost} bytes for a {SIZE}-byte message"
    );
}

/// Bytes of one message of the budget test, and what it takes of the
/// answer budget (payload plus 17 bytes of binary framing).
const BUDGET_MSG: usize = 128 << 10;
const BUDGET_COST: usize = BUDGET_MSG + 17;
/// The answer budget of that test.
const BUDGET: usize = 16 << 20;

fn budget_payload(i: usize) -> Vec<u8> {
    let mut p = format!("message {i} ").into_bytes();
    p.resize(BUDGET_MSG, b'a' + (i % 26) as u8);
    p
}

/// `netlog_answer_bytes_in_flight` once it equals `want` (polled until it
/// does, failing after the request timeout).
async fn wait_in_flight(api: &Api, want: usize) {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let text = api.get("/_metrics").await.text().await.unwrap();
        let got = text
            .lines()
            .find_map(|l| l.strip_prefix("netlog_answer_bytes_in_flight "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the gauge is exposed");
        if got as usize == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "answer bytes in flight stay {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Offsets and payloads of a binary batch answer.
fn parse_batch(mut body: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let offset = u64::from_be_bytes(body[..8].try_into().unwrap());
        let len = u32::from_be_bytes(body[13..17].try_into().unwrap()) as usize;
        out.push((offset, body[17..17 + len].to_vec()));
        body = &body[17 + len..];
    }
    out
}

/// A batch scan whose answer the client does not read: the broker holds
/// it (far more than socket buffers take) until `finish` or `drop`.
struct Unread {
    stream: std::net::TcpStream,
}

impl Unread {
    fn start(addr: std::net::SocketAddr, path: &str) -> Unread {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        Unread { stream }
    }

    /// Reads the head: status, `X-Offset`, `X-Count`, `Content-Length`.
    fn head(&mut self) -> (u16, u64, usize, usize) {
        use std::io::Read;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .unwrap_or(0)
        };
        let status = head[9..12].parse().unwrap();
        (
            status,
            field("x-offset"),
            field("x-count") as usize,
            field("content-length") as usize,
        )
    }

    /// Reads the whole answer; returns its messages.
    fn finish(mut self) -> Vec<(u64, Vec<u8>)> {
        use std::io::Read;
        let (status, _, _, len) = self.head();
        assert_eq!(status, 200);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        parse_batch(&body)
    }
}

/// Batch answers in flight share `[server] answer_budget`: past it a batch
/// scan gets fewer messages (never a partial one), or 503 in netlog's shape
/// when not even one fits; the scanner moves only past what was answered,
/// so every message is delivered exactly once across all the scans; the
/// room comes back when an answer is read and when its client goes away,
/// and a later scan gets its full answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_share_the_answer_budget() {
    let dir = data_dir();
    let conf_dir = data_dir();
    let config = conf_dir.path().join("netlog.toml");
    std::fs::write(
        &config,
        "[server]\nanswer_budget = \"16MiB\"\nanswer_budget_wait = \"300ms\"\n",
    )
    .unwrap();
    let netlog = spawn_netlog_with(dir.path(), &["--config", config.to_str().unwrap()]).await;
    let api = slow_api(netlog.base_url());
    api.create_topic("t").await;
    const N: usize = 700;
    for chunk in (0..N).collect::<Vec<_>>().chunks(40) {
        let mut body = Vec::new();
        for &i in chunk {
            body.extend(frame(0, &budget_payload(i)));
        }
        let resp = api.post("/t/messages", body).await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    let id = api.scanner_id("t", "0").await;
    let scan = |max: usize| format!("/t/scan?id={id}&max={max}");
    let mut delivered: Vec<(u64, Vec<u8>)> = Vec::new();
    wait_in_flight(&api, 0).await;

    // 1. One answer holds 100 messages; the next gets what is left (27).
    let a1 = Unread::start(netlog.addr(), &scan(100));
    wait_in_flight(&api, 100 * BUDGET_COST).await;
    let resp = api.get(&scan(100)).await;
    assert_eq!(resp.status(), 200);
    let b = parse_batch(&resp.bytes().await.unwrap());
    let fit = (BUDGET - 100 * BUDGET_COST) / BUDGET_COST;
    assert_eq!(b.len(), fit, "a smaller answer, of whole messages");
    delivered.extend(a1.finish());
    delivered.extend(b);
    wait_in_flight(&api, 0).await;

    // 2. One answer holds all but less than a message: the next scan waits,
    // then gets 503; its client going away gives the room back.
    let mut a2 = Unread::start(netlog.addr(), &scan(127));
    wait_in_flight(&api, 127 * BUDGET_COST).await;
    let (status, a2_first, a2_count, _) = a2.head();
    assert_eq!((status, a2_count), (200, 127));
    let busy = api.get(&scan(100)).await;
    let body = expect_error(busy, 503, "server busy").await;
    assert_eq!(body["reason"], "too many answers in flight");
    drop(a2);
    wait_in_flight(&api, 0).await;
    for o in a2_first..a2_first + a2_count as u64 {
        delivered.push((o, budget_payload(o as usize)));
    }

    // 3. While one answer holds 100 messages, concurrent big scans each get
    // a smaller answer (what is free: 27 messages at most) or 503.
    let a3 = Unread::start(netlog.addr(), &scan(100));
    wait_in_flight(&api, 100 * BUDGET_COST).await;
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (api, path) = (api.clone(), scan(100));
            tokio::spawn(async move {
                let resp = api.get(&path).await;
                match resp.status().as_u16() {
                    200 => parse_batch(&resp.bytes().await.unwrap()),
                    _ => {
                        expect_error(resp, 503, "server busy").await;
                        Vec::new()
                    }
                }
            })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(got.len() <= fit, "{} messages past the budget", got.len());
        counts.push(got.len());
        delivered.extend(got);
    }
    println!("5 concurrent scans of max=100 got {counts:?} messages (0: 503)");
    delivered.extend(a3.finish());
    wait_in_flight(&api, 0).await;

    // 4. The room is all back: a full answer.
    let resp = api.get(&scan(40)).await;
    assert_eq!(header(&resp, "x-count").as_deref(), Some("40"));
    delivered.extend(parse_batch(&resp.bytes().await.unwrap()));
    wait_in_flight(&api, 0).await;

    // Every message exactly once, in order, intact.
    delivered.sort_by_key(|d| d.0);
    for (i, (offset, payload)) in delivered.iter().enumerate() {
        assert_eq!(*offset, i as u64, "delivered exactly once");
        assert!(*payload == budget_payload(i), "message {i} intact");
    }
    println!(
        "{} messages delivered once across the scans",
        delivered.len()
    );
    let info = api.info("t").await;
    assert_eq!(
        info["scanners"][&id]["next"],
        serde_json::json!(delivered.len()),
        "the scanner moved past exactly what was delivered"
    );
}
