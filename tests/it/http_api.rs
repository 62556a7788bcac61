//! The HTTP API as netlog users see it: the getting-started walkthrough, every
//! route of the route table and every error of the error table that a client
//! can provoke (see `http-api.md`).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const WALKTHROUGH: [&str; 3] = [
    "message number one",
    "message number two",
    "message number three",
];

/// netlog's getting-started walkthrough works verbatim against the real binary.
#[tokio::test]
async fn getting_started_walkthrough() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();

    // curl -XPOST localhost:7200/demo
    expect_ok_message(api.post_empty("/demo").await, 201, "topic created").await;

    // curl -XPOST localhost:7200/demo/payload --data-binary "..." (x3), with
    // the content type curl sends.
    for (i, text) in WALKTHROUGH.iter().enumerate() {
        let resp = api
            .http
            .post(api.url("/demo/payload"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(*text)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_json(resp, 201).await, json!({ "offset": i }));
    }

    // curl localhost:7200/demo
    let info = api.info("demo").await;
    assert_eq!(info["name"], "demo");
    assert_eq!(info["first_offset"], 0);
    assert_eq!(info["latest_offset"], 2);
    let topic_dir = dir.path().canonicalize().unwrap().join("demo");
    assert_eq!(info["path"], topic_dir.to_str().unwrap());
    let segments = info["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 1, "one segment: {info}");
    let seg = &segments[0];
    assert_eq!(seg["first_offset"], 0);
    let data_size = 16 + WALKTHROUGH.iter().map(|m| 9 + m.len()).sum::<usize>();
    assert_eq!(seg["data_size"], data_size);
    assert_eq!(seg["disk_size"], data_size + 100 * 1024 * 16);
    assert_eq!(info["disk_size"], seg["disk_size"]);
    for t in [&seg["mod_time"], &info["mod_time"]] {
        let t = t.as_str().expect("mod_time is text");
        assert!(t.len() == 30 && t.ends_with('Z'), "RFC 3339 in UTC: {t}");
    }
    assert_eq!(info["scanners"], json!({}));

    // curl -XPOST "localhost:7200/demo/scanner?from=0"
    let scanner = api.scanner("demo", "from=0").await;
    let sc = scanner["id"].as_str().unwrap().to_string();
    assert_eq!(
        scanner,
        json!({"id": sc, "next": 0, "from": 0, "persistent": false})
    );
    let info = api.info("demo").await;
    assert_eq!(info["scanners"], json!({ sc.clone(): scanner }));

    // curl "localhost:7200/demo/scan?id=$SC", one message per call...
    for (i, text) in WALKTHROUGH.iter().enumerate() {
        let resp = api.get(&format!("/demo/scan?id={sc}")).await;
        assert_eq!(
            expect_message(resp).await,
            (i as u64, text.as_bytes().to_vec())
        );
    }
    // ...then 404 end of topic.
    let resp = api.get(&format!("/demo/scan?id={sc}")).await;
    expect_exact_error(resp, 404, "end of topic").await;

    // curl "localhost:7200/demo/scan?id=$SC&wait=5s", woken by a new message.
    let waiting = {
        let (api, sc) = (api.clone(), sc.clone());
        tokio::spawn(async move { api.scan("demo", &sc, "5s").await })
    };
    until_long_polls(&api, 1).await;
    assert_eq!(api.publish("demo", "message number four").await, 3);
    let (offset, payload) = expect_message(waiting.await.unwrap()).await;
    assert_eq!((offset, &payload[..]), (3, &b"message number four"[..]));

    // curl -XPOST "localhost:7200/demo/scanner?from=1m": everything here was
    // written in the last minute.
    let recent = api.scanner("demo", "from=1m").await;
    assert_eq!(recent["from"], 0);
    assert_eq!(recent["next"], 0);
    assert_eq!(recent["persistent"], false);
}

/// netlog's one-line pub/sub: a persistent scanner polling with `wait=1h` gets each line.
#[tokio::test]
async fn one_line_pub_sub() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("pubsubdemo").await;
    let scanner = api.scanner("pubsubdemo", "from=0&persist=true").await;
    assert_eq!(scanner["persistent"], true);
    let id = scanner["id"].as_str().unwrap().to_string();

    let lines = ["hello", "pub", "sub"];
    // The subscriber says when it got a line; each line is published once
    // the subscriber's next poll is waiting.
    let (got_one, mut received) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < lines.len() {
                let resp = api.scan("pubsubdemo", &id, "1h").await;
                got.push(expect_message(resp).await.1);
                let _ = got_one.send(());
            }
            got
        })
    };
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            tokio::time::timeout(REQUEST_TIMEOUT, received.recv())
                .await
                .expect("the subscriber gets the line before");
        }
        until_long_polls(&api, 1).await;
        api.publish("pubsubdemo", line).await;
    }
    let got = tokio::time::timeout(REQUEST_TIMEOUT, subscriber)
        .await
        .expect("the subscriber receives every line")
        .unwrap();
    let want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
    assert_eq!(got, want);
    netlog.terminate().await;
}

/// `GET /` lists topic names as a sorted JSON array.
async fn lists_topics(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([]));
    for name in ["beta", "alpha", "c-1.x_y"] {
        api.create_topic(name).await;
    }
    assert_eq!(
        expect_json(api.get("/").await, 200).await,
        json!(["alpha", "beta", "c-1.x_y"])
    );
    broker.stop().await;
}

/// `POST /{topic}` without a body creates an empty topic with the defaults, in `settings.json`.
async fn creates_topic_with_defaults(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("plain").await;
    let info = api.info("plain").await;
    assert_eq!(info["first_offset"], 0);
    assert_eq!(info["latest_offset"], -1, "empty topic: {info}");
    if on.has(Aspect::Segments) {
        assert_eq!(info["segments"].as_array().unwrap().len(), 1);
    }
    assert_eq!(info["scanners"], json!({}));
    let defaults = serde_json::to_value(netlog::config::Config::default().defaults).unwrap();
    for field in [
        "segment_age",
        "segment_size",
        "batch_num_messages",
        "batch_interval",
        "compression_type",
    ] {
        assert!(defaults.get(field).is_some(), "{field} in {defaults}");
    }
    assert_eq!(info["settings"], defaults);
    if on.has(Aspect::TopicDirectory) {
        let stored: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("plain/settings.json")).unwrap())
                .unwrap();
        assert_eq!(stored, defaults);
    }
    broker.stop().await;
}

/// Every settings field is honoured and stored, durations given as text or as nanoseconds.
async fn creates_topic_with_every_setting(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    let want = json!({
        "segment_age": "2day",
        "segment_size": 4096,
        "batch_num_messages": 7,
        "batch_interval": "150ms",
        "compression_type": 3,
    });
    api.create_topic_with("tuned", &want).await;
    let nanos = json!({
        "segment_age": 2 * 86_400_000_000_000u64,
        "segment_size": 4096,
        "batch_num_messages": 7,
        "batch_interval": 150_000_000,
        "compression_type": 3,
    });
    api.create_topic_with("tuned-nanos", &nanos).await;
    for topic in ["tuned", "tuned-nanos"] {
        let info = api.info(topic).await;
        assert_eq!(info["settings"], want, "{topic}");
        assert_eq!(info["compression"], "snappy");
        if on.has(Aspect::TopicDirectory) {
            let path = dir.path().join(topic).join("settings.json");
            let stored: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            assert_eq!(stored, want, "{topic}: settings.json");
        }
    }
    broker.stop().await;
}

/// `compression_type` 0 to 3 are accepted and a message set is stored with that compression.
async fn compression_types_zero_to_three(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    for (ty, stored, name) in [
        (0, 1, "none"),
        (1, 1, "none"),
        (2, 2, "gzip"),
        (3, 3, "snappy"),
    ] {
        let topic = format!("c{ty}");
        api.create_topic_with(&topic, &json!({ "compression_type": ty }))
            .await;
        let info = api.info(&topic).await;
        assert_eq!(info["settings"]["compression_type"], stored, "{topic}");
        assert_eq!(info["compression"], name, "{topic}");

        // A batch publish is one message set, so it shows the compression.
        let resp = api
            .http
            .post(api.url(&format!("/{topic}/messages")))
            .header("content-type", "application/x-ndjson")
            .body("first\nsecond\nthird\n")
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_json(resp, 201).await,
            json!({"first_offset": 0, "count": 3})
        );
        for (i, text) in ["first", "second", "third"].iter().enumerate() {
            let got = api.payload(&topic, &i.to_string()).await;
            assert_eq!(got, (i as u64, text.as_bytes().to_vec()), "{topic}");
        }
        expect_ok_message(api.get(&format!("/{topic}/sync")).await, 200, "synced").await;
        if on.has(Aspect::TopicDirectory) {
            let data = std::fs::read(data_file(dir.path(), &topic, 0)).unwrap();
            assert_eq!(data[16] & 0x0f, stored, "{topic}: compver of the set");
        }
    }
    broker.stop().await;
}

/// `GET /{topic}` of an unknown topic is 404 topic not found.
async fn topic_info_of_unknown_topic(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    expect_exact_error(broker.api().get("/nope").await, 404, "topic not found").await;
    broker.stop().await;
}

/// `DELETE /{topic}` removes a topic without scanners from the list and the disk.
async fn deletes_topic(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("doomed").await;
    api.publish("doomed", "bye").await;
    expect_ok_message(api.delete("/doomed").await, 200, "topic deleted").await;
    expect_exact_error(api.get("/doomed").await, 404, "topic not found").await;
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([]));
    assert!(!dir.path().join("doomed").exists(), "directory removed");
    expect_exact_error(api.delete("/doomed").await, 404, "topic not found").await;

    api.create_topic("doomed").await;
    assert_eq!(
        api.info("doomed").await["latest_offset"],
        -1,
        "a fresh topic"
    );
    broker.stop().await;
}

/// Deleting a topic with scanners attached is 409 resource busy unless `force=true`.
async fn delete_with_scanners_needs_force(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("busy").await;
    api.publish("busy", "x").await;
    api.scanner_id("busy", "0").await;
    for path in ["/busy", "/busy?force=false", "/busy?force=0"] {
        // The reason says how many scanners hold it and how to force it.
        let body = expect_error(api.delete(path).await, 409, "resource busy").await;
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("1 scanner") && reason.contains("force=true"),
            "{body}"
        );
    }
    assert_eq!(api.info("busy").await["latest_offset"], 0, "still there");
    expect_ok_message(api.delete("/busy?force=true").await, 200, "topic deleted").await;
    expect_exact_error(api.get("/busy").await, 404, "topic not found").await;
    assert!(!dir.path().join("busy").exists());
    broker.stop().await;
}

/// Payloads are stored byte for byte and read back by number, keyword or duration.
async fn payload_write_and_read(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("p").await;
    let binary: Vec<u8> = (0..=255u8).collect();
    let payloads = [b"zero".to_vec(), binary, b"two".to_vec(), b"three".to_vec()];
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(api.publish("p", p.clone()).await, i as u64);
    }
    let at = |i: usize| (i as u64, payloads[i].clone());
    for (spec, want) in [
        ("0", 0),
        ("1", 1),
        ("3", 3),
        ("first", 0),
        ("FIRST", 0),
        ("beginning", 0),
        ("oldest", 0),
        ("start", 0),
        ("latest", 3),
        ("last", 3),
        ("1h", 0),
        ("1day", 0),
    ] {
        assert_eq!(api.payload("p", spec).await, at(want), "payload/{spec}");
    }
    for spec in ["end", "now", "4", "1000"] {
        let resp = api.get(&format!("/p/payload/{spec}")).await;
        expect_exact_error(resp, 404, "offset not found").await;
    }
    broker.stop().await;
}

/// `GET /{topic}/sync` answers `synced`.
async fn syncs_topic(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("s").await;
    api.publish("s", "durable").await;
    expect_ok_message(api.get("/s/sync").await, 200, "synced").await;
    expect_exact_error(api.get("/nope/sync").await, 404, "topic not found").await;
    broker.stop().await;
}

/// `POST /{topic}/scanner` accepts every form of `from`: keywords, numbers, durations.
async fn scanner_from_forms(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("f").await;
    for p in ["a", "b", "c"] {
        api.publish("f", p).await;
    }
    for (query, from) in [
        ("", 0),
        ("from=", 0),
        ("from=beginning", 0),
        ("from=first", 0),
        ("from=oldest", 0),
        ("from=start", 0),
        ("from=Start", 0),
        ("from=last", 2),
        ("from=latest", 2),
        ("from=LATEST", 2),
        ("from=end", 3),
        ("from=now", 3),
        ("from=0", 0),
        ("from=1", 1),
        ("from=3", 3),
        ("from=1m", 0),
        ("from=1h30m", 0),
        ("from=1day", 0),
        ("from=1month2day3h", 0),
    ] {
        let s = api.scanner("f", query).await;
        assert_eq!(s["from"], from, "{query}: {s}");
        assert_eq!(s["next"], from, "{query}: {s}");
        assert_eq!(s["persistent"], false);
    }
    // A scanner from the end gets the next message, not an old one.
    let id = api.scanner_id("f", "end").await;
    api.publish("f", "d").await;
    assert_eq!(api.scan_one("f", &id).await, (3, b"d".to_vec()));
    broker.stop().await;
}

/// `persist` accepts 1, true and yes; only persistent scanners get a `readers/` file.
async fn scanner_persist_flags(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("ps").await;
    api.publish("ps", "x").await;
    let readers = dir.path().join("ps/readers");
    for (flag, persistent) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("TRUE", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("", false),
    ] {
        let s = api.scanner("ps", &format!("from=0&persist={flag}")).await;
        assert_eq!(s["persistent"], persistent, "persist={flag}");
        let file = readers.join(format!("{}.scanner", s["id"].as_str().unwrap()));
        if !on.has(Aspect::TopicDirectory) {
            continue;
        }
        if persistent {
            let bytes = std::fs::read(&file).expect("scanner file");
            assert_eq!(bytes, (-1i64).to_be_bytes(), "nothing returned yet");
        } else {
            assert!(!file.exists(), "persist={flag} writes no file");
        }
    }
    assert_eq!(api.scanner("ps", "from=0").await["persistent"], false);
    broker.stop().await;
}

/// `DELETE /{topic}/scanner` removes a scanner; no id is 400, an unknown one 404.
async fn scanner_delete(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("sd").await;
    let s = api.scanner("sd", "from=0&persist=true").await;
    let id = s["id"].as_str().unwrap();
    let file = dir.path().join(format!("sd/readers/{id}.scanner"));
    assert_eq!(file.exists(), on.has(Aspect::TopicDirectory));

    let resp = api.delete(&format!("/sd/scanner?id={id}")).await;
    expect_ok_message(resp, 200, "scanner deleted").await;
    assert!(!file.exists(), "scanner file removed");
    assert_eq!(api.info("sd").await["scanners"], json!({}));
    let resp = api.scan("sd", id, "5ms").await;
    expect_exact_error(resp, 404, "scanner not found").await;

    expect_bad_request(api.delete("/sd/scanner").await, "bad request").await;
    let resp = api.delete(&format!("/sd/scanner?id={id}")).await;
    expect_exact_error(resp, 404, "scanner not found").await;
    let resp = api.delete("/sd/scanner?id=not-a-uuid").await;
    expect_exact_error(resp, 404, "scanner not found").await;
    broker.stop().await;
}

/// `scan` hands each message out once per scanner, waits up to `wait`, wakes on a publish.
async fn scan_with_wait(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("w").await;
    let a = api.scanner_id("w", "0").await;
    let b = api.scanner_id("w", "0").await;
    expect_exact_error(
        api.get(&format!("/w/scan?id={a}")).await,
        404,
        "end of topic",
    )
    .await;
    expect_exact_error(api.scan("w", &a, "30ms").await, 404, "end of topic").await;
    expect_exact_error(api.scan("w", &a, "").await, 404, "end of topic").await;

    let waiting = {
        let (api, a) = (api.clone(), a.clone());
        tokio::spawn(async move { api.scan("w", &a, "1h").await })
    };
    until_long_polls(&api, 1).await;
    api.publish("w", "wake").await;
    api.publish("w", "more").await;
    let (offset, payload) = expect_message(waiting.await.unwrap()).await;
    assert_eq!((offset, &payload[..]), (0, &b"wake"[..]));
    assert_eq!(api.scan_one("w", &a).await, (1, b"more".to_vec()));
    expect_exact_error(api.scan("w", &a, "5ms").await, 404, "end of topic").await;

    // Scanner b is independent of a.
    assert_eq!(api.scan_one("w", &b).await, (0, b"wake".to_vec()));
    let info = api.info("w").await;
    assert_eq!(info["scanners"][&a]["next"], 2);
    assert_eq!(info["scanners"][&b]["next"], 1);
    broker.stop().await;
}

/// `GET /{topic}/check` answers `topic healthy` for intact data.
async fn check_healthy(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("h").await;
    expect_ok_message(api.get("/h/check").await, 200, "topic healthy").await;
    for p in ["a", "b", "c"] {
        api.publish("h", p).await;
    }
    for path in [
        "/h/check",
        "/h/check?from=0",
        "/h/check?from=2",
        "/h/check?from=end",
    ] {
        expect_ok_message(api.get(path).await, 200, "topic healthy").await;
    }
    broker.stop().await;
}

/// Positions and lengths of the messages stored in a data file.
fn entries(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 16;
    while pos + 9 <= data.len() {
        let len = u32::from_be_bytes(data[pos + 5..pos + 9].try_into().unwrap()) as usize;
        out.push((pos, len));
        pos += 9 + len;
    }
    out
}

/// A byte flipped on disk is listed by `check`, and reading it is 500 checksum error.
#[tokio::test]
async fn check_finds_corrupted_bytes() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic_with("bad", &json!({ "compression_type": 1 }))
        .await;
    for i in 0..5 {
        api.publish("bad", format!("message-{i}")).await;
    }
    let resp = api
        .http
        .post(api.url("/bad/messages"))
        .header("content-type", "application/x-ndjson")
        .body("x0\nx1\nx2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, 201).await["first_offset"], 5);
    assert_eq!(api.publish("bad", "tail").await, 8);
    broker.stop().await;

    // Flip a payload byte of plain message 2, and one of the second message
    // inside the set at offset 5 (fixing the set's own CRC, so only the inner
    // message is wrong).
    let path = data_file(dir.path(), "bad", 0);
    let mut data = std::fs::read(&path).unwrap();
    let stored = entries(&data);
    assert_eq!(stored.len(), 7, "five plain messages, a set, a plain one");
    let (pos2, _) = stored[2];
    data[pos2 + 9] ^= 0xff;
    let bad2 = data[pos2 + 9..pos2 + 9 + 9].to_vec();
    let (set_pos, set_len) = stored[5];
    let inner1 = set_pos + 9 + (9 + 2) + 9;
    data[inner1] ^= 0xff;
    let bad_x1 = data[inner1..inner1 + 2].to_vec();
    let set_crc = crc32fast::hash(&data[set_pos + 9..set_pos + 9 + set_len]);
    data[set_pos + 1..set_pos + 5].copy_from_slice(&set_crc.to_be_bytes());
    std::fs::write(&path, &data).unwrap();

    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let problems = expect_json(api.get("/bad/check").await, 200).await;
    let crc = |b: &[u8]| u64::from(crc32fast::hash(b));
    assert_eq!(
        problems,
        json!([
            {"offset": 2, "odelta": 0, "type": "checksum",
             "expected": crc(b"message-2"), "actual": crc(&bad2)},
            {"offset": 5, "odelta": 1, "type": "checksum",
             "expected": crc(b"x1"), "actual": crc(&bad_x1)},
        ])
    );
    let from3 = expect_json(api.get("/bad/check?from=3").await, 200).await;
    assert_eq!(from3.as_array().unwrap().len(), 1, "only the set: {from3}");

    for offset in [2, 6] {
        let resp = api.get(&format!("/bad/payload/{offset}")).await;
        let body = expect_error(resp, 500, "checksum error").await;
        assert_eq!(
            body["offset"], offset,
            "the answer names the damaged offset: {body}"
        );
    }
    for (offset, want) in [
        (1, &b"message-1"[..]),
        (3, b"message-3"),
        (5, b"x0"),
        // After the damaged message inside the same set: still readable.
        (7, b"x2"),
        (8, b"tail"),
    ] {
        assert_eq!(
            api.payload("bad", &offset.to_string()).await,
            (offset, want.to_vec())
        );
    }

    // Consumers get every intact message before the damage, then the
    // damage with its offset; nothing is skipped on their behalf.
    let batch = |id: String| {
        let api = api.clone();
        async move {
            api.http
                .get(api.url(&format!("/bad/scan?id={id}&max=100")))
                .header("accept", "application/x-ndjson")
                .send()
                .await
                .expect("scan")
        }
    };
    let offsets = |text: String| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("a JSON line")["offset"]
                    .as_u64()
                    .expect("offset")
            })
            .collect()
    };
    for (from, before, damaged) in [("0", vec![0, 1], 2), ("3", vec![3, 4, 5], 6)] {
        let id = api.scanner_id("bad", from).await;
        let resp = batch(id.clone()).await;
        assert_eq!(resp.status(), 200, "from {from}");
        assert_eq!(
            offsets(resp.text().await.expect("body")),
            before,
            "from {from}"
        );
        for _ in 0..2 {
            let body = expect_error(batch(id.clone()).await, 500, "checksum error").await;
            assert_eq!(
                body["offset"], damaged,
                "the scanner stays at the damage: {body}"
            );
        }
    }
    let id = api.scanner_id("bad", "7").await;
    let resp = batch(id).await;
    assert_eq!(
        offsets(resp.text().await.expect("body")),
        vec![7, 8],
        "past the damage"
    );

    // A stream delivers what comes before the damage, then one error event
    // naming it, and ends.
    let resp = api.get("/bad/stream?from=0").await;
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the stream ends by itself")
        .expect("stream body");
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["0", "1"], "{text}");
    let error = text
        .split("event: error\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("an error event: {text}"));
    let error: Value = serde_json::from_str(error).expect("error JSON");
    assert_eq!(error["error"], "netlog: checksum error");
    assert_eq!(error["offset"], 2);
    broker.stop().await;
}

/// 400 bad request: empty payload, malformed JSON, unknown or mistyped settings fields.
async fn bad_request_errors(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    expect_bad_request(api.post("/t/payload", "").await, "bad request").await;
    expect_bad_request(api.post_empty("/t/payload").await, "bad request").await;
    for (i, body) in [
        "{",
        "not json",
        "[1,2]",
        r#"{"segment_size":"big"}"#,
        r#"{"segment_age":"forever"}"#,
        r#"{"retention_days":3}"#,
        r#"{"segment_size":1,"extra":true}"#,
    ]
    .iter()
    .enumerate()
    {
        let reason =
            expect_bad_request(api.post(&format!("/n{i}"), *body).await, "bad request").await;
        assert!(reason.contains("settings"), "{body}: {reason}");
        expect_exact_error(api.get(&format!("/n{i}")).await, 404, "topic not found").await;
    }
    broker.stop().await;
}

/// 400 invalid offset: negative or meaningless offsets in `from=`, `/payload/`, `check`.
async fn invalid_offset_errors(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    api.publish("t", "x").await;
    for from in ["-1", "xyz", "1x", "-5s"] {
        let resp = api.post_empty(&format!("/t/scanner?from={from}")).await;
        expect_bad_request(resp, "invalid offset").await;
        let resp = api.get(&format!("/t/check?from={from}")).await;
        expect_bad_request(resp, "invalid offset").await;
    }
    for offset in ["abc", "-1", "1.5.5"] {
        let resp = api.get(&format!("/t/payload/{offset}")).await;
        expect_bad_request(resp, "invalid offset").await;
    }
    broker.stop().await;
}

/// 400 invalid duration for a `wait` that is not a duration.
async fn invalid_duration_error(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    let id = api.scanner_id("t", "0").await;
    for wait in ["forever", "-1s", "5", "1day1year"] {
        expect_bad_request(api.scan("t", &id, wait).await, "invalid duration").await;
    }
    broker.stop().await;
}

/// 400 invalid compression type for values netlog never defined; nothing is created.
async fn invalid_compression_type_error(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    for (i, body) in [
        json!({"compression_type": 9}),
        json!({"compression_type": 4}),
        json!({"compression_type": 15}),
        json!({"compression": "lz4"}),
    ]
    .iter()
    .enumerate()
    {
        let resp = api.post(&format!("/z{i}"), body.to_string()).await;
        expect_bad_request(resp, "invalid compression type").await;
    }
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([]));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    broker.stop().await;
}

/// 400 topic exists when a topic is created twice.
async fn topic_exists_error(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("twice").await;
    api.publish("twice", "kept").await;
    expect_exact_error(api.post_empty("/twice").await, 400, "topic exists").await;
    let resp = api.post("/twice", r#"{"segment_size":10}"#).await;
    expect_exact_error(resp, 400, "topic exists").await;
    assert_eq!(api.payload("twice", "0").await, (0, b"kept".to_vec()));
    broker.stop().await;
}

/// 404 topic not found on every route that names a topic.
async fn topic_not_found_everywhere(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    let id = uuid::Uuid::new_v4();
    let cases = [
        api.get("/ghost").await,
        api.delete("/ghost").await,
        api.delete("/ghost?force=true").await,
        api.post("/ghost/payload", "x").await,
        api.get("/ghost/payload/0").await,
        api.get("/ghost/sync").await,
        api.post_empty("/ghost/scanner?from=0").await,
        api.delete(&format!("/ghost/scanner?id={id}")).await,
        api.get(&format!("/ghost/scan?id={id}")).await,
        api.get("/ghost/check").await,
    ];
    for resp in cases {
        expect_exact_error(resp, 404, "topic not found").await;
    }
    broker.stop().await;
}

/// 404 scanner not found for an unknown scanner id on scan.
async fn scanner_not_found_error(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    api.publish("t", "x").await;
    let id = uuid::Uuid::new_v4().to_string();
    for id in [id.as_str(), "nonsense"] {
        expect_exact_error(api.scan("t", id, "5ms").await, 404, "scanner not found").await;
    }
    broker.stop().await;
}

/// 404 offset not found: a payload past the end, a scanner past the end.
async fn offset_not_found_errors(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    expect_exact_error(api.get("/t/payload/0").await, 404, "offset not found").await;
    expect_exact_error(api.get("/t/payload/latest").await, 404, "offset not found").await;
    api.publish("t", "only").await;
    for offset in ["1", "2", "99999999999"] {
        let resp = api.get(&format!("/t/payload/{offset}")).await;
        expect_exact_error(resp, 404, "offset not found").await;
    }
    for from in ["2", "3", "99999999999"] {
        let resp = api.post_empty(&format!("/t/scanner?from={from}")).await;
        expect_exact_error(resp, 404, "offset not found").await;
    }
    assert_eq!(api.info("t").await["scanners"], json!({}));
    broker.stop().await;
}

/// 413 payload too large beyond `max_body`, declared or chunked; the limit itself passes.
async fn payload_too_large_error(on: Engine) {
    let dir = data_dir();
    let config = netlog::config::Config {
        max_body: 1024,
        ..test_config(dir.path())
    };
    let Some(broker) = on.broker_with(config).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    assert_eq!(api.publish("t", vec![b'a'; 1024]).await, 0);
    let body = expect_error(
        api.post("/t/payload", vec![b'b'; 1025]).await,
        413,
        "payload too large",
    )
    .await;
    assert!(body["reason"].as_str().unwrap().contains("1024"), "{body}");

    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..4)
        .map(|_| Ok(bytes::Bytes::from(vec![b'c'; 512])))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = api.post("/t/payload", streamed).await;
    expect_error(resp, 413, "payload too large").await;

    let settings = format!(r#"{{"segment_size":1{}}}"#, " ".repeat(2000));
    expect_error(api.post("/big", settings).await, 413, "payload too large").await;
    assert_eq!(
        api.info("t").await["latest_offset"],
        0,
        "nothing else stored"
    );
    broker.stop().await;
}

/// Topic names unsafe as directory names are 400 with a reason, and nothing is created.
async fn unsafe_topic_names(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    let long = "a".repeat(256);
    for name in [
        ".hidden",
        "_reserved",
        long.as_str(),
        "a%2Fb",
        "a%2fb",
        "a%20b",
        "a%5Cb",
        "caf%C3%A9",
        "%2E%2E%2Fescape",
        "%FF",
    ] {
        let reason =
            expect_bad_request(api.post_empty(&format!("/{name}")).await, "bad request").await;
        assert!(reason.contains("topic"), "{name}: {reason}");
        expect_bad_request(api.get(&format!("/{name}")).await, "bad request").await;
        let resp = api.post(&format!("/{name}/payload"), "x").await;
        expect_bad_request(resp, "bad request").await;
    }
    // `.` and `..` as raw path segments (a URL library would resolve them).
    for name in [".", ".."] {
        for method in ["POST", "GET", "DELETE"] {
            let (status, body) = raw_request(broker.addr(), method, &format!("/{name}"));
            assert_eq!(status, 400, "{method} /{name}");
            let body: Value = serde_json::from_slice(&body).unwrap();
            check_error_body(&body, 400, "bad request");
            assert!(body["reason"].as_str().unwrap().contains("topic name"));
        }
    }
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([]));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // The longest name and every allowed character are fine.
    let longest = "b".repeat(if on.has(Aspect::LongNames) { 255 } else { 252 });
    for name in [longest.as_str(), "Az09._-", "a..b", "x_", "-dash"] {
        api.create_topic(name).await;
        api.publish(name, "ok").await;
    }
    broker.stop().await;
}

/// Unknown routes and methods answer in netlog's error shape too.
async fn unknown_routes_are_json(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    expect_error(api.get("/t/nothing/here").await, 404, "not found").await;
    let resp = api.http.put(api.url("/t")).send().await.unwrap();
    expect_error(resp, 405, "method not allowed").await;
    broker.stop().await;
}

/// One scanner shared by 32 connections hands out each of 30,000 offsets
/// exactly once, with its own bytes: the oldest ones read from disk (past
/// the tail cache's 2 MiB), the newest from the cache, and some published
/// while the scans run, so requests race across the boundary between the
/// two and into long polls at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_scanner_hands_out_each_message_once() {
    const BEFORE: u64 = 30_000;
    const DURING: u64 = 2_000;
    const CONNS: usize = 32;
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("shared").await;
    let payload = |i: u64| format!("message {i:06} {}", "x".repeat(80));
    for chunk in (0..BEFORE).collect::<Vec<_>>().chunks(1000) {
        let body: String = chunk.iter().map(|&i| payload(i) + "\n").collect();
        assert_eq!(api.publish_ndjson("shared", body).await.status(), 201);
    }
    let id = api.scanner_id("shared", "0").await;
    let published = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanners: Vec<_> = (0..CONNS)
        .map(|_| {
            let (api, id, published) = (broker.api(), id.clone(), published.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let done = published.load(std::sync::atomic::Ordering::Acquire);
                    let resp = api.scan("shared", &id, "100ms").await;
                    if resp.status() == 404 {
                        if done {
                            return got;
                        }
                        continue;
                    }
                    got.push(expect_message(resp).await);
                }
            })
        })
        .collect();
    for i in BEFORE..BEFORE + DURING {
        assert_eq!(api.publish("shared", payload(i)).await, i);
    }
    published.store(true, std::sync::atomic::Ordering::Release);
    let mut all = Vec::new();
    for s in scanners {
        all.extend(s.await.unwrap());
    }
    all.sort();
    assert_eq!(all.len() as u64, BEFORE + DURING, "each message once");
    for (i, (offset, bytes)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(bytes, payload(i as u64).as_bytes(), "offset {i}");
    }
    broker.stop().await;
}

/// With `scanner_idle_ttl = "1s"`, a scanner nobody scans is removed: its
/// id answers 404 scanner not found and it no longer holds the topic's
/// `DELETE`; a scanner scanned now and then, and a persistent one, stay.
#[tokio::test]
async fn idle_scanners_expire_and_stop_blocking_delete() {
    let dir = data_dir();
    let config = dir.path().join("ttl.toml");
    std::fs::write(
        &config,
        "[server]\nscanner_idle_ttl = \"1s\"\nmonitor_interval = \"100ms\"\n",
    )
    .unwrap();
    let netlog = spawn_netlog_with(dir.path(), &["--config", config.to_str().unwrap()]).await;
    let api = netlog.api();
    api.create_topic("ttl").await;
    api.publish("ttl", "one").await;
    let idle = api.scanner_id("ttl", "0").await;
    let busy = api.scanner_id("ttl", "0").await;
    let kept = api.scanner("ttl", "from=0&persist=true").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    // `busy` is scanned every 300 ms while `idle` expires.
    loop {
        let resp = api.scan("ttl", &busy, "0ms").await;
        assert!(matches!(resp.status().as_u16(), 200 | 404), "{resp:?}");
        let info = api.info("ttl").await;
        if info["scanners"].get(&idle).is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the idle scanner expired within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before its TTL"
    );
    expect_exact_error(
        api.scan("ttl", &idle, "0ms").await,
        404,
        "scanner not found",
    )
    .await;
    let info = api.info("ttl").await;
    assert!(
        info["scanners"].get(&busy).is_some(),
        "a used scanner stays"
    );
    assert!(
        info["scanners"].get(&kept).is_some(),
        "a persistent one stays"
    );
    // Only the two left hold the delete.
    expect_error(api.delete("/ttl").await, 409, "resource busy").await;
    for id in [&busy, &kept] {
        expect_ok_message(
            api.delete(&format!("/ttl/scanner?id={id}")).await,
            200,
            "scanner deleted",
        )
        .await;
    }
    expect_ok_message(api.delete("/ttl").await, 200, "topic deleted").await;
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a fresh connection; the raw answer with its `date` line cut.
fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut request = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    String::from_utf8_lossy(&answer)
        .split("\r\n")
        .filter(|line| !line.starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The hot routes (served by the front without the router, see
/// `src/http/hot.rs`) answer byte for byte as the router does: the same
/// requests with the topic name percent-encoded go through the router.
/// Successes and errors both, for publish, read and scan.
async fn hot_routes_answer_as_the_router_does(on: Engine) {
    let dir = data_dir();
    let Some(netlog) = on.broker(dir.path()).await else {
        return;
    };
    let api = netlog.api();
    assert_eq!(api.post_empty("/hot").await.status(), 201);
    let addr = netlog.addr();
    // `%68ot` is `hot`, percent-encoded: only the router decodes it.
    for topic in ["hot", "%68ot"] {
        let published = exchange(addr, &format!("POST /{topic}/payload HTTP/1.1"), b"hello");
        assert!(published.starts_with("HTTP/1.1 201"), "{published}");
    }
    let pairs = |topic: &str| -> Vec<(String, Vec<u8>)> {
        vec![
            (format!("POST /{topic}/payload HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/payload/0 HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/payload/1 HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/payload/99 HTTP/1.1"), Vec::new()),
            (
                format!("GET /{topic}/payload/nonsense HTTP/1.1"),
                Vec::new(),
            ),
            (format!("GET /{topic}/scan HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/scan?id=nope HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/scan?id=x&max=0 HTTP/1.1"), Vec::new()),
            (format!("GET /{topic}/scan?id=%ZZ HTTP/1.1"), Vec::new()),
            (format!("POST /{topic}x/payload HTTP/1.1"), b"x".to_vec()),
        ]
    };
    for ((hot, body), (routed, _)) in pairs("hot").into_iter().zip(pairs("%68ot")) {
        let a = exchange(addr, &hot, &body);
        let b = exchange(addr, &routed, &body);
        assert_eq!(a, b, "{hot} and {routed} answer differently");
    }
    // A scanner's messages, one at a time, by both paths alternately.
    let created = exchange(addr, "POST /hot/scanner?from=0 HTTP/1.1", b"");
    let id = created
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a scanner id")
        .to_string();
    let first = exchange(addr, &format!("GET /hot/scan?id={id} HTTP/1.1"), b"");
    let second = exchange(addr, &format!("GET /%68ot/scan?id={id} HTTP/1.1"), b"");
    assert!(first.contains("x-offset: 0"), "{first}");
    assert!(second.contains("x-offset: 1"), "{second}");
    assert_eq!(
        first.replace("x-offset: 0", "x-offset: 1"),
        second,
        "a scan answers the same by either path"
    );
}

// The tests above that run on both engines (see `common/engines.rs`).
crate::on_both_engines!(
    creates_topic_with_every_setting,
    compression_types_zero_to_three,
    check_healthy,
    invalid_compression_type_error,
    payload_too_large_error,
    lists_topics,
    creates_topic_with_defaults,
    topic_info_of_unknown_topic,
    deletes_topic,
    delete_with_scanners_needs_force,
    payload_write_and_read,
    syncs_topic,
    scanner_from_forms,
    scanner_persist_flags,
    scanner_delete,
    scan_with_wait,
    bad_request_errors,
    invalid_offset_errors,
    invalid_duration_error,
    topic_exists_error,
    topic_not_found_everywhere,
    scanner_not_found_error,
    offset_not_found_errors,
    unsafe_topic_names,
    unknown_routes_are_json,
    hot_routes_answer_as_the_router_does,
);
