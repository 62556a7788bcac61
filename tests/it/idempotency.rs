//! Idempotent publish (`Idempotency-Key`): replay, conflicts, failed first
//! tries, crashes, the window and the cap, over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Api, Aspect, Engine, Launch, config_with, data_dir, declare, expect_error, expect_json, metric,
};

async fn post_key(api: &Api, path: &str, key: &str, body: &'static str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(api.url(path))
        .header("Idempotency-Key", key)
        .body(body);
    if path.ends_with("/messages") {
        req = req.header("content-type", "application/x-ndjson");
    }
    req.send().await.expect("POST")
}

async fn latest(api: &Api, topic: &str) -> i64 {
    api.info(topic).await["latest_offset"].as_i64().unwrap()
}

/// A sequential retry replays the original answer with `"duplicate":true`
/// and `Idempotent-Replayed: true`, writing nothing; other messages under
/// the same key are `422 idempotency key reused` naming the first offset;
/// ndjson and binary forms of the same messages are the same request.
async fn sequential_duplicates_and_reuse(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("t").await;
    api.publish("t", "before").await;
    let r = post_key(&api, "/t/payload", "k1", "hello").await;
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(expect_json(r, 201).await, json!({"offset": 1}));
    let r = post_key(&api, "/t/payload", "k1", "hello").await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(
        expect_json(r, 201).await,
        json!({"offset": 1, "duplicate": true})
    );
    let r = post_key(&api, "/t/payload", "k1", "other").await;
    let body = expect_error(r, 422, "idempotency key reused").await;
    assert!(
        body["reason"].as_str().unwrap().contains("offset 1"),
        "{body}"
    );

    let r = post_key(&api, "/t/messages", "b", "a\nb\n").await;
    assert_eq!(
        expect_json(r, 201).await,
        json!({"first_offset": 2, "count": 2})
    );
    let mut frames = Vec::new();
    netlog::message::encode(&mut frames, 0, b"a");
    netlog::message::encode(&mut frames, 0, b"b");
    let r = reqwest::Client::new()
        .post(api.url("/t/messages"))
        .header("Idempotency-Key", "b")
        .body(frames)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_json(r, 201).await,
        json!({"first_offset": 2, "count": 2, "duplicate": true})
    );
    assert_eq!(latest(&api, "t").await, 3);
    // The message reads back as published; the key is in the same entry.
    let r = api.get("/t/payload/1").await;
    assert_eq!(&r.bytes().await.unwrap()[..], b"hello");
    for bad in ["", "a b", &"k".repeat(256)] {
        let r = reqwest::Client::new()
            .post(api.url("/t/payload"))
            .header("Idempotency-Key", bad)
            .body("x")
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "bad request").await;
    }
    assert_eq!(latest(&api, "t").await, 3);
    if !on.has(Aspect::DedupTable) {
        broker.stop().await;
        return;
    }
    let t = [("topic", "t")];
    assert_eq!(metric(&api, "netlog_dedup_hits_total", &t).await, Some(2.0));
    assert_eq!(metric(&api, "netlog_dedup_keys", &t).await, Some(2.0));
    let payload = [("topic", "t"), ("kind", "payload")];
    let conflicts = metric(&api, "netlog_dedup_conflicts_total", &payload).await;
    assert_eq!(conflicts, Some(1.0));
    broker.stop().await;
}

/// Concurrent requests with one key: exactly one is written (one 201
/// without `duplicate`), the others replay it or get `409 idempotency key
/// in use`.
async fn concurrent_duplicates_write_once(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic("c").await;
    let tries = (0..16).map(|_| post_key(&api, "/c/payload", "same", "once"));
    let answers = futures_util::future::join_all(tries).await;
    let (mut written, mut replayed, mut busy) = (0, 0, 0);
    for r in answers {
        match r.status().as_u16() {
            201 => {
                let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                assert_eq!(body["offset"], 0);
                if body.get("duplicate").is_some() {
                    replayed += 1;
                } else {
                    written += 1;
                }
            }
            409 => {
                expect_error(r, 409, "idempotency key in use").await;
                busy += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(written, 1, "replayed {replayed}, busy {busy}");
    assert_eq!(latest(&api, "c").await, 0);
    broker.stop().await;
}

/// A key whose first try failed validation (422) is free: the retry with
/// valid messages is written.
async fn a_failed_first_try_leaves_the_key_free(on: Engine) {
    let dir = data_dir();
    let config = config_with(dir.path(), vec![declare("json", "json_validator.wasm")]);
    let Some(broker) = on.broker_with(config).await else {
        return;
    };
    let api = broker.api();
    let hook = json!({"validation": {"plugin": "json", "config": {"required": ["id"]}}});
    api.create_topic_with("v", &hook).await;
    let r = post_key(&api, "/v/payload", "k", r#"{"no_id":1}"#).await;
    expect_error(r, 422, "rejected by validator").await;
    let r = post_key(&api, "/v/payload", "k", r#"{"id":1}"#).await;
    assert_eq!(expect_json(r, 201).await, json!({"offset": 0}));
    broker.stop().await;
}

/// kill -9 after the append is durable, before the client saw the answer
/// it would retry on: the restarted broker rebuilds the key from the log,
/// and the retry is a duplicate with the original offset; nothing is
/// written twice.
#[tokio::test]
async fn a_retry_after_kill_9_is_a_duplicate() {
    let dir = data_dir();
    let mut netlog = Launch::new().dir(dir.path()).start().await;
    let api = netlog.api();
    api.create_topic("k").await;
    api.publish("k", "zero").await;
    let r = post_key(&api, "/k/payload", "crash", "one").await;
    assert_eq!(expect_json(r, 201).await, json!({"offset": 1}));
    let r = post_key(&api, "/k/messages", "crash-batch", "x\ny\n").await;
    expect_json(r, 201).await;
    netlog.kill();
    let netlog = Launch::new().dir(dir.path()).start().await;
    let api = netlog.api();
    let r = post_key(&api, "/k/payload", "crash", "one").await;
    assert_eq!(
        expect_json(r, 201).await,
        json!({"offset": 1, "duplicate": true})
    );
    let r = post_key(&api, "/k/messages", "crash-batch", "x\ny\n").await;
    assert_eq!(
        expect_json(r, 201).await,
        json!({"first_offset": 2, "count": 2, "duplicate": true})
    );
    assert_eq!(latest(&api, "k").await, 3);
}

/// Window edges: a retry within `dedup_window` replays; after it, the key
/// is free and the retry is a new write.
async fn the_window_ends(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    api.create_topic_with("w", &json!({"dedup_window": "1s"}))
        .await;
    let r = post_key(&api, "/w/payload", "k", "m").await;
    assert_eq!(expect_json(r, 201).await, json!({"offset": 0}));
    let r = post_key(&api, "/w/payload", "k", "m").await;
    assert_eq!(expect_json(r, 201).await["duplicate"], true);
    // The window is time itself: nothing to wait for but the clock (and,
    // on JetStream, the server's timer that forgets ids past the window: a
    // retry it still finds is a duplicate and writes nothing, so asking
    // again is harmless).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = expect_json(post_key(&api, "/w/payload", "k", "m").await, 201).await;
        if answer.get("duplicate").is_none() || std::time::Instant::now() > deadline {
            assert_eq!(answer, json!({"offset": 1}));
            break;
        }
        assert!(!on.has(Aspect::DedupTable), "a replay after the window");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for bad in ["999ms", "8day"] {
        let r = api
            .post("/bad", json!({"dedup_window": bad}).to_string())
            .await;
        expect_error(r, 400, "bad request").await;
    }
    broker.stop().await;
}

/// At `dedup_max_keys` the soonest-expiring key is evicted: its retry is a
/// new write, the newer keys still replay.
async fn eviction_at_the_cap(on: Engine) {
    let dir = data_dir();
    let Some(broker) = on.broker(dir.path()).await else {
        return;
    };
    let api = broker.api();
    if !on.has(Aspect::DedupTable) {
        return;
    }
    api.create_topic_with("e", &json!({"dedup_max_keys": 2}))
        .await;
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        let r = post_key(&api, "/e/payload", key, "m").await;
        assert_eq!(expect_json(r, 201).await, json!({"offset": i}));
    }
    let r = post_key(&api, "/e/payload", "c", "m").await;
    assert_eq!(expect_json(r, 201).await["duplicate"], true);
    let r = post_key(&api, "/e/payload", "a", "m").await;
    assert_eq!(expect_json(r, 201).await, json!({"offset": 3}));
    broker.stop().await;
}

crate::on_both_engines!(
    sequential_duplicates_and_reuse,
    concurrent_duplicates_write_once,
    a_failed_first_try_leaves_the_key_free,
    the_window_ends,
    eviction_at_the_cap,
);
