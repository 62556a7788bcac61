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
