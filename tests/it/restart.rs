//! Restarts: what a graceful stop, a SIGKILL and a SIGTERM leave behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// Producers running at once in the crash tests.
const PRODUCERS: usize = 8;
/// Messages each producer sends at most (2,000 in all).
const PER_PRODUCER: usize = 250;

/// Every message acknowledged so far: (offset, payload).
type Acked = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A graceful restart keeps topics, settings, messages and persistent scanners only.
#[tokio::test]
async fn graceful_restart_keeps_state() {
    let dir = data_dir();
    let settings = json!({
        "segment_age": "3day",
        "segment_size": 65536,
        "batch_num_messages": 5,
        "batch_interval": "50ms",
        "compression_type": 2,
    });
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic_with("kept", &settings).await;
    api.create_topic("other").await;
    for i in 0..5 {
        api.publish("kept", format!("m{i}")).await;
    }
    api.publish("other", "o").await;
    let persistent = api.scanner("kept", "from=0&persist=yes").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let transient = api.scanner_id("kept", "0").await;
    for i in 0..2u64 {
        let want = format!("m{i}").into_bytes();
        assert_eq!(api.scan_one("kept", &persistent).await, (i, want));
    }
    api.scan_one("kept", &transient).await;
    broker.stop().await;

    let broker = spawn_broker(dir.path());
    let api = broker.api();
    assert_eq!(
        expect_json(api.get("/").await, 200).await,
        json!(["kept", "other"])
    );
    let info = api.info("kept").await;
    assert_eq!(info["settings"], settings);
    assert_eq!(info["latest_offset"], 4);
    let scanners = info["scanners"].as_object().unwrap();
    assert_eq!(scanners.len(), 1, "only the persistent scanner: {info}");
    assert_eq!(scanners[&persistent]["next"], 2);
    assert_eq!(scanners[&persistent]["persistent"], true);
    for i in 0..5u64 {
        let want = format!("m{i}").into_bytes();
        assert_eq!(api.payload("kept", &i.to_string()).await, (i, want));
    }
    assert_eq!(api.payload("other", "0").await, (0, b"o".to_vec()));
    let resp = api.scan("kept", &transient, "5ms").await;
    expect_exact_error(resp, 404, "scanner not found").await;
    for i in 2..5u64 {
        let want = format!("m{i}").into_bytes();
        assert_eq!(api.scan_one("kept", &persistent).await, (i, want));
    }
    let resp = api.scan("kept", &persistent, "5ms").await;
    expect_exact_error(resp, 404, "end of topic").await;
    broker.stop().await;

    // Having read everything, the scanner resumes with the next new message.
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let resp = api.scan("kept", &persistent, "5ms").await;
    expect_exact_error(resp, 404, "end of topic").await;
    assert_eq!(api.publish("kept", "m5").await, 5);
    assert_eq!(api.scan_one("kept", &persistent).await, (5, b"m5".to_vec()));
    broker.stop().await;
}

/// A deterministic payload of 1 to 300 bytes, every byte value possible.
fn payload(producer: usize, i: usize) -> Vec<u8> {
    let mut x = (producer as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64 + 1);
    let len = 1 + (x % 300) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `PRODUCERS` producers on `topic`, each publishing up to
/// `PER_PRODUCER` messages and stopping at the first failure. Every 201
/// is recorded in `acked` and counted in `count`.
fn spawn_producers(
    api: &Api,
    topic: &str,
    acked: &Acked,
    count: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..PRODUCERS)
        .map(|p| {
            let (api, acked, count) = (api.clone(), acked.clone(), count.clone());
            let url = api.url(&format!("/{topic}/payload"));
            tokio::spawn(async move {
                for i in 0..PER_PRODUCER {
                    let body = payload(p, i);
                    let Ok(resp) = api.http.post(&url).body(body.clone()).send().await else {
                        return;
                    };
                    if resp.status() != 201 {
                        return;
                    }
                    let Ok(answer) = resp.bytes().await else {
                        return;
                    };
                    let answer: serde_json::Value =
                        serde_json::from_slice(&answer).expect("JSON in a 201");
                    let offset = answer["offset"].as_u64().expect("offset in a 201");
                    acked.lock().unwrap().push((offset, body));
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect()
}

/// Waits until `count` reaches `n` (bounded).
async fn wait_for_count(count: &AtomicUsize, n: usize) {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        while count.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("producers make progress");
}

/// Asserts every acknowledged message is readable at its offset with the
/// same bytes, and that no offset was acknowledged twice.
async fn assert_all_readable(api: &Api, topic: &str, acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    let offsets: HashSet<u64> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets.len(), acked.len(), "offsets are unique");
    let latest = api.info(topic).await["latest_offset"].as_i64().unwrap();
    let max = acked.iter().map(|(o, _)| *o as i64).max().unwrap();
    assert!(latest >= max, "latest offset {latest} covers {max}");
    for (offset, body) in &acked {
        let got = api.payload(topic, &offset.to_string()).await;
        assert_eq!(got, (*offset, body.clone()), "message at {offset}");
    }
}

/// After a SIGKILL mid-publish every acknowledged message is readable, byte for byte.
#[tokio::test]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("crash").await;
    let acked = Acked::default();
    let count = Arc::new(AtomicUsize::new(0));
    let producers = spawn_producers(&api, "crash", &acked, &count);
    wait_for_count(&count, 600).await;
    netlog.kill();
    let at_kill = count.load(Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    assert!(
        at_kill < PRODUCERS * PER_PRODUCER,
        "killed mid-stream ({at_kill} acknowledged)"
    );

    let netlog = spawn_netlog(dir.path()).await;
    assert_all_readable(&netlog.api(), "crash", &acked).await;
}

/// SIGTERM mid-publish answers a long poll, exits 0 and keeps all acknowledged state.
#[tokio::test]
async fn sigterm_stops_cleanly() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("term").await;
    api.create_topic("idle").await;
    let idle = api.scanner_id("idle", "0").await;
    let long_poll = {
        let api = api.clone();
        tokio::spawn(async move { api.scan("idle", &idle, "1h").await })
    };
    let seed: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(api.publish("term", format!("seed-{i}")).await);
        }
        v
    };
    assert_eq!(seed, [0, 1, 2]);
    let reader = api.scanner("term", "from=0&persist=1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..2u64 {
        let want = format!("seed-{i}").into_bytes();
        assert_eq!(api.scan_one("term", &reader).await, (i, want));
    }

    let acked = Acked::default();
    let count = Arc::new(AtomicUsize::new(0));
    let producers = spawn_producers(&api, "term", &acked, &count);
    wait_for_count(&count, 300).await;
    netlog.terminate().await;
    for p in producers {
        p.await.unwrap();
    }
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, long_poll)
        .await
        .expect("the long poll is answered at shutdown")
        .unwrap();
    // Woken by shutdown, not by the end of the topic: 503 (issue 12).
    expect_exact_error(resp, 503, "shutting down").await;

    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    assert_all_readable(&api, "term", &acked).await;
    assert_eq!(api.scan_one("term", &reader).await, (2, b"seed-2".to_vec()));
}
