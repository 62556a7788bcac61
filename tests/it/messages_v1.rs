//! Messages v1 (keys, headers, timestamps) over HTTP and on disk, and the
//! v0 answers pinned byte for byte against the build before v1.
//!
//! The golden files under `tests/golden/v0/` were recorded from the build
//! before this change (main at f161c03) by running
//! `v0_answers_match_the_golden_files` with `NETLOG_GOLDEN_BIN` naming that
//! binary: the test then writes the answers instead of comparing them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use netlog::log::{Log, LogOptions};
use netlog::message;
use netlog::record::{COMPVER_V1, Record};
use serde_json::{Value, json};

use crate::common::{
    Api, Aspect, Engine, Launch, data_dir, expect_error, expect_json, spawn_broker,
};

const WORKED_FRAME: &str = "10e6a094670000003207\
    0000019b7ca98f2e00086f726465722d343201\
    0874726163652d69640006616263313233\
    7b22746f74616c223a392e357d";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v0")
}

/// The answer of one request as pinned: status, the headers a client sees
/// (but `date`), and the body, with `mask` applied to a JSON body.
async fn pinned(resp: reqwest::Response, mask: bool) -> String {
    let mut out = format!("{}\n", resp.status().as_u16());
    let mut names: Vec<_> = resp
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str() != "date")
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("<bytes>")))
        .collect();
    names.sort();
    for n in names {
        out.push_str(&n);
        out.push('\n');
    }
    out.push('\n');
    let body = resp.bytes().await.expect("body");
    if mask {
        // Paths and times of the files differ between runs: their values
        // are masked in the raw text, the rest stays byte for byte.
        let mut text = String::from_utf8(body.to_vec()).expect("json text");
        for key in ["\"path\":\"", "\"mod_time\":\""] {
            text = mask_values(&text, key);
        }
        out.push_str(&text);
    } else {
        out.push_str(&hex(&body));
    }
    out
}

/// `text` with the string value after every `key` replaced by `<masked>`.
fn mask_values(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let start = at + key.len();
        out.push_str(&rest[..start]);
        out.push_str("<masked>");
        let end = rest[start..].find('"').map_or(rest.len(), |e| start + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The v0 data every golden answer reads: text, binary, CR, LF, a batch of
/// lines and of frames, on a plain topic and a gzip one.
async fn write_v0_data(api: &Api) {
    api.create_topic("g").await;
    api.create_topic_with("gz", &json!({"compression_type": 2}))
        .await;
    for topic in ["g", "gz"] {
        api.publish(topic, "message number one").await;
        api.publish(topic, vec![0u8, 255, 13, 10, 7]).await;
        api.publish(topic, "line one\nline two").await;
        api.publish(topic, "carriage\rreturn").await;
        let r = api.publish_ndjson(topic, "a\nbb\n{\"j\":1}\n").await;
        assert_eq!(r.status(), 201);
        let mut frames = Vec::new();
        message::encode(&mut frames, message::PLAIN, b"frame one");
        message::encode(&mut frames, message::PLAIN, &[1, 2, 3]);
        let r = api.post(&format!("/{topic}/messages"), frames).await;
        assert_eq!(r.status(), 201);
    }
}

/// Every read route's answer for v0 data, in order, as (name, answer).
async fn read_v0_answers(api: &Api) -> Vec<(String, String)> {
    let mut out = Vec::new();
    out.push(("list".into(), pinned(api.get("/").await, false).await));
    for topic in ["g", "gz"] {
        let name = |what: &str| format!("{topic}-{what}");
        out.push((
            name("info"),
            pinned(api.get(&format!("/{topic}")).await, true).await,
        ));
        for o in 0..10 {
            let r = api.get(&format!("/{topic}/payload/{o}")).await;
            out.push((name(&format!("payload-{o}")), pinned(r, false).await));
        }
        let id = api.scanner_id(topic, "0").await;
        for i in 0..10 {
            let r = api.get(&format!("/{topic}/scan?id={id}")).await;
            out.push((name(&format!("scan-{i}")), pinned(r, false).await));
        }
        let id = api.scanner_id(topic, "0").await;
        let r = api.get(&format!("/{topic}/scan?id={id}&max=100")).await;
        out.push((name("scan-binary"), pinned(r, false).await));
        let id = api.scanner_id(topic, "0").await;
        let r = reqwest::Client::new()
            .get(api.url(&format!("/{topic}/scan?id={id}&max=100")))
            .header("accept", "application/x-ndjson")
            .send()
            .await
            .expect("scan");
        out.push((name("scan-ndjson"), pinned(r, false).await));
        out.push((name("stream"), sse_until(api, topic, "id: 8\n").await));
        let r = api.get(&format!("/{topic}/check")).await;
        out.push((name("check"), pinned(r, false).await));
    }
    out
}

/// The SSE bytes of `stream?from=0` up to the event holding `last`.
async fn sse_until(api: &Api, topic: &str, last: &str) -> String {
    let mut resp = api.get(&format!("/{topic}/stream?from=0")).await;
    let mut body = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            body.extend_from_slice(&chunk);
            let text = String::from_utf8_lossy(&body);
            if let Some(at) = text.find(last)
                && text[at..].contains("\n\n")
            {
                break;
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "stream stalled: {}",
        String::from_utf8_lossy(&body)
    );
    String::from_utf8_lossy(&body).into_owned()
}

/// Every read route answers v0 data byte for byte as the build before v1
/// did (status, headers, body; paths and times masked).
#[tokio::test]
async fn v0_answers_match_the_golden_files() {
    let dir = data_dir();
    let mut launch = Launch::new().dir(dir.path());
    let record = std::env::var_os("NETLOG_GOLDEN_BIN").map(PathBuf::from);
    if let Some(bin) = &record {
        launch = launch.binary(bin);
    }
    let broker = launch.start().await;
    let api = broker.api();
    write_v0_data(&api).await;
    let answers = read_v0_answers(&api).await;
    let golden = golden_dir();
    if record.is_some() {
        std::fs::create_dir_all(&golden).expect("golden dir");
        for (name, answer) in &answers {
            std::fs::write(golden.join(format!("{name}.txt")), answer).expect("write golden");
        }
        return;
    }
    for (name, answer) in &answers {
        let want = std::fs::read_to_string(golden.join(format!("{name}.txt")))
            .unwrap_or_else(|e| panic!("golden file {name}.txt: {e}"));
        // The console's issue added `nosniff` to every answer on purpose
        // (after these files were made): the one line allowed to differ.
        let answer = answer.replace("x-content-type-options: nosniff\n", "");
        assert_eq!(answer, want, "{name} differs from the build before v1");
    }
}

/// The curl of the spec writes the worked example's 59-byte frame, bit for
/// bit, and every read route shows its key, header and timestamp.
async fn worked_example_from_the_curl(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    let http = reqwest::Client::new();
    api.create_topic("orders").await;
    let r = http
        .post(api.url("/orders/payload"))
        .header("Netlog-Key", "order-42")
        .header("Netlog-Header-Trace-Id", "abc123")
        .header("Netlog-Timestamp", "1767323045678")
        .body(r#"{"total":9.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(r, 201).await, json!({"offset": 0}));
    if on.has(Aspect::TopicDirectory) {
        let data = std::fs::read(dir.path().join("orders/00000000000000000000.data")).unwrap();
        assert_eq!(hex(&data[16..]), WORKED_FRAME);
        let settings = std::fs::read(dir.path().join("orders/settings.json")).unwrap();
        let settings: Value = serde_json::from_slice(&settings).unwrap();
        assert_eq!(settings["message_format"], "v1", "the downgrade guard");
    }
    assert_eq!(api.info("orders").await["message_format"], "v1");
    // The stored frame, as a binary batch scan with format=1 shows it.
    let id = api.scanner_id("orders", "0").await;
    let body = api
        .get(&format!("/orders/scan?id={id}&max=1&format=1"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(hex(&body[8..]), WORKED_FRAME);

    let r = api.get("/orders/payload/0").await;
    let h = r.headers().clone();
    assert_eq!(h["netlog-format"], "1");
    assert_eq!(h["netlog-key"], "order-42");
    assert_eq!(h["netlog-timestamp"], "1767323045678");
    assert_eq!(h["netlog-header-trace-id"], "abc123");
    assert_eq!(
        h["x-crc32"],
        crc32fast::hash(br#"{"total":9.5}"#).to_string()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], br#"{"total":9.5}"#);
    broker.stop().await;
}

/// Keys and header values with `%`, CR, LF, NUL and non-UTF-8 bytes
/// round-trip through every read route; binary batch scans down-convert
/// unless `format=1`; an ndjson line read back is a valid envelope.
async fn metadata_round_trips_on_every_read_route(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    let http = reqwest::Client::new();
    api.create_topic("t").await;
    let r = http
        .post(api.url("/t/payload"))
        .header("Netlog-Key-Base64", "AP8=")
        .header("Netlog-Header-Odd", "100%25 a%0D%0Ab%00c")
        .header("Netlog-Header-Bin", "%FF")
        .header("Netlog-Timestamp", "2026-01-02T05:04:05.678+02:00")
        .body("value")
        .send()
        .await
        .unwrap();
    expect_json(r, 201).await;
    // An empty value is allowed for v1 (a keyed tombstone).
    let r = http
        .post(api.url("/t/payload"))
        .header("Netlog-Key", "gone")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(r, 201).await, json!({"offset": 1}));

    let r = api.get("/t/payload/0").await;
    let h = r.headers().clone();
    assert_eq!(h["netlog-key"], "%00%FF");
    assert_eq!(h["netlog-header-odd"], "100%25%20a%0D%0Ab%00c");
    assert_eq!(h["netlog-header-bin"], "%FF");
    assert_eq!(h["netlog-timestamp"], "1767323045678");
    let r = api.get("/t/payload/1").await;
    assert_eq!(r.headers()["netlog-key"], "gone");
    assert!(r.bytes().await.unwrap().is_empty());

    let id = api.scanner_id("t", "0").await;
    let r = api.scan("t", &id, "5ms").await;
    assert_eq!(r.headers()["netlog-key"], "%00%FF");
    assert_eq!(&r.bytes().await.unwrap()[..], b"value");

    let id = api.scanner_id("t", "0").await;
    let r = http
        .get(api.url(&format!("/t/scan?id={id}&max=10")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["key_base64"], "AP8=");
    assert_eq!(lines[0]["headers"]["odd"], "100% a\r\nb\0c");
    assert_eq!(lines[0]["headers_base64"]["bin"], "/w==");
    assert_eq!(lines[0]["timestamp"], 1_767_323_045_678_i64);
    assert_eq!(lines[0]["message"], "value");
    // Published again as envelopes, the lines make the same messages.
    api.create_topic("copy").await;
    let r = http
        .post(api.url("/copy/messages?envelope=true"))
        .header("content-type", "application/x-ndjson")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(r, 201).await["count"], 2);
    let id = api.scanner_id("copy", "0").await;
    let again = http
        .get(api.url(&format!("/copy/scan?id={id}&max=10")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(again, text);

    // Binary: v0 frames of the values, or the frames as stored.
    let id = api.scanner_id("t", "0").await;
    let body = api
        .get(&format!("/t/scan?id={id}&max=10"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body[8], 0x00);
    assert_eq!(&body[17..22], b"value");
    let id = api.scanner_id("t", "0").await;
    let body = api
        .get(&format!("/t/scan?id={id}&max=10&format=1"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body[8], COMPVER_V1);
    let (_, record) = message::decode(&body[8..]).unwrap();
    let r = Record::parse(&bytes::Bytes::copy_from_slice(record)).unwrap();
    assert_eq!(&r.value[..], b"value");
    // Stored frames published back as a binary batch are taken.
    let mut frames = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (h, _) = message::decode(&body[at + 8..]).unwrap();
        frames.extend_from_slice(&body[at + 8..at + 8 + h.total_len()]);
        at += 8 + h.total_len();
    }
    let r = api.post("/copy/messages", frames).await;
    assert_eq!(expect_json(r, 201).await["count"], 2);

    // SSE: the value, or the ndjson line with envelope=true.
    let sse = sse_until(&api, "t", "id: 1\n").await;
    assert!(sse.contains("id: 0\ndata: value\n"), "{sse}");
    let mut resp = api.get("/t/stream?from=0&envelope=true").await;
    let mut got = String::new();
    while !got.contains("id: 1\n") {
        let chunk = resp.chunk().await.unwrap().unwrap();
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        got.contains(
            r#"id: 0
data: {"crc32":"#
        ),
        "{got}"
    );
    assert!(got.contains(r#""key_base64":"AP8=""#), "{got}");
    broker.stop().await;
}

/// Every header bound of the spec: 64 headers taken, 65 refused; 128-byte
/// names taken, 129 refused; duplicate and `netlog-` names refused; `%2`,
/// `%zz`, both key forms, bad timestamps refused; nothing is written.
async fn hostile_publishes_are_refused(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("h").await;
    let post = |headers: Vec<(String, String)>| {
        let url = api.url("/h/payload");
        async move {
            let mut req = reqwest::Client::new().post(url).body("x");
            for (n, v) in headers {
                req = req.header(n, v);
            }
            req.send().await.unwrap()
        }
    };
    let many = |n: usize| {
        (0..n)
            .map(|i| (format!("Netlog-Header-H{i}"), "v".to_string()))
            .collect::<Vec<_>>()
    };
    expect_json(post(many(64)).await, 201).await;
    expect_error(post(many(65)).await, 400, "bad request").await;
    let named = |n: String| vec![(format!("Netlog-Header-{n}"), "v".to_string())];
    expect_json(post(named("a".repeat(128))).await, 201).await;
    expect_error(post(named("a".repeat(129))).await, 400, "bad request").await;
    expect_error(post(named("Netlog-X".into())).await, 400, "bad request").await;
    let twice = vec![
        ("Netlog-Header-Dup".to_string(), "1".to_string()),
        ("Netlog-Header-Dup".to_string(), "2".to_string()),
    ];
    expect_error(post(twice).await, 400, "bad request").await;
    for bad in ["%2", "%zz", "a%"] {
        let r = post(vec![("Netlog-Key".into(), bad.into())]).await;
        expect_error(r, 400, "bad request").await;
    }
    let both = vec![
        ("Netlog-Key".to_string(), "a".to_string()),
        ("Netlog-Key-Base64".to_string(), "YQ==".to_string()),
    ];
    expect_error(post(both).await, 400, "bad request").await;
    let long_key = "k".repeat(4097);
    expect_error(
        post(vec![("Netlog-Key".into(), long_key)]).await,
        400,
        "bad request",
    )
    .await;
    for (t, ok) in [
        ("0", true),
        ("-1", false),
        ("253402300799999", true),
        ("253402300800000", false),
        ("9999-12-31T23:59:59.999Z", true),
        ("2026-01-02T03:04:05+05:30", true),
        ("yesterday", false),
    ] {
        let r = post(vec![("Netlog-Timestamp".into(), t.into())]).await;
        if ok {
            expect_json(r, 201).await;
        } else {
            expect_error(r, 400, "bad request").await;
        }
    }
    // Envelopes: uppercase, duplicate and reserved names, both forms.
    for line in [
        r#"{"message":"m","headers":{"Trace":"1"}}"#,
        r#"{"message":"m","headers":{"a":"1","a":"2"}}"#,
        r#"{"message":"m","headers":{"netlog-x":"1"}}"#,
        r#"{"message":"m","message_base64":"bQ=="}"#,
        r#"{"message":"m","timestamp":-1}"#,
        r#"{"message":"m","surprise":1}"#,
        r#"{}"#,
    ] {
        let r = reqwest::Client::new()
            .post(api.url("/h/messages?envelope=true"))
            .header("content-type", "application/x-ndjson")
            .body(format!("{{\"message\":\"ok\"}}\n{line}\n"))
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "bad request").await;
    }
    // A binary frame may not carry the broker's idempotency section.
    let record = Record {
        idempotency: Some(netlog::record::Idempotency {
            key: bytes::Bytes::from_static(b"k"),
            request_count: 1,
            fingerprint: 1,
        }),
        value: bytes::Bytes::from_static(b"v"),
        ..Record::default()
    };
    let mut frame = Vec::new();
    record.encode_frame(&mut frame).unwrap();
    let r = api.post("/h/messages", frame.clone()).await;
    let body = expect_error(r, 400, "bad request").await;
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("frame 0: the idempotency section"),
        "{body}"
    );
    assert!(!reason.contains("binary message framing"), "{body}");
    // The frames are checked in one pass; a frame that does not decode is
    // still the error named, even after a bad record.
    let mut both = frame;
    let crc_at = both.len() + 1;
    message::encode(&mut both, message::PLAIN, b"damaged");
    both[crc_at] ^= 0x01;
    let body = expect_error(api.post("/h/messages", both).await, 400, "bad request").await;
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("frame 1 has a bad CRC"), "{body}");
    assert!(reason.contains("binary message framing"), "{body}");
    // Only the accepted ones were written.
    assert_eq!(api.info("h").await["latest_offset"], 5);
    broker.stop().await;
}

/// A `v0` topic refuses v1 publishes and its settings never record v1; a
/// topic with no v1 message has no `message_format` anywhere.
async fn v0_topics_refuse_v1(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic_with("old", &json!({"message_format": "v0"}))
        .await;
    api.create_topic("plain").await;
    api.publish("plain", "x").await;
    let r = reqwest::Client::new()
        .post(api.url("/old/payload"))
        .header("Netlog-Key", "k")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad request").await;
    let r = reqwest::Client::new()
        .post(api.url("/old/messages?envelope=true"))
        .header("content-type", "application/x-ndjson")
        .body("{\"message\":\"a\",\"key\":\"k\"}\n")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad request").await;
    // Bare envelopes are v0 messages: taken.
    let r = reqwest::Client::new()
        .post(api.url("/old/messages?envelope=true"))
        .header("content-type", "application/x-ndjson")
        .body("{\"message\":\"a\"}\n")
        .send()
        .await
        .unwrap();
    expect_json(r, 201).await;
    if on.has(Aspect::TopicDirectory) {
        let settings = std::fs::read_to_string(dir.path().join("old/settings.json")).unwrap();
        assert!(settings.contains("\"v0\""), "{settings}");
        let settings = std::fs::read_to_string(dir.path().join("plain/settings.json")).unwrap();
        assert!(!settings.contains("message_format"), "{settings}");
    }
    assert_eq!(api.info("old").await["message_format"], "v0");
    assert!(api.info("plain").await.get("message_format").is_none());
    broker.stop().await;
}

/// v1 messages inside gzip and snappy sets (several envelopes, one set)
/// read back from disk after a restart, and `check` finds nothing wrong.
#[tokio::test]
async fn v1_inside_compressed_sets() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let body = "{\"message\":\"a\",\"key\":\"k1\"}\n{\"message\":\"b\"}\n\
                {\"message\":\"c\",\"headers\":{\"h\":\"v\"},\"timestamp\":5}\n";
    for (topic, c) in [("gz", 2), ("sn", 3)] {
        api.create_topic_with(topic, &json!({"compression_type": c}))
            .await;
        let r = reqwest::Client::new()
            .post(api.url(&format!("/{topic}/messages?envelope=true")))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_json(r, 201).await["count"], 3);
    }
    broker.stop().await;
    let data = std::fs::read(dir.path().join("gz/00000000000000000000.data")).unwrap();
    assert_eq!(data[16], 0x02, "one gzip set");
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    for topic in ["gz", "sn"] {
        let r = api.get(&format!("/{topic}/payload/0")).await;
        assert_eq!(r.headers()["netlog-key"], "k1");
        let r = api.get(&format!("/{topic}/payload/1")).await;
        assert!(r.headers().get("netlog-format").is_none());
        assert_eq!(&r.bytes().await.unwrap()[..], b"b");
        let r = api.get(&format!("/{topic}/payload/2")).await;
        assert_eq!(r.headers()["netlog-header-h"], "v");
        assert_eq!(r.headers()["netlog-timestamp"], "5");
        let r = api.get(&format!("/{topic}/check")).await;
        assert_eq!(expect_json(r, 200).await["message"], "topic healthy");
    }
    broker.stop().await;
}

fn v1_frame(record: &Record) -> Vec<u8> {
    let mut frame = Vec::new();
    record.encode_frame(&mut frame).unwrap();
    frame
}

/// A v1 record torn at every byte of its frame is cut by recovery, never
/// misread; the message before it is intact.
#[test]
fn torn_v1_record_at_every_byte() {
    let src = tempfile::tempdir().unwrap();
    let log = Log::open(src.path(), LogOptions::default()).unwrap();
    log.append(b"before").unwrap();
    let record = Record {
        timestamp: Some(7),
        key: Some(bytes::Bytes::from_static(b"key")),
        headers: vec![("h".into(), bytes::Bytes::from_static(b"v"))],
        value: bytes::Bytes::from_static(b"value"),
        ..Record::default()
    };
    let frame = v1_frame(&record);
    log.append_encoded(&frame, 1).unwrap();
    log.flush().unwrap();
    log.sync().unwrap();
    drop(log);
    let data_name = "00000000000000000000.data";
    let full = std::fs::read(src.path().join(data_name)).unwrap();
    let start = full.len() - frame.len();
    for cut in start + 1..full.len() {
        let dir = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(src.path()).unwrap() {
            let f = f.unwrap();
            if f.path().is_file() {
                std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
            }
        }
        std::fs::write(dir.path().join(data_name), &full[..cut]).unwrap();
        // Recovery cuts the torn frame (its offset stays reserved, never
        // reused): only the message before it is read.
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut reader = log.reader(0).unwrap();
        let m = reader.next().unwrap().unwrap();
        assert_eq!(&m.payload[..], b"before");
        assert!(reader.next().unwrap().is_none(), "cut at {cut}");
    }
    let log = Log::open(src.path(), LogOptions::default()).unwrap();
    let mut reader = log.reader(0).unwrap();
    reader.next().unwrap().unwrap();
    let m = reader.next().unwrap().unwrap();
    assert_eq!(Record::of(&m).unwrap(), Some(record));
}

/// A v1 record whose CRC passes but whose structure does not is kept by
/// recovery, listed by `check` as `format`, read as `500 format error`
/// with its offset; the messages after it stay readable, and a scanner
/// reads on past it.
#[tokio::test]
async fn damaged_but_crc_valid_record_is_kept_and_reported() {
    let dir = data_dir();
    let topic = dir.path().join("d");
    std::fs::create_dir_all(&topic).unwrap();
    std::fs::write(topic.join("settings.json"), r#"{"message_format":"v1"}"#).unwrap();
    {
        let log = Log::open(&topic, LogOptions::default()).unwrap();
        // Reserved flag bit 7, and a key section past the end.
        for record in [&[0x80u8, b'x'][..], &[0x02, 0x00, 0x09, b'k']] {
            let mut frame = Vec::new();
            message::encode_with(&mut frame, COMPVER_V1, record);
            log.append_encoded(&frame, 1).unwrap();
        }
        log.append(b"after").unwrap();
        log.flush().unwrap();
        log.sync().unwrap();
    }
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let r = api.get("/d/check").await;
    let problems = expect_json(r, 200).await;
    assert_eq!(problems[0]["type"], "format", "{problems}");
    assert_eq!(problems[1]["offset"], 1, "{problems}");
    let body = expect_error(api.get("/d/payload/0").await, 500, "format error").await;
    assert_eq!(body["offset"], 0);
    let r = api.get("/d/payload/2").await;
    assert_eq!(&r.bytes().await.unwrap()[..], b"after");
    let id = api.scanner_id("d", "0").await;
    expect_error(api.scan("d", &id, "5ms").await, 500, "format error").await;
    expect_error(api.scan("d", &id, "5ms").await, 500, "format error").await;
    let r = api.scan("d", &id, "5ms").await;
    assert_eq!(&r.bytes().await.unwrap()[..], b"after");
    // A batch scan hands out what comes before a damaged record first.
    let id = api.scanner_id("d", "2").await;
    let r = api.get(&format!("/d/scan?id={id}&max=10")).await;
    assert_eq!(r.status(), 200);
    broker.stop().await;
}

/// A validator built against `netlog:plugin@0.1.x` keeps loading and sees a
/// v1 message's value as its payload (not the stored record), in single
/// publishes and in envelope batches.
#[tokio::test]
async fn old_validators_see_the_value() {
    let dir = data_dir();
    let broker = crate::common::spawn_broker_with(crate::common::config_with(
        dir.path(),
        vec![crate::common::declare("json", "json_validator.wasm")],
    ));
    let api = broker.api();
    let hook = json!({"validation": {"plugin": "json", "config": {"required": ["id"]}}});
    api.create_topic_with("v", &hook).await;
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(api.url("/v/payload"))
            .header("Netlog-Key", "k")
            .header("Netlog-Header-Trace-Id", "t")
            .body(body)
            .send()
    };
    expect_json(post(r#"{"id":1}"#).await.unwrap(), 201).await;
    expect_error(
        post(r#"{"no":1}"#).await.unwrap(),
        422,
        "rejected by validator",
    )
    .await;
    let r = http
        .post(api.url("/v/messages?envelope=true"))
        .header("content-type", "application/x-ndjson")
        .body(
            "{\"message\":\"{\\\"id\\\":2}\",\"key\":\"a\"}\n{\"message\":\"{}\",\"key\":\"b\"}\n",
        )
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 422, "rejected by validator").await;
    assert_eq!(body["index"], 1);
    broker.stop().await;
}

crate::on_both_engines!(
    worked_example_from_the_curl,
    metadata_round_trips_on_every_read_route,
    hostile_publishes_are_refused,
    v0_topics_refuse_v1,
);
