//! The broker's promises about its data directory and its consumers: one
//! broker per directory, one winner per topic name, nothing adopted or
//! deleted that netlog did not write, consumers ended by a delete or a
//! shutdown with a clear answer, and netlog's own files read as netlog does.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;
use serde_json::json;

/// Every file below `dir` with its size, sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p.display().to_string(), 0));
            } else {
                let len = std::fs::metadata(&p).unwrap().len();
                out.push((p.display().to_string(), len));
            }
        }
    }
    out.sort();
    out
}

/// A second broker on the same data directory exits at once, non-zero,
/// naming the first one's pid.
#[tokio::test]
async fn second_broker_on_one_directory_exits_naming_the_first() {
    let dir = data_dir();
    let first = spawn_netlog(dir.path()).await;
    let second = run_netlog([
        "-listen",
        "127.0.0.1:0",
        "-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!second.status.success(), "the second broker must not run");
    assert!(
        second.stderr.contains("in use by another netlog")
            && second.stderr.contains(&format!("pid {}", first.pid())),
        "stderr names the holder: {}",
        second.stderr
    );
    // The first still serves.
    first.api().create_topic("still").await;
}

/// 16 clients creating one topic 200 times each: exactly one 201, every
/// other answer 400 topic exists, and the winner's messages intact.
#[tokio::test]
async fn concurrent_creates_have_exactly_one_winner() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let mut tasks = Vec::new();
    for client in 0..16 {
        let api = broker.api();
        tasks.push(tokio::spawn(async move {
            let (mut created, mut exists, mut published) = (0, 0, Vec::new());
            for i in 0..200 {
                let resp = api.post_empty("/race").await;
                match resp.status().as_u16() {
                    201 => created += 1,
                    400 => {
                        let body: serde_json::Value =
                            serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                        assert_eq!(body["error"], "netlog: topic exists", "{body}");
                        exists += 1;
                    }
                    other => panic!("create answered {other}"),
                }
                if i % 50 == 0 {
                    let m = format!("c{client}-{i}");
                    let r = api.post("/race/payload", m.clone()).await;
                    if r.status() == 201 {
                        let v: serde_json::Value =
                            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                        published.push((v["offset"].as_u64().unwrap(), m));
                    }
                }
            }
            (created, exists, published)
        }));
    }
    let (mut created, mut exists, mut published) = (0, 0, Vec::new());
    for t in tasks {
        let (c, e, p) = t.await.unwrap();
        created += c;
        exists += e;
        published.extend(p);
    }
    assert_eq!((created, exists), (1, 16 * 200 - 1));
    let api = broker.api();
    for (offset, m) in &published {
        assert_eq!(
            api.payload("race", &offset.to_string()).await,
            (*offset, m.clone().into_bytes())
        );
    }
    assert_eq!(
        expect_json(api.get("/race/check").await, 200).await["message"],
        "topic healthy"
    );
    broker.stop().await;
}

/// A data directory holding a stranger's files: nothing is adopted, written
/// or deleted, not even by a forced delete or a create of that name.
#[tokio::test]
async fn stranger_directories_are_left_alone() {
    let dir = data_dir();
    std::fs::create_dir_all(dir.path().join("home/alice")).unwrap();
    std::fs::write(dir.path().join("home/alice/notes.txt"), "private").unwrap();
    std::fs::write(dir.path().join("home/readme.txt"), "mine").unwrap();
    let before = listing(&dir.path().join("home"));
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([]));
    expect_exact_error(api.delete("/home?force=true").await, 404, "topic not found").await;
    expect_exact_error(api.post_empty("/home").await, 400, "topic exists").await;
    expect_exact_error(api.post("/home/payload", "x").await, 404, "topic not found").await;
    broker.stop().await;
    assert_eq!(listing(&dir.path().join("home")), before, "nothing touched");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("home/alice/notes.txt")).unwrap(),
        "private"
    );
}

/// A forced delete ends a waiting long poll (404 topic not found) and a
/// stream within 100 ms of its answer; a stream on the re-created topic gets
/// its messages.
#[tokio::test]
async fn delete_ends_consumers_and_a_new_topic_starts_fresh() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("t").await;
    api.publish("t", "old").await;
    let id = api.scanner_id("t", "end").await;
    let poll = tokio::spawn({
        let api = api.clone();
        async move {
            let resp = api.scan("t", &id, "30s").await;
            (
                Instant::now(),
                resp.status().as_u16(),
                resp.bytes().await.unwrap(),
            )
        }
    });
    let stream = api.get("/t/stream?from=end").await;
    assert_eq!(stream.status(), 200);
    let ended = tokio::spawn(async move {
        let mut body = stream.bytes_stream();
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
        Instant::now()
    });
    // The long poll is in and the stream open (its head was answered).
    until_long_polls(&api, 1).await;
    let sent_at = Instant::now();
    expect_ok_message(api.delete("/t?force=true").await, 200, "topic deleted").await;
    let deleted_at = Instant::now();
    let (poll_at, status, body) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long poll ends")
        .unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "netlog: topic not found");
    let stream_at = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the stream ends")
        .unwrap();
    // Ended by the delete (not before it was sent), and within 100 ms of
    // its answer: the time the DELETE itself takes on a busy machine is not
    // counted against the consumers.
    for (what, at) in [("long poll", poll_at), ("stream", stream_at)] {
        assert!(at >= sent_at, "{what} ended before the delete was sent");
        let after = at.saturating_duration_since(deleted_at);
        assert!(
            after < Duration::from_millis(100),
            "{what} ended {after:?} after the delete was answered"
        );
    }

    api.create_topic("t").await;
    let resp = api.get("/t/stream?from=0").await;
    let mut body = resp.bytes_stream();
    assert_eq!(api.publish("t", "new").await, 0, "offsets start afresh");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("data: new") && Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(1), body.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("id: 0\ndata: new"), "{seen}");
    broker.stop().await;
}

/// A long poll woken by shutdown answers 503 shutting down, not end of topic,
/// and says the connection closes.
#[tokio::test]
async fn shutdown_answers_long_polls_with_503() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("t").await;
    let id = api.scanner_id("t", "end").await;
    let poll = tokio::spawn({
        let api = api.clone();
        async move { api.scan("t", &id, "30s").await }
    });
    until_long_polls(&api, 1).await;
    let stopping = tokio::spawn(broker.stop());
    let resp = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll ends")
        .unwrap();
    assert_eq!(header(&resp, "connection").as_deref(), Some("close"));
    expect_exact_error(resp, 503, "shutting down").await;
    stopping.await.unwrap();
}

/// A topic whose settings name a plugin the config does not declare: the
/// broker serves, other topics work, its reads work, its publishes get 503
/// naming the plugin and how to declare it.
#[tokio::test]
async fn undeclared_plugin_fails_only_that_topics_publishes() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("plain").await;
    api.create_topic("guarded").await;
    assert_eq!(api.publish("guarded", "before").await, 0);
    broker.stop().await;
    // The topic's settings now name a plugin no config declares.
    let path = dir.path().join("guarded/settings.json");
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    settings["validation"] = json!({"plugin": "ghost"});
    std::fs::write(&path, settings.to_string()).unwrap();

    let broker = spawn_broker(dir.path());
    let api = broker.api();
    assert_eq!(api.publish("plain", "fine").await, 0);
    assert_eq!(api.payload("guarded", "0").await, (0, b"before".to_vec()));
    let body = expect_error(
        api.post("/guarded/payload", "x").await,
        503,
        "plugin unavailable",
    )
    .await;
    assert_eq!(body["plugin"], "ghost", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("[plugins.ghost]"),
        "says how to declare it: {body}"
    );
    broker.stop().await;
}

/// netlog leaves an empty scanner file for a persistent scanner it never
/// saved; it is restored at offset 0, and start-up does not rewrite the
/// files it reads.
#[tokio::test]
async fn empty_scanner_files_restore_at_zero_and_loading_rewrites_nothing() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("t").await;
    for i in 0..3 {
        api.publish("t", format!("m{i}")).await;
    }
    let kept = api.scanner("t", "from=2&persist=true").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    broker.stop().await;
    let empty = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let readers = dir.path().join("t/readers");
    std::fs::write(readers.join(format!("{empty}.scanner")), b"").unwrap();
    let kept_path = readers.join(format!("{kept}.scanner"));
    let modified = std::fs::metadata(&kept_path).unwrap().modified().unwrap();

    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let scanners = &api.info("t").await["scanners"];
    assert_eq!(scanners[empty]["next"], 0, "{scanners}");
    assert_eq!(scanners[empty]["persistent"], true);
    assert_eq!(api.scan_one("t", empty).await, (0, b"m0".to_vec()));
    assert_eq!(
        std::fs::metadata(&kept_path).unwrap().modified().unwrap(),
        modified,
        "a loaded scanner's file is not rewritten"
    );
    broker.stop().await;
}

/// netlog answers a scan without `id` with 404 scanner not found.
#[tokio::test]
async fn scan_without_id_is_scanner_not_found() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("t").await;
    expect_exact_error(api.get("/t/scan").await, 404, "scanner not found").await;
    broker.stop().await;
}

/// Errors that say what to do: a batch without Content-Type, `-listen`
/// without a colon, and `plugin check --config` that is not JSON.
#[tokio::test]
async fn errors_say_what_to_do() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("t").await;
    let resp = api
        .http
        .post(api.url("/t/messages"))
        .body("one\ntwo\n")
        .send()
        .await
        .unwrap();
    let reason = expect_bad_request(resp, "bad request").await;
    assert!(
        reason.contains("binary") && reason.contains("application/x-ndjson"),
        "{reason}"
    );
    broker.stop().await;

    let run = run_netlog(["-listen", "7312", "-dir", dir.path().to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("\":7312\""), "{}", run.stderr);

    let wasm = plugin_path("json_validator.wasm");
    let run = run_netlog([
        "plugin",
        "check",
        wasm.to_str().unwrap(),
        "--config",
        "not json",
    ]);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("--config is not JSON"),
        "{}",
        run.stderr
    );
}
