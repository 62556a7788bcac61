//! The JetStream engine against a real 3-node nats-server cluster on
//! loopback (`common::NatsCluster`): two netlog front ends over one
//! cluster, and what a client sees when the stream leader dies.
//!
//! Each test starts its own cluster and front ends and keeps its loops
//! bounded: the whole module runs in well under a minute here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// A front end on `cluster`, its data directory (plugin cache only) in
/// `dir`.
async fn front_end(cluster: &NatsCluster, dir: &Path, publish_timeout: &str) -> NetlogProcess {
    front_end_with(cluster, dir, publish_timeout, "").await
}

/// [`front_end`] with `extra` lines in its `[engine.jetstream]` table.
async fn front_end_with(
    cluster: &NatsCluster,
    dir: &Path,
    publish_timeout: &str,
    extra: &str,
) -> NetlogProcess {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("netlog.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n{}{extra}",
            dir.join("data").display().to_string(),
            cluster.engine_toml(publish_timeout)
        ),
    )
    .unwrap();
    let mut launch = Launch::new().arg("--config").arg(&config);
    if let Some(logs) = std::env::var_os("NETLOG_JS_LOGS") {
        // `<test dir>-<front end>.log`: tests run in parallel.
        let name = dir.to_string_lossy().replace('/', "_");
        launch = launch.log_to(&Path::new(&logs).join(format!("{name}.log")));
    }
    launch.start().await
}

/// A cluster and two front ends on it, or `None` (skipped) without a
/// nats-server binary.
async fn two_front_ends(
    publish_timeout: &str,
) -> Option<(NatsCluster, NetlogProcess, NetlogProcess, tempfile::TempDir)> {
    let Some(cluster) = NatsCluster::start(3).await else {
        skip("no nats-server binary: run ./test.sh, or set NETLOG_NATS_SERVER");
        return None;
    };
    let dir = data_dir();
    let a = front_end(&cluster, &dir.path().join("a"), publish_timeout).await;
    let b = front_end(&cluster, &dir.path().join("b"), publish_timeout).await;
    Some((cluster, a, b, dir))
}

/// Scans `id` on `api` in batches of up to `max` until end of topic,
/// starting when every drainer sharing `start` is ready; returns the
/// offsets handed out.
async fn drain(
    api: Api,
    topic: String,
    id: String,
    max: usize,
    start: Arc<tokio::sync::Barrier>,
) -> Vec<u64> {
    let mut got = Vec::new();
    start.wait().await;
    loop {
        let resp = api.get(&format!("/{topic}/scan?id={id}&max={max}")).await;
        if resp.status() == 404 {
            return got;
        }
        if resp.status() != 200 {
            panic!(
                "scan answered {}: {}",
                resp.status(),
                resp.text().await.unwrap()
            );
        }
        let first: u64 = resp.headers()["x-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let count: u64 = resp.headers()["x-count"].to_str().unwrap().parse().unwrap();
        got.extend(first..first + count);
    }
}

/// Two front ends on one cluster serve the same topics: a 201 on A is
/// readable on B at once, a long poll on B is woken by a publish on A, and
/// one scanner scanned from both hands out each of 10,000 offsets once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_front_ends_serve_the_same_topics() {
    let Some((_cluster, a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("orders.eu-1").await;
    // Known on B without a restart.
    expect_json(b.get("/orders.eu-1").await, 200).await;

    for i in 0..20u64 {
        let offset = a.publish("orders.eu-1", format!("m{i}")).await;
        assert_eq!(offset, i);
        let (at, bytes) = b.payload("orders.eu-1", &offset.to_string()).await;
        assert_eq!((at, bytes), (i, format!("m{i}").into_bytes()));
    }
    expect_error(
        b.get("/orders.eu-1/payload/20").await,
        404,
        "offset not found",
    )
    .await;

    // A topic deleted on A is gone on B at once, for reads and publishes.
    a.create_topic("brief").await;
    b.publish("brief", "x").await;
    expect_ok_message(a.delete("/brief").await, 200, "topic deleted").await;
    expect_exact_error(b.post("/brief/payload", "y").await, 404, "topic not found").await;
    expect_exact_error(b.get("/brief").await, 404, "topic not found").await;
    // Made again on A: B serves the new one, from offset 0.
    a.create_topic("brief").await;
    assert_eq!(b.publish("brief", "again").await, 0);

    // A long poll on B, woken by a publish on A (well before its wait).
    let id = b.scanner_id("orders.eu-1", "end").await;
    let poll = tokio::spawn({
        let (b, id) = (b.clone(), id.clone());
        async move {
            let started = Instant::now();
            let resp = b.scan("orders.eu-1", &id, "20s").await;
            (
                resp.status().as_u16(),
                resp.bytes().await.unwrap(),
                started.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.publish("orders.eu-1", "wake").await;
    let (status, body, took) = poll.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"wake"[..]));
    assert!(
        took < Duration::from_secs(10),
        "long poll woken after {took:?}"
    );

    // 10,000 messages, one scanner scanned from both front ends at once.
    a.create_topic("many").await;
    for batch in 0..10u64 {
        let body: String = (0..1000u64)
            .map(|i| format!("{}\n", batch * 1000 + i))
            .collect();
        let resp = a.publish_ndjson("many", body).await;
        let v = expect_json(resp, 201).await;
        assert_eq!(v["first_offset"], batch * 1000);
    }
    let id = a.scanner_id("many", "oldest").await;
    // Both start together, in batches small enough that neither can take
    // all 10,000 before the other's first scan (which the full suite, on 2
    // cores, once showed with batches of 250 and no common start).
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let from_a = tokio::spawn(drain(
        a.clone(),
        "many".into(),
        id.clone(),
        100,
        start.clone(),
    ));
    let from_b = tokio::spawn(drain(b.clone(), "many".into(), id.clone(), 100, start));
    let (from_a, from_b) = (from_a.await.unwrap(), from_b.await.unwrap());
    let mut seen = HashSet::new();
    for o in from_a.iter().chain(&from_b) {
        assert!(seen.insert(*o), "offset {o} handed out twice");
    }
    assert_eq!(seen.len(), 10_000, "every offset handed out");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both front ends scanned"
    );
}

/// A server the engine cannot use (here: JetStream off) stops start-up
/// with an error naming the server's version, before anything listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_usable_jetstream_is_refused_at_start() {
    let Some(server) = NatsCluster::start_without_jetstream().await else {
        skip("no nats-server binary: run ./test.sh, or set NETLOG_NATS_SERVER");
        return;
    };
    let dir = data_dir();
    let config = dir.path().join("netlog.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n{}",
            dir.path().join("data").display().to_string(),
            server
                .engine_toml("1s")
                .replace("replicas = 1", "replicas = 1\nrequest_timeout = \"500ms\"")
        ),
    )
    .unwrap();
    let done =
        tokio::task::spawn_blocking(move || run_netlog(["--config", config.to_str().unwrap()]))
            .await
            .unwrap();
    assert!(
        !done.status.success(),
        "started against a server without JetStream"
    );
    let out = format!("{}{}", done.stdout, done.stderr);
    assert!(out.contains("nats-server 2.15.1"), "{out}");
}

/// `/_ready` says whether the engine is connected and answers: 503 while
/// its only server is down, 200 again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_engine() {
    let Some(mut server) = NatsCluster::start(1).await else {
        skip("no nats-server binary: run ./test.sh, or set NETLOG_NATS_SERVER");
        return;
    };
    let dir = data_dir();
    let netlog = front_end(&server, dir.path(), "2s").await;
    let api = netlog.api();
    expect_ok_message(api.get("/_ready").await, 200, "ready").await;
    server.kill(0);
    eventually("/_ready at 503", Duration::from_secs(20), || async {
        (api.get("/_ready").await.status() == 503).then_some(())
    })
    .await;
    server.restart(0).await;
    eventually("/_ready at 200 again", Duration::from_secs(30), || async {
        (api.get("/_ready").await.status() == 200).then_some(())
    })
    .await;
}

/// The engine's limits answer 413 before anything is sent: a batch over
/// 1,000 messages, a message over the servers' max_payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_limits_are_413() {
    let Some((_cluster, a, _b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let a = a.api();
    a.create_topic("limits").await;
    let body: String = (0..1001).map(|i| format!("{i}\n")).collect();
    let v = expect_error(
        a.publish_ndjson("limits", body).await,
        413,
        "payload too large",
    )
    .await;
    assert!(v["reason"].as_str().unwrap().contains("1000"), "{v}");
    let big = vec![b'x'; 2 << 20];
    expect_error(
        a.post("/limits/payload", big).await,
        413,
        "payload too large",
    )
    .await;
    // Nothing was stored.
    let info: Value = a.info("limits").await;
    assert_eq!(info["latest_offset"], -1, "{info}");
}

/// Which node a failover test kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The topic's stream leader.
    StreamLeader,
    /// A follower of the topic's stream.
    StreamFollower,
    /// The leader of the scanner cursors' KV stream.
    CursorLeader,
}

/// The leader and replicas of `stream`, as the cluster says.
async fn placement(urls: &[String], stream: &str) -> (String, Vec<String>) {
    let servers: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(servers)
        .await
        .expect("connect to the cluster");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && let Some(c) = &info.cluster
            && let Some(leader) = &c.leader
        {
            let replicas = c.replicas.iter().map(|r| r.name.clone()).collect();
            return (leader.clone(), replicas);
        }
        assert!(Instant::now() < deadline, "no leader for {stream}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(messages, first_seq, last_seq)` of `stream` on each node, from the
/// monitoring endpoint.
async fn replica_states(cluster: &NatsCluster, stream: &str) -> Vec<Option<(u64, u64, u64)>> {
    let mut out = Vec::new();
    for i in 0..3 {
        let url = format!("{}/jsz?streams=true", cluster.monitor_url(i));
        let v: Option<Value> = match reqwest::get(&url).await {
            Ok(r) => serde_json::from_slice(&r.bytes().await.unwrap_or_default()).ok(),
            Err(_) => None,
        };
        let state = v.and_then(|v| {
            v["account_details"].as_array()?.iter().find_map(|a| {
                a["stream_detail"].as_array()?.iter().find_map(|s| {
                    (s["name"] == stream).then(|| {
                        let st = &s["state"];
                        (
                            st["messages"].as_u64().unwrap_or(0),
                            st["first_seq"].as_u64().unwrap_or(0),
                            st["last_seq"].as_u64().unwrap_or(0),
                        )
                    })
                })
            })
        });
        out.push(state);
    }
    out
}

/// Publishes `<task>-<i>` on `api` until `stop`; the acknowledged
/// `(payload, offset)` pairs and the count of `stored: unknown` answers.
async fn publisher(
    api: Api,
    task: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (Vec<(String, u64)>, usize) {
    use std::sync::atomic::Ordering;
    let (mut ok, mut unknown) = (Vec::new(), 0);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let payload = format!("{task}-{i}");
        i += 1;
        let resp = api.post("/load/payload", payload.clone()).await;
        match resp.status().as_u16() {
            201 => {
                let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                ok.push((payload, v["offset"].as_u64().unwrap()));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            503 => {
                let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                assert_eq!(v["stored"], "unknown", "{v}");
                unknown += 1;
            }
            s => panic!("publish answered {s}: {}", resp.text().await.unwrap()),
        }
    }
    (ok, unknown)
}

/// Scans `id` on `api` until `stop` and the topic is drained; the offsets
/// handed out and the count of 503 answers.
async fn scanner_task(
    api: Api,
    id: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<u64>, usize) {
    use std::sync::atomic::Ordering;
    let (mut got, mut unavailable) = (Vec::new(), 0);
    loop {
        let resp = api
            .get(&format!("/load/scan?id={id}&max=100&wait=200ms"))
            .await;
        match resp.status().as_u16() {
            200 => {
                let first: u64 = resp.headers()["x-offset"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let count: u64 = resp.headers()["x-count"].to_str().unwrap().parse().unwrap();
                got.extend(first..first + count);
            }
            404 if stop.load(Ordering::Relaxed) => return (got, unavailable),
            404 => {}
            503 => unavailable += 1,
            s => panic!("scan answered {s}: {}", resp.text().await.unwrap()),
        }
    }
}

/// Under load through two front ends, SIGKILL one node (`victim`) and
/// restart it: every 201's offset reads back its bytes, no payload is
/// stored twice, the replicas agree, no offset is scanned twice; the
/// `stored: unknown` answers and how long writes stopped are reported.
/// A scanner of `topic` from its oldest offset. The first one creates the
/// scanners' R3 bucket, whose leader a freshly started cluster may still be
/// electing (seen under the full suite's load): that `503 engine
/// unavailable` is the broker's right answer, and a client retries it.
async fn scanner_once_ready(api: &Api, topic: &str) -> String {
    eventually("the scanners' bucket", Duration::from_secs(60), || async {
        let resp = api
            .post_empty(&format!("/{topic}/scanner?from=oldest"))
            .await;
        if resp.status() == 503 {
            return None;
        }
        let body = expect_json(resp, 201).await;
        Some(body["id"].as_str().expect("id").to_string())
    })
    .await
}

async fn failover(victim: Victim) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some((mut cluster, a, b, _dir)) = two_front_ends("20s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("load").await;
    let scan_id = scanner_once_ready(&a, "load").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..4)
        .map(|t| {
            let api = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(publisher(api, t, stop.clone(), acked.clone()))
        })
        .collect();
    let scanners: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|api| tokio::spawn(scanner_task(api, scan_id.clone(), stop.clone())))
        .collect();
    eventually(
        "200 publishes before the kill",
        Duration::from_secs(30),
        || async { (acked.load(Ordering::Relaxed) >= 200).then_some(()) },
    )
    .await;
    let stream = match victim {
        Victim::CursorLeader => "KV_nl_scanners_idle",
        _ => "nl_load",
    };
    let (leader, replicas) = placement(&cluster.urls(), stream).await;
    let name = match victim {
        Victim::StreamFollower => replicas[0].clone(),
        _ => leader,
    };
    let node = cluster.index_of(&name).expect("a node of the cluster");
    let before = acked.load(Ordering::Relaxed);
    let killed = Instant::now();
    cluster.kill(node);
    // How long until publishes are acknowledged again.
    let mut resumed = None;
    let deadline = killed + Duration::from_secs(30);
    while Instant::now() < deadline {
        if acked.load(Ordering::Relaxed) >= before + 50 {
            resumed = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart(node).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acks, mut unknown) = (Vec::new(), 0);
    for p in publishers {
        let (ok, u) = p.await.unwrap();
        acks.extend(ok);
        unknown += u;
    }
    let (mut scanned, mut scan_503) = (Vec::new(), 0);
    for s in scanners {
        let (got, u) = s.await.unwrap();
        scanned.extend(got);
        scan_503 += u;
    }
    eprintln!(
        "failover {victim:?}: killed {name}; {} publishes acknowledged, {unknown} answered \
         stored: unknown; publishes acknowledged again after {resumed:?}; {} offsets scanned, \
         {scan_503} scans answered 503",
        acks.len(),
        scanned.len()
    );
    assert!(
        resumed.is_some(),
        "publishes never resumed after killing {name}"
    );
    // Every 201's offset reads back its bytes, through either front end.
    for (i, (payload, offset)) in acks.iter().enumerate() {
        let api = if i % 2 == 0 { &a } else { &b };
        let (at, bytes) = api.payload("load", &offset.to_string()).await;
        assert_eq!((at, bytes), (*offset, payload.clone().into_bytes()));
    }
    // Nothing stored twice: every stored payload once.
    let all = b.scanner_id("load", "oldest").await;
    let mut stored = HashSet::new();
    let mut count = 0usize;
    loop {
        let resp = b.get(&format!("/load/scan?id={all}&max=1000")).await;
        if resp.status() == 404 {
            break;
        }
        let body = resp.bytes().await.unwrap();
        // Octet-stream framing: offset u64, then compver, crc, length, payload.
        let mut at = 0;
        while at < body.len() {
            let len = u32::from_be_bytes(body[at + 13..at + 17].try_into().unwrap()) as usize;
            let payload = body[at + 17..at + 17 + len].to_vec();
            assert!(
                stored.insert(payload.clone()),
                "stored twice: {:?}",
                String::from_utf8_lossy(&payload)
            );
            count += 1;
            at += 17 + len;
        }
    }
    assert!(
        count >= acks.len(),
        "{count} stored, {} acknowledged",
        acks.len()
    );
    // No offset handed out twice by the shared scanner.
    let unique: HashSet<u64> = scanned.iter().copied().collect();
    assert_eq!(unique.len(), scanned.len(), "an offset was scanned twice");
    // The replicas agree once the restarted node caught up.
    eventually("the replicas to agree", Duration::from_secs(30), || async {
        let states = replica_states(&cluster, "nl_load").await;
        let first = states[0]?;
        states.iter().all(|s| *s == Some(first)).then_some(())
    })
    .await;
}

/// SIGKILL of the stream leader under load, then its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_leader_killed_under_load() {
    failover(Victim::StreamLeader).await;
}

/// SIGKILL of a stream follower under load, then its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_follower_killed_under_load() {
    failover(Victim::StreamFollower).await;
}

/// SIGKILL of the scanners' KV leader under load, then its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_leader_killed_under_load() {
    failover(Victim::CursorLeader).await;
}

/// A retention plugin purges through the ledger of virtual segments: it
/// rolls, then deletes the oldest segment; offsets do not move, a read
/// before the oldest is 404, and a scanner behind the purge continues at
/// the oldest offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_plugin_purges_through_the_ledger() {
    let dir = data_dir();
    let config = config_with(dir.path(), vec![declare("all", "delete_everything.wasm")]);
    let Some(broker) = Engine::JetStream.broker_with(config).await else {
        return;
    };
    let api = broker.api();
    let settings = serde_json::json!({
        "retention": {"plugin": "all"},
        "min_segment_bytes": 1,
        "min_segment_age": "1s",
    });
    api.create_topic_with("kept", &settings).await;
    let behind = api.scanner("kept", "from=0&persist=true").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..10 {
        api.publish("kept", format!("old-{i}")).await;
    }
    // A roll once the active segment is a second old, then the purge of
    // everything before it.
    let first = eventually(
        "the purge of the rolled segment",
        Duration::from_secs(20),
        || async {
            let resp = api.get("/kept").await;
            let (status, body) = (resp.status(), resp.text().await.unwrap());
            assert_eq!(status, 200, "topic info: {body}");
            let info: Value = serde_json::from_str(&body).unwrap();
            let first = info["first_offset"].as_u64()?;
            (first == 10).then_some(first)
        },
    )
    .await;
    assert_eq!(first, 10);
    expect_exact_error(api.get("/kept/payload/3").await, 404, "offset not found").await;
    assert_eq!(api.publish("kept", "new").await, 10);
    let (offset, bytes) = api.scan_one("kept", &behind).await;
    assert_eq!((offset, bytes), (10, b"new".to_vec()));
    broker.stop().await;
}

/// POSTs `body` to `path` on `api` with an `Idempotency-Key` and `headers`.
async fn post_keyed(
    api: &Api,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> reqwest::Response {
    let mut req = api
        .http
        .post(api.url(path))
        .header("Idempotency-Key", key)
        .body(body);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.expect("POST")
}

/// A v1 message published on A reads back on B with its key, headers and
/// timestamp; an idempotent publish on A retried on B is a duplicate with
/// the original offsets (single and batch), other messages under its key
/// are 422, and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_idempotency_keys_across_front_ends() {
    let Some((_cluster, a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("v1").await;
    // B opens the topic before it holds v1, then learns of it from the stream.
    assert!(b.info("v1").await.get("message_format").is_none());
    let odd = [
        ("Netlog-Key-Base64", "AP8NCg=="),
        ("Netlog-Header-Trace-Id", "abc%0D%0A%00 x"),
        ("Netlog-Timestamp", "1767323045678"),
    ];
    let r = post_keyed(&a, "/v1/payload", "once", &odd, "value").await;
    assert_eq!(expect_json(r, 201).await, serde_json::json!({"offset": 0}));
    assert_eq!(b.info("v1").await["message_format"], "v1", "seen on B");
    let r = b.get("/v1/payload/0").await;
    assert_eq!(r.headers()["netlog-key"], "%00%FF%0D%0A");
    assert_eq!(r.headers()["netlog-header-trace-id"], "abc%0D%0A%00%20x");
    assert_eq!(r.headers()["netlog-timestamp"], "1767323045678");
    assert_eq!(&r.bytes().await.unwrap()[..], b"value");

    let r = post_keyed(&b, "/v1/payload", "once", &odd, "value").await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let body = expect_json(r, 201).await;
    assert_eq!(body, serde_json::json!({"offset": 0, "duplicate": true}));
    let r = post_keyed(&b, "/v1/payload", "once", &[], "value").await;
    let body = expect_error(r, 422, "idempotency key reused").await;
    assert!(
        body["reason"].as_str().unwrap().contains("offset 0"),
        "{body}"
    );

    a.publish("v1", "between").await;
    let nd = [("content-type", "application/x-ndjson")];
    let r = post_keyed(&a, "/v1/messages", "batch", &nd, "a\nb\nc\n").await;
    let first = serde_json::json!({"first_offset": 2, "count": 3});
    assert_eq!(expect_json(r, 201).await, first);
    for _ in 0..50 {
        a.publish("v1", "after").await;
    }
    let r = post_keyed(&b, "/v1/messages", "batch", &nd, "a\nb\nc\n").await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay = serde_json::json!({"first_offset": 2, "count": 3, "duplicate": true});
    assert_eq!(expect_json(r, 201).await, replay);
    let r = post_keyed(&b, "/v1/messages", "batch", &nd, "a\nb\n").await;
    expect_error(r, 422, "idempotency key reused").await;
    // A single publish under a batch's key is other messages too.
    let r = post_keyed(&a, "/v1/payload", "batch", &[], "a").await;
    expect_error(r, 422, "idempotency key reused").await;
    assert_eq!(
        b.info("v1").await["latest_offset"],
        54,
        "nothing stored twice"
    );
    let (_, bytes) = b.payload("v1", "4").await;
    assert_eq!(bytes, b"c");
}

/// An idempotent publish acknowledged just before its stream leader is
/// SIGKILLed, retried on the other front end while the stream elects: the
/// retry waits out the election and is a duplicate; nothing is stored
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_after_the_leader_dies() {
    let Some((mut cluster, a, b, _dir)) = two_front_ends("20s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("crash").await;
    a.publish("crash", "zero").await;
    let r = post_keyed(&a, "/crash/payload", "k", &[], "one").await;
    assert_eq!(expect_json(r, 201).await, serde_json::json!({"offset": 1}));
    let nd = [("content-type", "application/x-ndjson")];
    let r = post_keyed(&a, "/crash/messages", "kb", &nd, "x\ny\n").await;
    expect_json(r, 201).await;
    // B knows the topic (a front end behind a load balancer has usually
    // met it): its retry goes to the stream, not to a lookup.
    assert_eq!(b.info("crash").await["latest_offset"], 3);
    let (leader, _) = placement(&cluster.urls(), "nl_crash").await;
    cluster.kill(cluster.index_of(&leader).expect("a node of the cluster"));
    let r = post_keyed(&b, "/crash/payload", "k", &[], "one").await;
    let body = expect_json(r, 201).await;
    assert_eq!(body, serde_json::json!({"offset": 1, "duplicate": true}));
    let r = post_keyed(&b, "/crash/messages", "kb", &nd, "x\ny\n").await;
    let replay = serde_json::json!({"first_offset": 2, "count": 2, "duplicate": true});
    assert_eq!(expect_json(r, 201).await, replay);
    // Nothing stored twice: offset 3 is the batch's last, 4 is past the
    // end (read from the stream: topic info also asks the scanners' KV
    // bucket, whose leader may be the node killed and still electing).
    assert_eq!(b.payload("crash", "3").await.1, b"y");
    expect_error(b.get("/crash/payload/4").await, 404, "offset not found").await;
}

/// The leased messages of one receive on `api` (ndjson): `(offset,
/// deliveries, lease)` each.
async fn receive_leases(api: &Api, path: &str) -> Vec<(u64, u64, String)> {
    let r = api.post_for_ndjson(path).await;
    if r.status() == 404 {
        return Vec::new();
    }
    assert_eq!(r.status(), 200, "{path}");
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["offset"].as_u64().unwrap(),
                v["deliveries"].as_u64().unwrap(),
                v["lease"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Settles `lease` with `op` on `api`; the result it answers.
async fn settle(api: &Api, op: &str, lease: &str, extra: &str) -> String {
    let r = api
        .post(&format!("/jobs/groups/g/{op}?lease={lease}{extra}"), "")
        .await;
    expect_json(r, 200).await["result"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A consumer group on a 3-node cluster, served by two front ends: a
/// message leased on A is not handed out on B; acks on either front end;
/// an unsettled lease runs out and the message comes again; a nack's
/// delay is honoured; extending keeps a lease past its time; a reject
/// writes the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shared_by_two_front_ends() {
    let Some((_cluster, a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("jobs").await;
    a.create_topic("dead").await;
    let made = a
        .post(
            "/jobs/groups/g",
            r#"{"from":"oldest","lease_time":"1s","dead_letter":"dead"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    for i in 0..4 {
        a.publish("jobs", format!("m{i}")).await;
    }
    let on_a = receive_leases(&a, "/jobs/groups/g/receive?max=1").await;
    let on_b = receive_leases(&b, "/jobs/groups/g/receive?max=1").await;
    assert_eq!((on_a[0].0, on_a[0].1), (0, 1));
    assert_eq!((on_b[0].0, on_b[0].1), (1, 1), "not m0 again while leased");
    assert_eq!(settle(&b, "ack", &on_a[0].2, "").await, "acked");

    // m1 is never settled: after its lease it comes again, delivered twice.
    let got = receive_leases(&b, "/jobs/groups/g/receive?max=1&wait=5s").await;
    assert_eq!((got[0].0, got[0].1), (2, 1));
    let nacked = got[0].2.clone();
    assert_eq!(settle(&a, "nack", &nacked, "&delay=3s").await, "nacked");
    let nacked_at = Instant::now();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    while !seen.contains(&(1, 2)) {
        assert!(nacked_at.elapsed() < Duration::from_secs(5), "{seen:?}");
        let got = receive_leases(&a, "/jobs/groups/g/receive?max=10&wait=1s").await;
        for (offset, deliveries, lease) in got {
            assert_eq!(settle(&b, "ack", &lease, "").await, "acked");
            seen.push((offset, deliveries));
        }
    }
    assert!(seen.contains(&(3, 1)), "{seen:?}");
    if nacked_at.elapsed() < Duration::from_secs(3) {
        assert!(
            !seen.iter().any(|(o, _)| *o == 2),
            "nacked for 3s: {seen:?}"
        );
    }
    let later = receive_leases(&b, "/jobs/groups/g/receive?max=1&wait=5s").await;
    assert_eq!((later[0].0, later[0].1), (2, 2), "after the nack's delay");

    // Extended twice, the lease outlives its 1 s: nothing comes again.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(settle(&a, "extend", &later[0].2, "").await, "extended");
    }
    let none = receive_leases(&b, "/jobs/groups/g/receive?max=1&wait=300ms").await;
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(
        settle(&a, "reject", &later[0].2, "&reason=poison").await,
        "dead_lettered"
    );
    let r = b.get("/dead/payload/0").await;
    assert_eq!(r.headers()["netlog-header-netlog-dlq-group"], "g");
    assert_eq!(r.headers()["netlog-header-netlog-dlq-offset"], "2");
    assert_eq!(r.headers()["netlog-header-netlog-dlq-reason"], "rejected");
    assert_eq!(r.headers()["netlog-header-netlog-dlq-error"], "poison");
    assert_eq!(&r.bytes().await.unwrap()[..], b"m2");
    let info = expect_json(a.get("/jobs/groups/g").await, 200).await;
    assert_eq!(
        (&info["ack_floor"], &info["next"]),
        (&serde_json::json!(4), &serde_json::json!(4)),
        "{info}"
    );
    let names = expect_json(b.get("/jobs/groups").await, 200).await;
    assert_eq!(names, serde_json::json!(["g"]));
    expect_error(
        b.post("/jobs/groups/g/seek?to=0", "").await,
        501,
        "not implemented",
    )
    .await;
    let bad = b
        .post("/jobs/groups/g/ack?lease=js.nl_jobs.g_other.1.1.1.1.0", "")
        .await;
    expect_error(bad, 400, "invalid lease").await;
    expect_ok_message(b.delete("/jobs/groups/g").await, 200, "group deleted").await;
    expect_error(a.get("/jobs/groups/g").await, 404, "group not found").await;
}

/// Two front ends receiving from one group at once, acking everything:
/// each of 200 messages is handed out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_front_ends_receive_each_message_once() {
    let Some((_cluster, a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("jobs").await;
    let made = a.post("/jobs/groups/g", r#"{"from":"oldest"}"#).await;
    assert_eq!(made.status(), 201);
    let body: String = (0..200).map(|i| format!("m{i}\n")).collect();
    a.publish_ndjson("jobs", body).await;
    // Each worker waits for the other after its first receive, so neither
    // can drain all 200 before the other's first pull (seen under the full
    // suite's load).
    let first = Arc::new(tokio::sync::Barrier::new(2));
    let worker = |api: Api| {
        let first = first.clone();
        async move {
            let mut got = Vec::new();
            loop {
                let leases = receive_leases(&api, "/jobs/groups/g/receive?max=7&wait=200ms").await;
                if got.is_empty() {
                    first.wait().await;
                }
                if leases.is_empty() {
                    return got;
                }
                for (offset, deliveries, lease) in leases {
                    assert_eq!(deliveries, 1);
                    assert_eq!(settle(&api, "ack", &lease, "").await, "acked");
                    got.push(offset);
                }
            }
        }
    };
    let (x, y) = tokio::join!(worker(a.clone()), worker(b.clone()));
    let mut all: Vec<u64> = x.iter().chain(y.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    assert!(!x.is_empty() && !y.is_empty(), "both front ends served");
}

/// A message never acked reaches the group's `max_deliveries`: the servers
/// announce it, one front end writes its dead letter (once), and the group
/// goes on with the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_deliveries_send_the_message_to_the_dead_letter_topic() {
    let Some((_cluster, a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (a, b) = (a.api(), b.api());
    a.create_topic("jobs").await;
    a.create_topic("dead").await;
    let settings = r#"{"from":"oldest","lease_time":"1s","max_deliveries":2,"dead_letter":"dead"}"#;
    assert_eq!(a.post("/jobs/groups/g", settings).await.status(), 201);
    a.publish("jobs", "poison").await;
    let mut deliveries = Vec::new();
    while deliveries.len() < 2 {
        for (offset, d, _) in receive_leases(&b, "/jobs/groups/g/receive?max=1&wait=3s").await {
            assert_eq!(offset, 0);
            deliveries.push(d);
        }
    }
    assert_eq!(deliveries, [1, 2]);
    a.publish("jobs", "fine").await;
    // A receive after the second lease ran out finds the poison past its
    // deliveries (JetStream decides it when it would deliver it again): it
    // gets the next message, and the advisory goes out.
    let letter = eventually("the dead letter", Duration::from_secs(10), || async {
        for (offset, _, lease) in
            receive_leases(&a, "/jobs/groups/g/receive?max=1&wait=200ms").await
        {
            assert_eq!(offset, 1, "the poison is not delivered a third time");
            assert_eq!(settle(&a, "ack", &lease, "").await, "acked");
        }
        let r = b.get("/dead/payload/0").await;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(
        letter.headers()["netlog-header-netlog-dlq-reason"],
        "max_deliveries"
    );
    assert_eq!(letter.headers()["netlog-header-netlog-dlq-deliveries"], "2");
    assert_eq!(&letter.bytes().await.unwrap()[..], b"poison");
    let dead = a.info("dead").await;
    assert_eq!(dead["latest_offset"], 0, "written once: {dead}");
}

/// A front end stopped cleanly answers its waiting receives `503 shutting
/// down` at once; the leases it handed out live in the cluster and settle
/// on the other front end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_front_end_ends_its_receives_and_leases_survive() {
    let Some((_cluster, mut a, b, _dir)) = two_front_ends("15s").await else {
        return;
    };
    let (on_a, b) = (a.api(), b.api());
    on_a.create_topic("jobs").await;
    let made = on_a.post("/jobs/groups/g", r#"{"from":"oldest"}"#).await;
    assert_eq!(made.status(), 201);
    on_a.publish("jobs", "held").await;
    let held = receive_leases(&on_a, "/jobs/groups/g/receive?max=1").await;
    let waiting = {
        let api = on_a.clone();
        tokio::spawn(async move {
            api.http
                .post(api.url("/jobs/groups/g/receive?wait=30s"))
                .send()
                .await
                .expect("the waiting receive")
        })
    };
    eventually("the receive waits", Duration::from_secs(5), || async {
        let info = expect_json(b.get("/jobs/groups/g").await, 200).await;
        (info["waiting_receives"] == 1).then_some(())
    })
    .await;
    let asked = Instant::now();
    a.signal("-TERM");
    let answer = waiting.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered at once"
    );
    let body = expect_error(answer, 503, "shutting down").await;
    assert_eq!(body["error"], "netlog: shutting down", "{body}");
    assert!(a.wait_exit().await.success());
    assert_eq!(settle(&b, "ack", &held[0].2, "").await, "acked");
}

/// Topics deleted through one front end while both front ends publish to
/// them, read them and open scanners on them: every answer is a success or
/// a clean 404 (or the 400 of a topic created meanwhile), never a 5xx. A
/// stream can vanish between any two of a front end's requests to the
/// cluster (looking a topic up, opening it, a direct get, which no server
/// answers once its stream is gone); each such point once answered 500 or
/// 503. The loops stop after a few seconds.
///
/// One server, not three: a three-node cluster's meta layer, made to create
/// and delete replicated streams this fast, times out some of its requests,
/// and those answers (a 503, or a 500 where the broker does not classify
/// the error yet) are about load, not about the deletion. For the same
/// reason the front ends wait 6 s for an answer (the default is 2 s), so
/// that a machine busy with the rest of the suite does not turn a slow
/// answer into a 503 (a deleted stream's direct get is answered "no
/// responders" at once, whatever the timeout); a publish still ends within
/// the client's 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_deleted_under_traffic_answer_404_never_5xx() {
    let Some(cluster) = NatsCluster::start(1).await else {
        skip("no nats-server binary: run ./test.sh, or set NETLOG_NATS_SERVER");
        return;
    };
    let dir = data_dir();
    let patient = "request_timeout = \"6s\"\n";
    let a = front_end_with(&cluster, &dir.path().join("a"), "12s", patient).await;
    let b = front_end_with(&cluster, &dir.path().join("b"), "12s", patient).await;
    let names: Vec<String> = (0..3).map(|i| format!("churn{i}")).collect();
    let until = Instant::now() + Duration::from_secs(8);
    let churn = {
        let (api, names) = (a.api(), names.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0.. {
                if Instant::now() >= until {
                    break;
                }
                let t = &names[n % names.len()];
                statuses.push(api.post_empty(&format!("/{t}")).await.status().as_u16());
                statuses.push(
                    api.post(&format!("/{t}/payload"), "m")
                        .await
                        .status()
                        .as_u16(),
                );
                statuses.push(
                    api.delete(&format!("/{t}?force=true"))
                        .await
                        .status()
                        .as_u16(),
                );
            }
            statuses
        })
    };
    let mut readers = Vec::new();
    for (i, api) in [a.api(), a.api(), b.api(), b.api(), b.api()]
        .into_iter()
        .enumerate()
    {
        let names = names.clone();
        readers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in i.. {
                if Instant::now() >= until {
                    break;
                }
                let t = &names[n % names.len()];
                let answers = [
                    api.get(&format!("/{t}/payload/0")).await,
                    api.post(&format!("/{t}/payload"), "r").await,
                    api.post_empty(&format!("/{t}/scanner?from=0")).await,
                ];
                for r in answers {
                    let status = r.status().as_u16();
                    if status >= 500 {
                        let body = r.text().await.unwrap_or_default();
                        panic!("{status} on topic {t} (read, publish or scanner) while it was being deleted: {body}");
                    }
                    statuses.push(status);
                }
            }
            statuses
        }));
    }
    let mut all = churn.await.unwrap();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    let count = |s: u16| all.iter().filter(|x| **x == s).count();
    assert!(
        all.iter().all(|s| [200, 201, 400, 404].contains(s)),
        "only successes, 400 (exists) and 404: {:?}",
        all.iter()
            .filter(|s| ![200, 201, 400, 404].contains(*s))
            .collect::<Vec<_>>()
    );
    // The race was run: topics were found, and found gone.
    assert!(
        count(404) > 50 && count(201) > 50,
        "404s {} 201s {}",
        count(404),
        count(201)
    );
}
