//! The middle layer as a user meets it: errors that keep their causes,
//! publishes racing a delete, and the one settings resolver behind flags,
//! TOML, `settings.json` and the HTTP body.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use netlog::config::{Config, Overrides, RawValue, SettingsInput};
use serde_json::{Value, json};

/// A publish queued behind a slow validator when its topic is deleted gets
/// 404 topic not found, like any later request on the topic.
#[tokio::test]
async fn publish_to_a_topic_deleted_meanwhile_is_topic_not_found() {
    let dir = data_dir();
    let mut slow = declare("slow", "hostile_validator.wasm");
    slow.time_limit = Duration::from_secs(5);
    let broker = spawn_broker_with(config_with(dir.path(), vec![slow]));
    let api = broker.api();
    let hook = json!({"validation": {"plugin": "slow", "config": {"mode": "slow", "ms": 700}}});
    api.create_topic_with("doomed", &hook).await;
    // The first publish holds the writer in the validator; the second waits
    // in the queue when the delete comes.
    let first = tokio::spawn({
        let api = broker.api();
        async move { api.post("/doomed/payload", "first").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn({
        let api = broker.api();
        async move { api.post("/doomed/payload", "second").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect_ok_message(api.delete("/doomed?force=true").await, 200, "topic deleted").await;
    expect_exact_error(second.await.unwrap(), 404, "topic not found").await;
    let first = first.await.unwrap().as_u16();
    assert!(first == 201 || first == 404, "first publish: {first}");
    expect_exact_error(
        api.post("/doomed/payload", "late").await,
        404,
        "topic not found",
    )
    .await;
    broker.stop().await;
}

/// A write that fails (the data file made immutable under the broker) is a
/// 500 whose cause, the OS error and the file, reaches the broker's log.
#[tokio::test]
async fn write_error_cause_reaches_the_log() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("t").await;
    assert_eq!(api.publish("t", "kept").await, 0);
    let data = data_file(dir.path(), "t", 0);
    let immutable = Command::new("chattr").arg("+i").arg(&data).status();
    if !immutable.is_ok_and(|s| s.success()) {
        skip("chattr +i is not available here (needs root and ext4)");
        netlog.kill();
        return;
    }
    struct Mutable<'a>(&'a Path);
    impl Drop for Mutable<'_> {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(self.0).status();
        }
    }
    let _undo = Mutable(&data);
    let resp = api.post("/t/payload", "refused").await;
    let body = expect_error(resp, 500, "unkwown error").await;
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "5xx bodies stay generic: {body}"
    );
    let log = netlog.log();
    assert!(
        log.contains("Operation not permitted") && log.contains(&data.display().to_string()),
        "the cause and the file are logged:\n{log}"
    );
    // Reads still work, and nothing of the failed write is visible.
    assert_eq!(api.payload("t", "0").await, (0, b"kept".to_vec()));
    expect_exact_error(api.get("/t/payload/1").await, 404, "offset not found").await;
    netlog.kill();
}

/// One case of the settings table: a key, its value as written (a JSON
/// number or string), and what every source must make of it.
struct Case {
    key: &'static str,
    value: Value,
    /// The resolved field and its value, or the text the error must hold.
    want: Result<(&'static str, Value), &'static str>,
}

fn cases() -> Vec<Case> {
    let ok = |field, v: Value| Ok((field, v));
    vec![
        Case {
            key: "segment_size",
            value: json!("1MiB"),
            want: ok("segment_size", json!(1 << 20)),
        },
        Case {
            key: "segment_size",
            value: json!(65536),
            want: ok("segment_size", json!(65536)),
        },
        Case {
            key: "segment_age",
            value: json!("7day"),
            want: ok("segment_age", json!("7day")),
        },
        // netlog's numbers are nanoseconds.
        Case {
            key: "segment_age",
            value: json!(172_800_000_000_000u64),
            want: ok("segment_age", json!("2day")),
        },
        Case {
            key: "compression",
            value: json!("gzip"),
            want: ok("compression_type", json!(2)),
        },
        Case {
            key: "compression",
            value: json!("3"),
            want: ok("compression_type", json!(3)),
        },
        Case {
            key: "batch_num_messages",
            value: json!(7),
            want: ok("batch_num_messages", json!(7)),
        },
        // Values netlog took, mistaken as they look: taken (and logged).
        Case {
            key: "segment_age",
            value: json!(86400),
            want: ok("segment_age", json!("86400ns")),
        },
        Case {
            key: "segment_size",
            value: json!(10),
            want: ok("segment_size", json!(10)),
        },
        // What netlog could not use either.
        Case {
            key: "batch_num_messages",
            value: json!("-1"),
            want: Err("batch_num_messages"),
        },
        Case {
            key: "segment_age",
            value: json!("forever"),
            want: Err("segment_age: duration \"forever\""),
        },
        Case {
            key: "compression",
            value: json!("zip"),
            want: Err("\"zip\" is not none, gzip, snappy"),
        },
    ]
}

/// The value as netlog's flag parser would hand it over: text.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn flag_input(key: &str, v: &Value) -> SettingsInput {
    let raw = Some(RawValue::Text(as_text(v)));
    let mut input = SettingsInput::default();
    match key {
        "segment_size" => input.segment_size = raw,
        "segment_age" => input.segment_age = raw,
        "compression" => input.compression_type = raw,
        "batch_num_messages" => input.batch_num_messages = raw,
        other => panic!("no flag for {other}"),
    }
    input
}

/// Settings JSON of a topic made by each source, or the error text.
async fn through_every_source(
    dir: &Path,
    i: usize,
    case: &Case,
) -> Vec<(&'static str, Result<Value, String>)> {
    let mut out = Vec::new();
    // Flags: the server defaults.
    let flags = netlog::config::load(&Overrides {
        defaults: flag_input(case.key, &case.value),
        ..Overrides::default()
    });
    out.push((
        "flags",
        flags
            .map(|c| serde_json::to_value(c.defaults).unwrap())
            .map_err(|e| e.to_string()),
    ));
    // TOML: a declared topic (the file's key for compression is `compression`).
    let toml_value = match &case.value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let file = dir.join(format!("case{i}.toml"));
    std::fs::write(&file, format!("[topics.t]\n{} = {toml_value}\n", case.key)).unwrap();
    let toml = Config::from_file(&file)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let data = dir.join(format!("toml-data{i}"));
            let broker = netlog::broker::Broker::open(Config {
                data_dir: data,
                ..c
            })
            .map_err(|e| e.to_string())?;
            let settings = serde_json::to_value(broker.topic("t").unwrap().settings()).unwrap();
            broker.close().unwrap();
            Ok(settings)
        });
    out.push(("toml", toml));
    // The HTTP body, and settings.json stored by hand in a data directory.
    let http_key = if case.key == "compression" {
        "compression_type"
    } else {
        case.key
    };
    let body = json!({ http_key: case.value });
    let data = dir.join(format!("http-data{i}"));
    let broker = spawn_broker(&data);
    let api = broker.api();
    let resp = api.post("/t", body.to_string()).await;
    let http = if resp.status() == 201 {
        Ok(api.info("t").await["settings"].clone())
    } else {
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        Err(format!(
            "{} {}",
            v["error"].as_str().unwrap_or_default(),
            v["reason"].as_str().unwrap_or_default()
        ))
    };
    broker.stop().await;
    out.push(("http", http));
    let stored = dir.join(format!("stored-data{i}"));
    std::fs::create_dir_all(stored.join("t")).unwrap();
    std::fs::write(stored.join("t/settings.json"), body.to_string()).unwrap();
    let opened = netlog::broker::Broker::open(Config {
        data_dir: stored,
        ..Config::default()
    });
    out.push((
        "settings.json",
        opened.map_err(|e| e.to_string()).map(|b| {
            let s = serde_json::to_value(b.topic("t").unwrap().settings()).unwrap();
            b.close().unwrap();
            s
        }),
    ));
    out
}

/// Flags, TOML, the HTTP body and a stored `settings.json` give the same
/// settings and the same errors for the same input; values netlog took are
/// taken by all of them, even where they look mistaken.
#[tokio::test]
async fn one_resolver_for_every_source() {
    let dir = data_dir();
    for (i, case) in cases().iter().enumerate() {
        for (source, got) in through_every_source(dir.path(), i, case).await {
            let what = format!("case {i} ({} = {}) through {source}", case.key, case.value);
            match (&case.want, &got) {
                (Ok((field, want)), Ok(settings)) => {
                    assert_eq!(&settings[field], want, "{what}: {settings}")
                }
                (Err(_), Ok(_)) if source == "settings.json" => {}
                (Err(text), Err(e)) => {
                    assert!(e.contains(text), "{what}: {e:?} should hold {text:?}")
                }
                (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}

/// `{"segment_age":86400}` (seconds meant, nanoseconds read) is taken, as
/// netlog took it, and the log names the value with a hint.
#[tokio::test]
async fn seconds_as_nanoseconds_are_taken_with_a_hint() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic_with("t", &json!({"segment_age": 86400}))
        .await;
    let log = netlog.log();
    assert!(
        log.contains("segment_age") && log.contains("\"86400s\""),
        "the warning names the value and the hint:\n{log}"
    );
    netlog.kill();
}

/// netlog's own create body, a 1 KiB segment_size included, makes the
/// topic (201, with a warning naming segment_size), and 50 messages
/// published across the rolls it causes read back at their offsets.
#[tokio::test]
async fn netlogs_settings_are_taken_and_work() {
    let dir = data_dir();
    let mut netlog = spawn_netlog_with(dir.path(), &["-monitor_interval", "20ms"]).await;
    let api = netlog.api();
    let body =
        r#"{"segment_age":"1day","segment_size":1024,"batch_num_messages":1,"compression_type":2}"#;
    expect_ok_message(api.post("/n", body).await, 201, "topic created").await;
    let settings = api.info("n").await["settings"].clone();
    assert_eq!(settings["segment_size"], 1024, "{settings}");
    assert_eq!(settings["compression_type"], 2, "{settings}");
    let payload = |i: u64| format!("message {i:03} {}", "x".repeat(90));
    for i in 0..50u64 {
        assert_eq!(api.publish("n", payload(i)).await, i);
        if i % 10 == 9 {
            // Let the monitor roll the segment between bursts.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while api.info("n").await["segments"]
                .as_array()
                .map_or(0, Vec::len)
                < (i / 10 + 2) as usize
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no roll past segment_size"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    for i in 0..50u64 {
        assert_eq!(
            api.payload("n", &i.to_string()).await,
            (i, payload(i).into_bytes())
        );
    }
    let log = netlog.log();
    assert!(
        log.contains("segment_size") && log.contains("1024 bytes"),
        "a warning names the tiny segment_size:\n{log}"
    );
    netlog.kill();
}
