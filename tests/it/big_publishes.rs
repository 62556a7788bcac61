//! Group commit under huge publishes: every acknowledged message sits in an
//! entry the reader and recovery accept, live and after SIGKILL.

use std::time::Duration;

use crate::common::*;

/// Bytes of each publish: 64 MiB, the default `max_body`.
const BIG: usize = 64 << 20;
/// Concurrent publishers.
const PUBLISHERS: usize = 24;

fn payload(i: usize) -> Vec<u8> {
    // Distinct, position-dependent bytes, so a mix-up cannot pass.
    (0..BIG)
        .map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(i as u32) as u8)
        .collect()
}

/// 24 concurrent 64 MiB publishes with `fsync = always`: every acknowledged
/// one reads back intact, also after SIGKILL and a restart, and `check` is
/// healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_64mib_publishes_read_back_after_sigkill() {
    let dir = data_dir();
    // Room for every body at once: this pins group commit, not the budget.
    let config = dir.path().join("big.toml");
    std::fs::write(
        &config,
        "[server]\nfsync = \"always\"\nbody_budget = \"2GiB\"\nbody_budget_wait = \"120s\"\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut netlog = spawn_netlog_with(dir.path(), &args).await;
    // 1.5 GiB through fsync = always on a shared 2-core machine: patience.
    let slow = |base: String| {
        let http = client_builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        Api::with_client(&base, http)
    };
    let api = slow(netlog.base_url());
    api.create_topic("big").await;
    // Every body is built before any request starts, off the async
    // workers: building 64 MiB there (slow in a debug build) stalled the
    // uploads already under way, on a busy machine past the broker's header
    // timeout, which closed them.
    let bodies = futures_util::future::join_all(
        (0..PUBLISHERS).map(|i| tokio::task::spawn_blocking(move || payload(i))),
    )
    .await;
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let api = api.clone();
            let body = body.expect("build a body");
            tokio::spawn(async move {
                let resp = api.post("/big/payload", body).await;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap();
                (i, status, body)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        match status {
            201 => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                acked.push((v["offset"].as_u64().unwrap(), i));
            }
            // Refused publishes (a memory budget) are fine; wrong ones are not.
            503 => {}
            other => panic!(
                "publish {i} answered {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    assert_eq!(acked.len(), PUBLISHERS, "every publish is acknowledged");
    let check = |api: Api, acked: Vec<(u64, usize)>| async move {
        for (offset, i) in acked {
            let (at, bytes) = api.payload("big", &offset.to_string()).await;
            assert_eq!(at, offset);
            assert!(
                bytes == payload(i),
                "offset {offset} holds publish {i} intact"
            );
        }
        assert_eq!(
            expect_json(api.get("/big/check").await, 200).await["message"],
            "topic healthy"
        );
    };
    check(api.clone(), acked.clone()).await;
    netlog.kill();
    let netlog = spawn_netlog_with(dir.path(), &args).await;
    check(slow(netlog.base_url()), acked.clone()).await;
    // Offsets go on after the last acknowledged one.
    let next = netlog.api().publish("big", "after").await;
    assert_eq!(next, acked.iter().map(|(o, _)| o + 1).max().unwrap());
}
