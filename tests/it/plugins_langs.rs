//! Plugins beyond Rust and what the host makes of plugin output, over HTTP
//! against the real broker: the Python (`py-json-fields`, componentize-py)
//! and JavaScript (`js-text-rules`, componentize-js) validators accept and
//! reject with their reasons; a component importing `wasi:http` is refused
//! with the interface named; and `host.log` floods reach the broker's log
//! bounded, rate limited and escaped.
//!
//! The Python and JavaScript components are built by `plugins/build.sh`. When
//! their toolchain could not be installed, the build leaves
//! `dist/<name>.skipped` with the reason, and their tests record a skip
//! (`common::skip`, listed by `./test.sh`) and pass;
//! a component missing without that file fails the test.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// The Python validator (componentize-py).
const PY_JSON_FIELDS: &str = "py_json_fields.wasm";
/// The JavaScript validator (componentize-js).
const JS_TEXT_RULES: &str = "js_text_rules.wasm";
/// The validator that misbehaves on demand.
const HOSTILE_VALIDATOR: &str = "hostile_validator.wasm";

/// Long enough for the guest log's token bucket (10 lines/s) to let one
/// line through again.
const SUMMARY_WAIT: Duration = Duration::from_millis(300);
/// The line `hostile-validator`'s `log-flood` tries to forge (its
/// `FORGED_LINE`): the broker's format, timestamp first.
const FORGED_LINE: &str =
    "2026-01-01T00:00:00.000000Z  INFO netlog::broker: FORGED-BY-PLUGIN all topics deleted";
/// Lines `log-flood` writes per call in the flood test.
const FLOOD_LINES_PER_CALL: usize = 64;
/// Calls the flood test makes.
const FLOOD_CALLS: usize = 5;
/// What the broker's log may grow by over the flood test's calls.
const FLOOD_LOG_BUDGET_BYTES: u64 = 1 << 20;

/// The component `file` of the dist directory, or `None` (after printing
/// why) when the build skipped it because its toolchain could not be
/// installed. Fails the test when it is missing for any other reason.
fn optional_component(file: &str) -> Option<PathBuf> {
    let dist = plugin_dist();
    let path = dist.join(file);
    if path.is_file() {
        return Some(path);
    }
    let marker = dist.join(file.replace(".wasm", ".skipped"));
    match std::fs::read_to_string(&marker) {
        Ok(reason) => {
            skip(&format!("{file} was not built: {}", reason.trim()));
            None
        }
        Err(_) => panic!(
            "{} is missing and plugins/build.sh left no {} saying why: run plugins/build.sh",
            path.display(),
            marker.display()
        ),
    }
}

/// Longest a broker may take to start when it compiles a Python or
/// JavaScript component cold (tens of seconds on an idle machine; a fresh
/// data directory has an empty code cache).
const COLD_START_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits, with [`COLD_START_TIMEOUT`], until the broker answers `GET /`:
/// it answers once its plugins are compiled.
async fn wait_until_loaded(base_url: &str) {
    let client = client_builder()
        .timeout(COLD_START_TIMEOUT)
        .build()
        .expect("HTTP client");
    let api = Api::with_client(base_url, client);
    let started = Instant::now();
    expect_json(api.get("/").await, 200).await;
    eprintln!(
        "broker ready after {:?} (components compiled cold)",
        started.elapsed()
    );
}

/// A validation hook on plugin `plugin` with `config`, as topic settings.
fn validation(plugin: &str, config: Value) -> Value {
    json!({ "validation": { "plugin": plugin, "config": config } })
}

/// Publishes `payload` to `topic`, which must be refused with 422 by plugin
/// `plugin` for a reason containing `why`.
async fn assert_rejected(api: &Api, topic: &str, plugin: &str, payload: &str, why: &str) {
    let resp = api
        .post(&format!("/{topic}/payload"), payload.to_string())
        .await;
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["plugin"], plugin, "{body}");
    let reason = body["reason"].as_str().expect("a reason");
    assert!(
        reason.contains(why),
        "{payload:?} is refused for {why:?}: {body}"
    );
}

/// The topic's latest offset (-1 when empty).
async fn latest(api: &Api, topic: &str) -> i64 {
    api.info(topic).await["latest_offset"]
        .as_i64()
        .expect("latest_offset")
}

/// The Python validator accepts objects with the required fields and rejects the rest with reasons.
#[tokio::test]
async fn python_validator_accepts_and_rejects_with_reasons() {
    let Some(path) = optional_component(PY_JSON_FIELDS) else {
        return;
    };
    let dir = data_dir();
    let mut decl = declare("fields", PY_JSON_FIELDS);
    decl.path = path;
    let broker = spawn_broker_with(config_with(dir.path(), vec![decl]));
    wait_until_loaded(&broker.base_url()).await;
    let api = broker.api();
    let settings = validation("fields", json!({"required": ["id", "amount"]}));
    api.create_topic_with("payments", &settings).await;

    assert_eq!(api.publish("payments", r#"{"id":1,"amount":5}"#).await, 0);
    for (bad, why) in [
        (r#"{"id":2}"#, r#"missing required field "amount""#),
        (r#"[1,2]"#, "not a JSON object (found array)"),
        ("id=3", "not valid JSON"),
    ] {
        assert_rejected(&api, "payments", "fields", bad, why).await;
    }
    let resp = api
        .publish_ndjson("payments", "{\"id\":3,\"amount\":1}\n{\"amount\":2}")
        .await;
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["index"], 1, "the second line is the bad one: {body}");
    assert_eq!(
        latest(&api, "payments").await,
        0,
        "nothing refused is written"
    );
    assert_eq!(
        api.payload("payments", "0").await,
        (0, br#"{"id":1,"amount":5}"#.to_vec())
    );
    broker.stop().await;
}

/// The JavaScript validator enforces its size limit and pattern, with reasons.
#[tokio::test]
async fn javascript_validator_accepts_and_rejects_with_reasons() {
    let Some(path) = optional_component(JS_TEXT_RULES) else {
        return;
    };
    let dir = data_dir();
    let mut decl = declare("rules", JS_TEXT_RULES);
    decl.path = path;
    let broker = spawn_broker_with(config_with(dir.path(), vec![decl]));
    wait_until_loaded(&broker.base_url()).await;
    let api = broker.api();
    let settings = validation(
        "rules",
        json!({"max_bytes": 16, "pattern": "^[a-z]+=\\d+$"}),
    );
    api.create_topic_with("gauges", &settings).await;

    assert_eq!(api.publish("gauges", "temp=21").await, 0);
    assert_rejected(
        &api,
        "gauges",
        "rules",
        "Temp=21",
        "does not match /^[a-z]+=\\d+$/",
    )
    .await;
    assert_rejected(
        &api,
        "gauges",
        "rules",
        "humidity=1234567890",
        "19 bytes is over the limit of 16",
    )
    .await;
    assert_eq!(api.publish("gauges", "rain=0").await, 1);
    assert_eq!(
        latest(&api, "gauges").await,
        1,
        "only the good ones are written"
    );
    broker.stop().await;
}

/// A refused config from the JavaScript plugin stops the topic's creation with init's reason.
#[tokio::test]
async fn javascript_validator_refuses_a_bad_config() {
    let Some(path) = optional_component(JS_TEXT_RULES) else {
        return;
    };
    let dir = data_dir();
    let mut decl = declare("rules", JS_TEXT_RULES);
    decl.path = path;
    let broker = spawn_broker_with(config_with(dir.path(), vec![decl]));
    wait_until_loaded(&broker.base_url()).await;
    let api = broker.api();
    let settings = validation("rules", json!({"pattern": "("}));
    let resp = api.post("/broken", settings.to_string()).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert!((400..500).contains(&status), "{status}: {text}");
    assert!(
        text.contains("not a valid regular expression"),
        "init's reason reaches the client: {text}"
    );
    broker.stop().await;
}

/// `plugin check` refuses a component importing wasi:http, naming it and the build flag to drop it.
#[test]
fn component_importing_wasi_http_is_refused_with_the_fix() {
    let dir = data_dir();
    let file = dir.path().join("fetches.wasm");
    std::fs::write(
        &file,
        component_importing("wasi:http/outgoing-handler@0.2.3"),
    )
    .unwrap();
    let run = run_netlog([OsStr::new("plugin"), OsStr::new("check"), file.as_os_str()]);
    assert!(!run.status.success(), "exit {:?}", run.status);
    let said = format!("{}{}", run.stdout, run.stderr);
    for part in [
        "imports wasi:http/outgoing-handler@0.2.3",
        "does not provide",
        "--disable http",
    ] {
        assert!(said.contains(part), "{part:?} in: {said}");
    }
    assert!(
        !said.contains("cannot link"),
        "not the linker's message: {said}"
    );
}

/// The smallest component importing an instance `name` (an empty instance
/// type), encoded by hand: the preamble, a type section and an import section.
fn component_importing(name: &str) -> Vec<u8> {
    const TYPE_SECTION: u8 = 7;
    const IMPORT_SECTION: u8 = 10;
    const INSTANCE_TYPE: u8 = 0x42;
    const EXTERN_INSTANCE: u8 = 0x05;
    let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
    wasm.extend([TYPE_SECTION, 3, 1, INSTANCE_TYPE, 0]);
    let mut import = vec![1, 0, u8::try_from(name.len()).unwrap()];
    import.extend(name.as_bytes());
    import.extend([EXTERN_INSTANCE, 0]);
    wasm.extend([IMPORT_SECTION, u8::try_from(import.len()).unwrap()]);
    wasm.extend(import);
    wasm
}

/// A plugin flooding host.log with forged 1 MiB lines grows the broker's log by under 1 MiB and forges nothing.
#[tokio::test]
async fn host_log_flood_is_bounded_and_escaped() {
    let dir = data_dir();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\n\
         [plugins.flood]\npath = \"{path}\"\ntime_limit = \"10s\"\n\n\
         [topics.noisy]\nvalidation = {{ plugin = \"flood\", config = {{ mode = \"log-flood\", lines = {FLOOD_LINES_PER_CALL} }} }}\n",
        data = dir.path().join("data").display(),
        path = plugin_path(HOSTILE_VALIDATOR).display(),
    );
    let config_path = dir.path().join("netlog.toml");
    std::fs::File::create(&config_path)
        .and_then(|mut f| f.write_all(config.as_bytes()))
        .expect("write the config");
    let log_path = dir.path().join("netlog.log");
    let broker = Launch::new()
        .listen_from_config()
        .arg("--config")
        .arg(&config_path)
        .env("NO_COLOR", "1")
        .log_to(&log_path)
        .start()
        .await;
    let api = broker.api();

    let before = log_len(&log_path);
    for i in 0..FLOOD_CALLS {
        assert_eq!(api.publish("noisy", format!("m{i}")).await, i as u64);
    }
    // Once the bucket has a token again, the next line brings the count of
    // the suppressed ones with it. Every line was written before its publish
    // was answered; the log is measured after that wait all the same.
    tokio::time::sleep(SUMMARY_WAIT).await;
    let grown = log_len(&log_path) - before;
    eprintln!(
        "log grew by {grown} bytes over {FLOOD_CALLS} calls of {FLOOD_LINES_PER_CALL} 1 MiB lines"
    );
    assert_eq!(api.publish("noisy", "last").await, FLOOD_CALLS as u64);
    let log = eventually(
        "the summary of the suppressed lines in the log",
        PROCESS_TIMEOUT,
        || async {
            let log = std::fs::read_to_string(&log_path).expect("read the log");
            (log.contains("suppressed") && log.contains("plugin log lines")).then_some(log)
        },
    )
    .await;
    drop(broker);

    assert!(
        grown < FLOOD_LOG_BUDGET_BYTES,
        "the log grew by {grown} bytes over {FLOOD_CALLS} calls"
    );
    let flood_lines = log
        .lines()
        .filter(|l| l.contains("FORGED-BY-PLUGIN"))
        .count();
    assert!(flood_lines > 0, "the flood reached the log at all:\n{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with(&FORGED_LINE[..27]),
            "a plugin forged a broker line: {line}"
        );
        if line.contains("FORGED-BY-PLUGIN") {
            assert!(
                line.contains(&format!("flood\\n{FORGED_LINE}\\n")),
                "the newlines around the forged text are escaped: {line:.200}"
            );
            assert!(
                line.contains("plugin=flood") && line.contains("topic=noisy"),
                "{line:.300}"
            );
            assert!(line.contains("… [cut "), "the line is cut: {line:.200}");
        }
    }
    let attempted = (FLOOD_CALLS + 1) * FLOOD_LINES_PER_CALL;
    assert!(
        flood_lines < attempted / 2,
        "{flood_lines} of {attempted} flood lines were written: no rate limit"
    );
    assert!(
        log.contains("suppressed") && log.contains("plugin log lines"),
        "the suppressed lines are summarized:\n{log:.4000}"
    );
}

/// Bytes in the log file so far.
fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
