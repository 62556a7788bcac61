//! Plugins end to end: a broker in this process, driven over HTTP, with the
//! real WebAssembly components of `plugins/dist` as validators, codecs and
//! retention policies, the well-behaved ones and the hostile ones.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use netlog::config::Config;
use serde_json::{Value, json};

/// The JSON validator component.
const JSON_VALIDATOR: &str = "json_validator.wasm";
/// The LZ4 codec component.
const LZ4: &str = "lz4_codec.wasm";
/// The keep-unread retention component.
const KEEP_UNREAD: &str = "keep_unread.wasm";
/// The size-cap retention component.
const SIZE_CAP: &str = "size_cap.wasm";
/// The validator that misbehaves on demand.
const HOSTILE_VALIDATOR: &str = "hostile_validator.wasm";
/// The codec that fails one direction on demand.
const HOSTILE_CODEC: &str = "hostile_codec.wasm";
/// The retention policy that asks to delete everything.
const DELETE_EVERYTHING: &str = "delete_everything.wasm";

/// Longest a test waits for the monitor to have done something.
const MONITOR_DEADLINE: Duration = Duration::from_secs(10);

/// One compressible JSON reading, `i`-th of a series.
fn reading(i: usize) -> String {
    format!(
        r#"{{"id":{i},"kind":"reading","sensor":"temperature-probe-{:02}","unit":"celsius","value":21.5}}"#,
        i % 4
    )
}

/// Asserts that offsets `0..` of `topic` hold exactly `messages`.
async fn assert_reads(api: &Api, topic: &str, messages: &[String]) {
    for (i, want) in messages.iter().enumerate() {
        let got = api.payload(topic, &i.to_string()).await;
        assert_eq!(got, (i as u64, want.clone().into_bytes()), "{topic} at {i}");
    }
}

/// Publishes `lines` as one ndjson batch; must succeed. Returns the first
/// offset.
async fn publish_lines(api: &Api, topic: &str, lines: &[String]) -> u64 {
    let resp = api.publish_ndjson(topic, lines.join("\n")).await;
    let body = expect_json(resp, 201).await;
    assert_eq!(body["count"], lines.len(), "{body}");
    body["first_offset"].as_u64().expect("first_offset")
}

/// The topic's latest offset (-1 when empty).
async fn latest(api: &Api, topic: &str) -> i64 {
    api.info(topic).await["latest_offset"]
        .as_i64()
        .expect("latest_offset")
}

/// One counter of the topic's `hook` (`validation`, `retention`).
async fn hook_stat(api: &Api, topic: &str, hook: &str, stat: &str) -> u64 {
    let info = api.info(topic).await;
    info["hooks"][hook]["stats"][stat]
        .as_u64()
        .unwrap_or_else(|| panic!("no {hook} stat {stat}: {info}"))
}

/// The `first_offset`s of the topic's segments, oldest first.
async fn segment_bases(api: &Api, topic: &str) -> Vec<u64> {
    api.info(topic).await["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["first_offset"].as_u64().expect("first_offset"))
        .collect()
}

/// Waits until the topic's retention plugin has been asked `more` times
/// beyond now, so that the monitor has had its say.
async fn wait_for_retention_calls(api: &Api, topic: &str, more: u64) {
    let target = hook_stat(api, topic, "retention", "calls").await + more;
    eventually("retention ticks", MONITOR_DEADLINE, || async {
        (hook_stat(api, topic, "retention", "calls").await >= target).then_some(())
    })
    .await;
}

/// A validator hook with `config` for the settings JSON of `POST /{topic}`.
fn validation(plugin: &str, config: Value) -> Value {
    json!({ "validation": { "plugin": plugin, "config": config } })
}

/// A bad message gets a 422 with its index and reason and nothing of its request is written.
#[tokio::test]
async fn validator_rejects_whole_requests_and_accepts_good_ones() {
    let dir = data_dir();
    let broker = spawn_broker_with(config_with(
        dir.path(),
        vec![declare("json", JSON_VALIDATOR)],
    ));
    let api = broker.api();
    api.create_topic_with("orders", &validation("json", json!({"required": ["id"]})))
        .await;
    assert_eq!(
        api.info("orders").await["hooks"]["validation"]["plugin"],
        "json"
    );
    let mut stored = vec![r#"{"id":0}"#.to_string()];
    assert_eq!(api.publish("orders", stored[0].clone()).await, 0);

    for (bad, why) in [
        ("not json", "invalid JSON"),
        (r#"{"name":"x"}"#, r#"missing required field "id""#),
    ] {
        let resp = api.post("/orders/payload", bad).await;
        let body = expect_error(resp, 422, "rejected by validator").await;
        assert_eq!(
            (&body["plugin"], &body["index"]),
            (&json!("json"), &json!(0))
        );
        let reason = body["reason"].as_str().expect("a reason");
        assert!(
            reason.contains(why),
            "{bad:?} is refused for {why:?}: {body}"
        );
        assert_eq!(
            latest(&api, "orders").await,
            0,
            "nothing of {bad:?} is written"
        );
    }

    let mut batch: Vec<String> = (1..=5).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
    let good_third = std::mem::replace(&mut batch[2], r#"{"no_id":true}"#.to_string());
    let resp = api.publish_ndjson("orders", batch.join("\n")).await;
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["index"], 2, "the third line is the bad one: {body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("missing required field")
    );
    assert_eq!(
        latest(&api, "orders").await,
        0,
        "no line of the batch is written"
    );

    batch[2] = good_third;
    assert_eq!(publish_lines(&api, "orders", &batch).await, 1);
    stored.extend(batch);
    assert_reads(&api, "orders", &stored).await;
    assert_eq!(hook_stat(&api, "orders", "validation", "rejected").await, 3);
    broker.stop().await;
}

/// LZ4 sets are smaller, recorded as value 4, read back after a restart, and need the plugin.
#[tokio::test]
async fn lz4_codec_compresses_sets_and_survives_a_restart() {
    let dir = data_dir();
    let config = config_with(dir.path(), vec![declare("lz4", LZ4)]);
    let broker = spawn_broker_with(config.clone());
    let api = broker.api();
    api.create_topic_with("packed", &json!({"compression": "lz4"}))
        .await;
    api.create_topic_with("loose", &json!({"compression": "none"}))
        .await;
    let messages: Vec<String> = (0..200).map(reading).collect();
    for chunk in messages.chunks(50) {
        for topic in ["packed", "loose"] {
            publish_lines(&api, topic, chunk).await;
        }
    }

    let info = api.info("packed").await;
    assert_eq!(info["compression"], "lz4");
    assert_eq!(
        info["hooks"]["compression"],
        json!({"plugin": "lz4", "value": 4})
    );
    let settings: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("packed/settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["compression_type"], 4, "{settings}");
    assert_eq!(settings["codecs"], json!({"4": "lz4"}), "{settings}");

    let packed = data_entries(&data_file(dir.path(), "packed", 0));
    let loose = data_entries(&data_file(dir.path(), "loose", 0));
    assert_eq!(packed.len(), 4, "one set per batch");
    assert!(packed.iter().all(|(compver, _)| *compver == 0x04));
    assert!(loose.iter().all(|(compver, _)| *compver == 0x01));
    let size = |topic| {
        std::fs::metadata(data_file(dir.path(), topic, 0))
            .unwrap()
            .len()
    };
    assert!(
        size("packed") * 2 < size("loose"),
        "LZ4 at least halves repetitive JSON: {} vs {} bytes",
        size("packed"),
        size("loose")
    );
    assert_reads(&api, "packed", &messages).await;
    broker.stop().await;

    let broker = spawn_broker_with(config);
    let api = broker.api();
    assert_eq!(api.info("packed").await["compression"], "lz4");
    assert_reads(&api, "packed", &messages).await;
    broker.stop().await;

    let err = netlog::broker::Broker::open(test_config(dir.path()))
        .err()
        .expect("a topic whose codec plugin is not declared does not open")
        .to_string();
    assert!(
        err.contains("packed") && err.contains("\"lz4\"") && err.contains("not declared"),
        "the error names the topic and the missing codec plugin: {err}"
    );
}

/// keep-unread deletes only segments a persistent scanner has passed, never the active one.
#[tokio::test]
async fn keep_unread_deletes_only_what_a_persistent_scanner_has_read() {
    let dir = data_dir();
    let config = Config {
        // Two entries per segment: publishes roll the log on their own.
        index_entries: 3,
        ..config_with(dir.path(), vec![declare("keep-unread", KEEP_UNREAD)])
    };
    let broker = spawn_broker_with(config);
    let api = broker.api();
    api.create_topic_with("events", &json!({"retention": {"plugin": "keep-unread"}}))
        .await;
    let reader = api.scanner("events", "from=0&persist=true").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let messages: Vec<String> = (0..10).map(reading).collect();
    for m in &messages {
        api.publish("events", m.clone()).await;
    }
    let bases = segment_bases(&api, "events").await;
    assert_eq!(bases, [0, 2, 4, 6, 8]);

    wait_for_retention_calls(&api, "events", 3).await;
    assert_eq!(
        segment_bases(&api, "events").await,
        bases,
        "nothing read, nothing deleted"
    );

    for i in 0..5u64 {
        assert_eq!(api.scan_one("events", &reader).await.0, i);
    }
    eventually("the two read segments to go", MONITOR_DEADLINE, || async {
        (segment_bases(&api, "events").await == [4, 6, 8]).then_some(())
    })
    .await;
    wait_for_retention_calls(&api, "events", 2).await;
    assert_eq!(
        segment_bases(&api, "events").await,
        [4, 6, 8],
        "the segment holding unread offset 5 stays"
    );

    for i in 5..10u64 {
        assert_eq!(api.scan_one("events", &reader).await.0, i);
    }
    eventually(
        "all but the active segment to go",
        MONITOR_DEADLINE,
        || async { (segment_bases(&api, "events").await == [8]).then_some(()) },
    )
    .await;
    wait_for_retention_calls(&api, "events", 2).await;
    assert_eq!(
        segment_bases(&api, "events").await,
        [8],
        "the active segment stays"
    );
    for (i, want) in messages.iter().enumerate().skip(8) {
        let got = api.payload("events", &i.to_string()).await;
        assert_eq!(got, (i as u64, want.clone().into_bytes()));
    }
    broker.stop().await;
}

/// An endless validator gets a 503 in bounded time, writes nothing and stalls no other topic.
#[tokio::test]
async fn looping_validator_times_out_without_stalling_the_broker() {
    let dir = data_dir();
    let mut looper = declare("looper", HOSTILE_VALIDATOR);
    looper.time_limit = Duration::from_millis(100);
    let broker = spawn_broker_with(config_with(dir.path(), vec![looper]));
    let api = broker.api();
    let hook = |on_error: &str| json!({"validation": {"plugin": "looper", "config": {"mode": "loop"}, "on_error": on_error}});
    api.create_topic_with("guarded", &hook("reject")).await;
    api.create_topic_with("lenient", &hook("accept")).await;
    api.create_topic("bystander").await;
    let bystander = api.scanner_id("bystander", "0").await;

    let looping_done = AtomicBool::new(false);
    let looping = async {
        let started = Instant::now();
        let resp = api.post("/guarded/payload", "stuck").await;
        let took = started.elapsed();
        looping_done.store(true, Ordering::Release);
        (resp, took)
    };
    let served = async {
        let mut served = 0u64;
        while !looping_done.load(Ordering::Acquire) || served < 3 {
            let offset = api.publish("bystander", format!("b{served}")).await;
            assert_eq!(api.scan_one("bystander", &bystander).await.0, offset);
            assert_serving(&api).await;
            served += 1;
        }
        served
    };
    let ((resp, took), served) = tokio::join!(looping, served);
    let body = expect_error(resp, 503, "plugin failed").await;
    assert_eq!(body["plugin"], "looper");
    assert!(
        took < Duration::from_secs(5),
        "the time limit ended the call: {took:?}"
    );
    assert!(served >= 3);
    assert_eq!(latest(&api, "guarded").await, -1, "nothing is written");

    let resp = api.post("/guarded/payload", "again").await;
    let body = expect_error(resp, 503, "plugin failed").await;
    assert_eq!(body["plugin"], "looper");
    assert_eq!(
        hook_stat(&api, "guarded", "validation", "timeouts").await,
        2
    );
    assert_eq!(latest(&api, "guarded").await, -1);

    assert_eq!(api.publish("lenient", "let through").await, 0);
    assert_eq!(api.payload("lenient", "0").await.1, b"let through");
    assert_eq!(
        hook_stat(&api, "lenient", "validation", "timeouts").await,
        1
    );
    assert_serving(&api).await;
    broker.stop().await;
}

/// A validator allocating without end is stopped at its memory limit: 503, nothing written.
#[tokio::test]
async fn memory_hog_is_stopped_at_its_limit() {
    let dir = data_dir();
    let mut hog = declare("hog", HOSTILE_VALIDATOR);
    hog.memory_limit = 16 << 20;
    let broker = spawn_broker_with(config_with(dir.path(), vec![hog]));
    let api = broker.api();
    api.create_topic_with("fed", &validation("hog", json!({"mode": "hog"})))
        .await;
    for _ in 0..2 {
        let resp = api.post("/fed/payload", "crumb").await;
        let body = expect_error(resp, 503, "plugin failed").await;
        assert_eq!(body["plugin"], "hog");
        assert_eq!(latest(&api, "fed").await, -1, "nothing is written");
        assert_serving(&api).await;
    }
    api.create_topic("after").await;
    assert_eq!(api.publish("after", "still here").await, 0);
    broker.stop().await;
}

/// A trapping validator fails the publish with on_error reject and is skipped with accept.
#[tokio::test]
async fn trapping_validator_follows_on_error() {
    let dir = data_dir();
    let broker = spawn_broker_with(config_with(
        dir.path(),
        vec![declare("trapper", HOSTILE_VALIDATOR)],
    ));
    let api = broker.api();
    for (topic, on_error) in [("strict", "reject"), ("lax", "accept")] {
        let settings = json!({"validation": {
            "plugin": "trapper", "config": {"mode": "trap"}, "on_error": on_error,
        }});
        api.create_topic_with(topic, &settings).await;
    }

    let resp = api.post("/strict/payload", "refused").await;
    let body = expect_error(resp, 503, "plugin failed").await;
    assert_eq!(body["plugin"], "trapper");
    assert_eq!(latest(&api, "strict").await, -1, "nothing is written");
    assert_eq!(hook_stat(&api, "strict", "validation", "traps").await, 1);

    let resp = api.publish_ndjson("lax", "one\ntwo\nthree").await;
    assert_eq!(
        expect_json(resp, 201).await,
        json!({"first_offset": 0, "count": 3})
    );
    assert_eq!(api.payload("lax", "2").await.1, b"three");
    assert_eq!(hook_stat(&api, "lax", "validation", "traps").await, 1);
    assert_serving(&api).await;
    broker.stop().await;
}

/// A codec trapping on compress leaves batches published, stored as uncompressed sets.
#[tokio::test]
async fn codec_trapping_on_write_stores_sets_uncompressed() {
    let dir = data_dir();
    let mut shaky = declare("shaky", HOSTILE_CODEC);
    shaky.config = json!({"mode": "trap-compress"});
    let broker = spawn_broker_with(config_with(dir.path(), vec![shaky]));
    let api = broker.api();
    api.create_topic_with("fallback", &json!({"compression": "shaky"}))
        .await;
    let messages: Vec<String> = (0..30).map(reading).collect();
    for (i, chunk) in messages.chunks(10).enumerate() {
        assert_eq!(publish_lines(&api, "fallback", chunk).await, i as u64 * 10);
        assert_serving(&api).await;
    }
    let entries = data_entries(&data_file(dir.path(), "fallback", 0));
    assert_eq!(entries.len(), 3);
    assert!(
        entries.iter().all(|(compver, _)| *compver == 0x01),
        "every set is stored uncompressed"
    );
    assert_eq!(
        api.info("fallback").await["settings"]["compression_type"],
        4
    );
    assert_reads(&api, "fallback", &messages).await;
    broker.stop().await;
}

/// A codec failing on read gives a 500 naming it, keeps the bytes, and reads once fixed.
#[tokio::test]
async fn codec_failing_on_read_names_the_codec_and_keeps_the_data() {
    let dir = data_dir();
    let codec = |mode: &str| {
        let mut sour = declare("sour", HOSTILE_CODEC);
        sour.config = json!({ "mode": mode });
        config_with(dir.path(), vec![sour])
    };
    // Written while the codec works (a codec that cannot decode its own
    // output is refused on write), then read after it broke.
    let broker = spawn_broker_with(codec("ok"));
    let api = broker.api();
    api.create_topic_with("locked", &json!({"compression": "sour"}))
        .await;
    let messages: Vec<String> = (0..5).map(reading).collect();
    assert_eq!(publish_lines(&api, "locked", &messages).await, 0);
    broker.stop().await;
    let broker = spawn_broker_with(codec("error-decompress"));
    let api = broker.api();

    let path = data_file(dir.path(), "locked", 0);
    let written = std::fs::read(&path).unwrap();
    let entries = data_entries(&path);
    assert_eq!(entries.len(), 1);
    let (compver, stored) = &entries[0];
    assert_eq!(*compver, 0x04, "the set went through the codec");
    let plain: Vec<u8> = messages
        .iter()
        .flat_map(|m| frame(0, m.as_bytes()))
        .collect();
    let honest = load(HOSTILE_CODEC, netlog::plugin::Limits::default())
        .codec("t", "{}")
        .unwrap();
    assert_eq!(
        (
            stored[0],
            netlog::message::Codec::decompress(&honest, stored).unwrap()
        ),
        (0xEC, plain),
        "the hostile codec's encoding"
    );

    let resp = api.get("/locked/payload/2").await;
    let body = expect_error(resp, 500, "codec error").await;
    assert_eq!(body["codec"], "sour");
    let scanner = api.scanner_id("locked", "0").await;
    let body = expect_error(
        api.scan("locked", &scanner, "5ms").await,
        500,
        "codec error",
    )
    .await;
    assert_eq!(body["codec"], "sour");
    assert_serving(&api).await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        written,
        "the bytes stay intact"
    );
    broker.stop().await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        written,
        "a restart keeps them"
    );

    let broker = spawn_broker_with(codec("ok"));
    let api = broker.api();
    assert_reads(&api, "locked", &messages).await;
    broker.stop().await;
}

/// A codec failing while a topic recovers without its index stops the open and cuts nothing.
#[tokio::test]
async fn codec_failing_while_recovering_cuts_nothing() {
    let dir = data_dir();
    let codec = |mode: &str| {
        let mut sour = declare("sour", HOSTILE_CODEC);
        sour.config = json!({ "mode": mode });
        config_with(dir.path(), vec![sour])
    };
    let broker = spawn_broker_with(codec("ok"));
    let api = broker.api();
    api.create_topic_with("locked", &json!({"compression": "sour"}))
        .await;
    let messages: Vec<String> = (0..6).map(reading).collect();
    for chunk in messages.chunks(3) {
        publish_lines(&api, "locked", chunk).await;
    }
    broker.stop().await;
    let path = data_file(dir.path(), "locked", 0);
    let written = std::fs::read(&path).unwrap();
    std::fs::remove_file(path.with_extension("index")).unwrap();

    let err = netlog::broker::Broker::open(codec("error-decompress"))
        .err()
        .expect("a set that cannot be counted stops the open")
        .to_string();
    assert!(
        err.contains("sour") && err.contains("refuses to decompress"),
        "the error names the codec and its reason: {err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), written, "nothing is cut");

    let broker = spawn_broker_with(codec("ok"));
    let api = broker.api();
    assert_eq!(latest(&api, "locked").await, 5);
    assert_reads(&api, "locked", &messages).await;
    broker.stop().await;
}

/// A policy asking to delete everything is clamped: the active segment stays and serves.
#[tokio::test]
async fn delete_everything_never_deletes_the_active_segment() {
    let dir = data_dir();
    let config = Config {
        index_entries: 3,
        ..config_with(dir.path(), vec![declare("greedy", DELETE_EVERYTHING)])
    };
    let broker = spawn_broker_with(config);
    let api = broker.api();
    // Rolls asked by a plugin need the segment to be at least
    // `min_segment_age` old (issue 10); the floor, 1 s, keeps this test quick.
    api.create_topic_with(
        "doomed",
        &json!({"retention": {"plugin": "greedy"}, "min_segment_age": "1s"}),
    )
    .await;
    for i in 0..6 {
        api.publish("doomed", format!("m{i}")).await;
    }
    // The plugin also asks for a roll on every tick, so even the segment
    // holding the last messages goes once it is no longer the active one.
    eventually(
        "only the active segment to remain",
        MONITOR_DEADLINE,
        || async { (segment_bases(&api, "doomed").await == [6]).then_some(()) },
    )
    .await;
    wait_for_retention_calls(&api, "doomed", 3).await;
    assert_eq!(segment_bases(&api, "doomed").await, [6]);
    assert_serving(&api).await;

    // A scanner holds its segment, so it reads what is published next
    // whatever the monitor does meanwhile.
    let reader = api.scanner_id("doomed", "6").await;
    assert_eq!(api.publish("doomed", "fresh").await, 6, "offsets go on");
    assert_eq!(
        api.scan_one("doomed", &reader).await,
        (6, b"fresh".to_vec())
    );
    // One tick rolls it, the next deletes it; one more in case the first
    // looked before the publish.
    wait_for_retention_calls(&api, "doomed", 4).await;
    assert_eq!(segment_bases(&api, "doomed").await.len(), 1);
    assert_eq!(api.publish("doomed", "later").await, 7);
    assert_serving(&api).await;
    broker.stop().await;
}

/// Compiled plugins are cached under `<data_dir>/_cache/wasm` and a restart runs from them.
#[tokio::test]
async fn compiled_plugins_are_cached_across_restarts() {
    let dir = data_dir();
    let config = config_with(
        dir.path(),
        vec![
            declare("keep-unread", KEEP_UNREAD),
            declare("size-cap", SIZE_CAP),
            declare("json", JSON_VALIDATOR),
            declare("lz4", LZ4),
        ],
    );
    spawn_broker_with(config.clone()).stop().await;
    let cache = dir.path().join("_cache/wasm");
    let cached = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .count();
    assert!(
        cached >= 4,
        "one compiled file per component, found {cached}"
    );

    let broker = spawn_broker_with(config);
    let api = broker.api();
    let settings = json!({
        "compression": "lz4",
        "validation": {"plugin": "json"},
        "retention": {"plugin": "size-cap", "config": {"max_bytes": "1GiB"}},
    });
    api.create_topic_with("warm", &settings).await;
    assert_eq!(
        publish_lines(&api, "warm", &[reading(0), reading(1)]).await,
        0
    );
    assert_eq!(api.payload("warm", "1").await.1, reading(1).into_bytes());
    let resp = api.post("/warm/payload", "{").await;
    expect_error(resp, 422, "rejected by validator").await;
    broker.stop().await;
}

/// `netlog plugin check` names hook and WIT version, and whether init takes the config.
#[test]
fn plugin_check_describes_a_component() {
    let file = plugin_path(JSON_VALIDATOR);
    let run = run_netlog([OsStr::new("plugin"), OsStr::new("check"), file.as_os_str()]);
    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status,
        run.stderr
    );
    for part in ["validator", "netlog:plugin@0.1.0", "init:      accepted"] {
        assert!(run.stdout.contains(part), "{part:?} in: {}", run.stdout);
    }

    let run = run_netlog([
        OsStr::new("plugin"),
        OsStr::new("check"),
        file.as_os_str(),
        OsStr::new("--config"),
        OsStr::new(r#"{"bogus":1}"#),
    ]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(!run.status.success(), "a refused config fails the check");
    assert!(
        said.contains("init:      refused") && said.contains("bogus"),
        "the refusal and its reason are shown: {said}"
    );
}

/// `netlog plugin check` on a file that is not a component fails and says so.
#[test]
fn plugin_check_refuses_a_non_component() {
    let dir = data_dir();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "just some text").unwrap();
    let run = run_netlog([OsStr::new("plugin"), OsStr::new("check"), file.as_os_str()]);
    assert!(!run.status.success(), "exit {:?}", run.status);
    assert!(
        run.stderr.contains("not a WebAssembly component"),
        "{}",
        run.stderr
    );
}

/// `netlog plugin check` on what is not a regular file, or is too large,
/// refuses at once instead of reading forever: `/dev/zero` (endless), a
/// FIFO nobody writes to (an open would block), a directory, and a sparse
/// file one byte over the 64 MiB a component may have.
#[test]
fn plugin_check_refuses_unfit_files_at_once() {
    let dir = data_dir();
    let fifo = dir.path().join("pipe.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len((64 << 20) + 1))
        .expect("a sparse file");
    let cases: [(&std::path::Path, &str); 4] = [
        (std::path::Path::new("/dev/zero"), "not a regular file"),
        (&fifo, "not a regular file"),
        (dir.path(), "not a regular file"),
        (&big, "more than the 67108864 a component may have"),
    ];
    for (file, reason) in cases {
        let started = std::time::Instant::now();
        let run = run_netlog([OsStr::new("plugin"), OsStr::new("check"), file.as_os_str()]);
        assert!(
            !run.status.success(),
            "{}: exit {:?}",
            file.display(),
            run.status
        );
        assert!(
            run.stderr.contains(reason),
            "{}: {}",
            file.display(),
            run.stderr
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{}: answered in {:?}",
            file.display(),
            started.elapsed()
        );
    }
}
