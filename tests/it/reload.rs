//! Hot reload over HTTP and SIGHUP: a broker in this process (and the real
//! binary for SIGHUP) with the real components of `plugins/dist`, its TOML
//! file rewritten between reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use netlog::config::Overrides;
use serde_json::Value;

/// Publishers and stream consumers of the load test.
const PUBLISHERS: usize = 16;
const STREAMS: usize = 4;
/// Reloads done while the load runs.
const RELOADS: usize = 20;
/// Each publisher publishes at least this many messages, and stops at the
/// most once the reloads are done.
const MIN_PER_PUBLISHER: usize = 30;
const MAX_PER_PUBLISHER: usize = 5_000;
/// Longest a stream may take to deliver everything once the load is over.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

/// What a test's TOML file says.
#[derive(Clone)]
struct Spec {
    data_dir: PathBuf,
    listen: String,
    /// The plugin `[topics.load]` validates with: `json` or `hostile`.
    validator: &'static str,
    /// Extra `[topics.<name>]` tables, with no hooks.
    extra_topics: Vec<String>,
    /// `[plugins.json]`'s component file.
    json_path: PathBuf,
    /// Another `[plugins.<name>] = path` entry.
    more_plugins: Vec<(String, PathBuf)>,
    /// With `Some`, an `[auth]` section: token [`LOADER`] (admin, produce
    /// and consume everything) and token [`LATE`], producing to these topics.
    late_produce: Option<Vec<String>>,
}

/// Secrets of the tokens `Spec::late_produce` declares.
const LOADER: &str = "loader-secret-3c9e71a0";
const LATE: &str = "late-secret-8b20d4f5";

impl Spec {
    fn new(data_dir: &Path) -> Spec {
        Spec {
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:7200".into(),
            validator: "json",
            extra_topics: Vec::new(),
            json_path: plugin_path("json_validator.wasm"),
            more_plugins: Vec::new(),
            late_produce: None,
        }
    }

    /// The TOML text. Both validators accept the load's messages; `json`
    /// requires an `id` field.
    fn toml(&self) -> String {
        let mut t = format!(
            "[server]\nlisten = {:?}\ndata_dir = {:?}\nmonitor_interval = \"50ms\"\n\n\
             [plugins.json]\npath = {:?}\n\n[plugins.hostile]\npath = {:?}\n\n",
            self.listen,
            self.data_dir.display().to_string(),
            self.json_path.display().to_string(),
            plugin_path("hostile_validator.wasm").display().to_string(),
        );
        for (name, path) in &self.more_plugins {
            t += &format!(
                "[plugins.{name}]\npath = {:?}\n\n",
                path.display().to_string()
            );
        }
        let config = match self.validator {
            "json" => "{ required = [\"id\"] }",
            _ => "{ mode = \"ok\" }",
        };
        t += &format!(
            "[topics.load]\nvalidation = {{ plugin = {:?}, config = {config} }}\n\n",
            self.validator
        );
        for name in &self.extra_topics {
            t += &format!("[topics.{name}]\nsegment_size = \"1MiB\"\n\n");
        }
        if let Some(late) = &self.late_produce {
            use netlog::config::auth::{digest_hex, secret_digest};
            let digest = |secret: &str| digest_hex(&secret_digest(secret.as_bytes()));
            t += &format!(
                "[[auth.tokens]]\nname = \"loader\"\nsha256 = {:?}\n\
                 produce = [\"*\"]\nconsume = [\"*\"]\nadmin = true\n\n\
                 [[auth.tokens]]\nname = \"late\"\nsha256 = {:?}\nproduce = {late:?}\n\n",
                digest(LOADER),
                digest(LATE),
            );
        }
        t
    }

    fn write(&self, file: &Path) {
        std::fs::write(file, self.toml()).expect("write the config file");
    }
}

/// A broker in this process started from `file`, so it can read it again.
fn start(file: &Path) -> Broker {
    let config = netlog::config::load(&Overrides {
        config: Some(file.to_path_buf()),
        ..Overrides::default()
    })
    .expect("the test config loads");
    spawn_broker_with(config)
}

/// `POST /_reload`, expecting 200; its `changed` and `needs_restart`.
async fn reload_ok(api: &Api) -> (Vec<String>, Vec<String>) {
    let body = expect_json(api.post_empty("/_reload").await, 200).await;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["message"], "reloaded", "{body}");
    let list = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is a list: {body}"))
            .iter()
            .map(|v| v.as_str().expect("strings").to_string())
            .collect()
    };
    (list("changed"), list("needs_restart"))
}

/// The plugin validating `topic`, from topic info.
async fn validation_plugin(api: &Api, topic: &str) -> String {
    let info = api.info(topic).await;
    info["hooks"]["validation"]["plugin"]
        .as_str()
        .unwrap_or_else(|| panic!("topic {topic} has a validator: {info}"))
        .to_string()
}

/// The stored `settings.json` of `topic`.
fn stored_settings(data_dir: &Path, topic: &str) -> Value {
    let text = std::fs::read(data_dir.join(topic).join("settings.json")).expect("settings.json");
    serde_json::from_slice(&text).expect("settings.json is JSON")
}

/// Reads SSE events `(id, data)` from `resp` until `want` says how many
/// there are and that many came, or the deadline passes.
async fn read_stream(
    resp: reqwest::Response,
    want: tokio::sync::watch::Receiver<Option<usize>>,
) -> Vec<(u64, String)> {
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_DEADLINE + Duration::from_secs(60);
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8(block).expect("SSE is UTF-8");
            let mut id = None;
            let mut data = String::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse::<u64>().expect("a numeric id"));
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data += v;
                }
            }
            if let Some(id) = id {
                events.push((id, data));
            }
        }
        if want.borrow().is_some_and(|n| events.len() >= n) {
            return events;
        }
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            Ok(other) => panic!("stream ended after {} events: {other:?}", events.len()),
            Err(_) => panic!("stream stalled after {} events", events.len()),
        }
    }
}

/// Under 16 publishers and 4 streams (all with a bearer token), 20 reloads
/// swap a topic's validator between two components, add a topic, and change
/// another token's rights: every publish is acknowledged once at a distinct
/// offset, streams see every message in order, and each reload's change is
/// visible right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_drops_nothing() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let mut spec = Spec::new(dir.path());
    spec.late_produce = Some(Vec::new());
    spec.write(&file);
    let broker = start(&file);
    let with_token = |secret: &str, timeout: bool| {
        let mut auth = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {secret}").parse().expect("header value");
        auth.insert(reqwest::header::AUTHORIZATION, value);
        let builder = if timeout {
            client_builder()
        } else {
            reqwest::Client::builder().no_proxy()
        };
        let http = builder.default_headers(auth).build().expect("client");
        Api::with_client(&broker.base_url(), http)
    };
    let api = with_token(LOADER, true);
    let late = with_token(LATE, true);
    expect_error(broker.api().get("/load").await, 401, "unauthorized").await;
    assert_serving(&api).await;
    assert_eq!(validation_plugin(&api, "load").await, "json");
    expect_error(api.get("/added").await, 404, "topic not found").await;

    let (total_tx, total_rx) = tokio::sync::watch::channel(None);
    let streams: Vec<_> = futures_util::future::join_all((0..STREAMS).map(|_| {
        // No total timeout: `read_stream` bounds the wait itself.
        let api = with_token(LOADER, false);
        async move { api.get("/load/stream?from=0&heartbeat=1s").await }
    }))
    .await
    .into_iter()
    .map(|resp| tokio::spawn(read_stream(resp, total_rx.clone())))
    .collect();

    let done = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (api, done) = (api.clone(), done.clone());
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for i in 0..MAX_PER_PUBLISHER {
                    if i >= MIN_PER_PUBLISHER && done.load(Ordering::Relaxed) {
                        break;
                    }
                    let payload = format!(r#"{{"id":"{p}-{i}"}}"#);
                    let offset = api.publish("load", payload.clone()).await;
                    acks.push((offset, payload));
                }
                acks
            })
        })
        .collect();

    // The token `late` may produce to `added` from this reload on.
    const GRANT: usize = RELOADS * 3 / 4;
    for k in 1..=RELOADS {
        spec.validator = if k % 2 == 1 { "hostile" } else { "json" };
        if k == RELOADS / 2 {
            spec.extra_topics.push("added".into());
        }
        if k == GRANT {
            spec.late_produce = Some(vec!["added".into()]);
        }
        spec.write(&file);
        let (changed, needs_restart) = reload_ok(&api).await;
        assert!(
            changed.contains(&"topic load: hooks changed".to_string()),
            "reload {k}: {changed:?}"
        );
        assert!(needs_restart.is_empty(), "reload {k}: {needs_restart:?}");
        assert_eq!(validation_plugin(&api, "load").await, spec.validator);
        assert_eq!(
            stored_settings(dir.path(), "load")["validation"]["plugin"],
            spec.validator
        );
        if k == RELOADS / 2 {
            assert!(
                changed.contains(&"topic added: created".to_string()),
                "{changed:?}"
            );
        }
        if k >= RELOADS / 2 {
            expect_json(api.get("/added").await, 200).await;
            let resp = late.post("/added/payload", r#"{"id":"late"}"#).await;
            if k < GRANT {
                expect_error(resp, 403, "forbidden").await;
            } else {
                expect_json(resp, 201).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);

    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for p in publishers {
        for (offset, payload) in p.await.expect("publisher") {
            assert!(
                acked.insert(offset, payload).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
    }
    let total = acked.len();
    eprintln!("{total} messages published across {RELOADS} reloads");
    assert!(total >= PUBLISHERS * MIN_PER_PUBLISHER);
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (0..total as u64).collect::<Vec<_>>(),
        "the acknowledged offsets are exactly 0..{total}"
    );
    total_tx.send_replace(Some(total));
    for s in streams {
        let events = s.await.expect("stream reader");
        assert_eq!(events.len(), total, "a stream saw every message once");
        for (offset, (id, data)) in events.iter().enumerate() {
            assert_eq!(*id, offset as u64, "in order");
            assert_eq!(data, &acked[id], "the payload acknowledged at {id}");
        }
    }
    for offset in (0..total as u64).step_by((total / 50).max(1)) {
        let (at, payload) = api.payload("load", &offset.to_string()).await;
        assert_eq!((at, payload), (offset, acked[&offset].as_bytes().to_vec()));
    }
    // The last reload left `json`, which requires `id`.
    let resp = api.post("/load/payload", r#"{"no_id":1}"#).await;
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["plugin"], "json", "{body}");
    broker.stop().await;
}

/// A reload with two broken `.wasm` files (a changed one, a new one)
/// answers 400 listing both, naming each plugin, and applies nothing of that reload; fixed, the
/// same change applies.
#[tokio::test]
async fn broken_wasm_refuses_the_whole_reload() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let copy = cfg_dir.path().join("json.wasm");
    std::fs::copy(plugin_path("json_validator.wasm"), &copy).expect("copy the component");
    let mut spec = Spec::new(dir.path());
    spec.json_path = copy.clone();
    spec.write(&file);
    let broker = start(&file);
    let api = broker.api();
    assert_serving(&api).await;
    let before = stored_settings(dir.path(), "load");

    std::fs::write(&copy, b"\0asm but not really a component").expect("break the component");
    spec.validator = "hostile";
    spec.extra_topics.push("fresh".into());
    let ghost = cfg_dir.path().join("ghost.wasm");
    std::fs::write(&ghost, b"plain text, not wasm").expect("write a non-component");
    spec.more_plugins.push(("ghost".into(), ghost));
    spec.write(&file);
    let resp = api.post_empty("/_reload").await;
    let body = expect_error(resp, 400, "reload refused").await;
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors listed: {body}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(errors.iter().any(|e| e.contains("plugin json")), "{body}");
    assert!(errors.iter().any(|e| e.contains("plugin ghost")), "{body}");

    // Nothing applied: the old validator, no new topic, settings untouched.
    assert_eq!(validation_plugin(&api, "load").await, "json");
    expect_error(api.get("/fresh").await, 404, "topic not found").await;
    assert_eq!(stored_settings(dir.path(), "load"), before);
    let resp = api.post("/load/payload", r#"{"no_id":1}"#).await;
    expect_error(resp, 422, "rejected by validator").await;
    api.publish("load", r#"{"id":1}"#).await;

    std::fs::copy(plugin_path("json_validator.wasm"), &copy).expect("restore the component");
    spec.more_plugins.clear();
    spec.write(&file);
    let (changed, _) = reload_ok(&api).await;
    assert!(
        changed.contains(&"topic load: hooks changed".to_string()),
        "{changed:?}"
    );
    assert_eq!(validation_plugin(&api, "load").await, "hostile");
    expect_json(api.get("/fresh").await, 200).await;
    broker.stop().await;
}

/// A reload that changes `listen` reports it as needing a restart, keeps
/// serving where it was, and applies the rest; a file that no longer parses
/// is refused with the reason.
#[tokio::test]
async fn listen_change_needs_restart_and_the_rest_applies() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let mut spec = Spec::new(dir.path());
    spec.write(&file);
    let broker = start(&file);
    let api = broker.api();
    assert_serving(&api).await;

    spec.listen = "127.0.0.1:7999".into();
    spec.extra_topics.push("later".into());
    spec.write(&file);
    let (changed, needs_restart) = reload_ok(&api).await;
    assert_eq!(needs_restart, vec!["server listen".to_string()]);
    assert_eq!(changed, vec!["topic later: created".to_string()]);
    expect_json(api.get("/later").await, 200).await;
    // Nothing changed since: an empty reload.
    assert_eq!(reload_ok(&api).await.0, Vec::<String>::new());

    std::fs::write(&file, "[server]\nlisten = 7\n[nonsense]\n").expect("write");
    let body = expect_error(api.post_empty("/_reload").await, 400, "reload refused").await;
    assert!(
        body["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("netlog.toml")),
        "{body}"
    );
    assert_serving(&api).await;
    broker.stop().await;
}

/// A changed `.wasm` file (same name, new bytes) is compiled again and the
/// topics using it get fresh instances; an unchanged file is left alone.
#[tokio::test]
async fn changed_wasm_is_reloaded_and_its_topics_reinstantiated() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let copy = cfg_dir.path().join("json.wasm");
    std::fs::copy(plugin_path("json_validator.wasm"), &copy).expect("copy the component");
    let mut spec = Spec::new(dir.path());
    spec.json_path = copy.clone();
    spec.write(&file);
    let broker = start(&file);
    let api = broker.api();
    assert_serving(&api).await;
    api.publish("load", r#"{"id":1}"#).await;
    let calls = |info: Value| info["hooks"]["validation"]["stats"]["calls"].as_u64();
    assert_eq!(calls(api.info("load").await), Some(1));
    assert_eq!(reload_ok(&api).await.0, Vec::<String>::new());

    // A custom section appended: a valid component with other bytes.
    let mut wasm = std::fs::read(&copy).expect("read");
    wasm.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    std::fs::write(&copy, wasm).expect("write");
    let (changed, _) = reload_ok(&api).await;
    assert_eq!(
        changed,
        [
            "plugin json: reloaded",
            "topic load: hooks re-instantiated: plugin changed"
        ],
    );
    assert_eq!(calls(api.info("load").await), Some(0), "a fresh instance");
    api.publish("load", r#"{"id":2}"#).await;
    let resp = api.post("/load/payload", r#"{"no_id":1}"#).await;
    expect_error(resp, 422, "rejected by validator").await;
    broker.stop().await;
}

/// Topics created over HTTP while a reload swaps a plugin's component end
/// up on the component the reload put in force, like every other topic of
/// that plugin: a create waits for a reload in progress. (Before, a create
/// racing a reload could build its hooks from the old plugin set, miss the
/// reload's list of topics to re-instantiate, and run the old code until
/// the next reload.) The plugin's file alternates between the JSON
/// validator (refuses `not json`) and the hostile one in its `ok` mode
/// (accepts anything); after each reload every topic must answer as the
/// component now in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_created_during_a_reload_get_its_plugins() {
    const TRIALS: usize = 6;
    const CREATES: usize = 12;
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let copy = cfg_dir.path().join("swing.wasm");
    std::fs::copy(plugin_path("json_validator.wasm"), &copy).expect("copy the component");
    let mut spec = Spec::new(dir.path());
    spec.json_path = copy.clone();
    // `load` validates with `hostile`, so its config never meets the JSON one.
    spec.validator = "hostile";
    spec.write(&file);
    let broker = start(&file);
    let api = broker.api();
    assert_serving(&api).await;
    let hook = serde_json::json!({"validation": {"plugin": "json", "config": {}}});
    let mut created = Vec::new();
    for trial in 0..TRIALS {
        let json_now = trial % 2 == 1;
        let component = if json_now {
            "json_validator.wasm"
        } else {
            "hostile_validator.wasm"
        };
        std::fs::copy(plugin_path(component), &copy).expect("swap the component");
        let names: Vec<String> = (0..CREATES).map(|i| format!("c{trial}-{i}")).collect();
        let creates = futures_util::future::join_all(
            names.iter().map(|name| api.create_topic_with(name, &hook)),
        );
        let (reloaded, _) = tokio::join!(reload_ok(&api), creates);
        assert!(
            reloaded.0.contains(&"plugin json: reloaded".to_string()),
            "{reloaded:?}"
        );
        created.extend(names);
        for name in &created {
            let resp = api.post(&format!("/{name}/payload"), "not json").await;
            let status = resp.status().as_u16();
            let want = if json_now { 422 } else { 201 };
            assert_eq!(
                status, want,
                "trial {trial}: topic {name} runs the old component (file holds {component})"
            );
        }
    }
    broker.stop().await;
}

/// Reloads asked at once run one at a time: all answer 200, and the topic
/// they add is created exactly once.
#[tokio::test]
async fn concurrent_reloads_are_serialised() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let mut spec = Spec::new(dir.path());
    spec.write(&file);
    let broker = start(&file);
    let api = broker.api();
    assert_serving(&api).await;
    spec.extra_topics.push("once".into());
    spec.validator = "hostile";
    spec.write(&file);
    let answers = futures_util::future::join_all((0..8).map(|_| reload_ok(&api))).await;
    let created = answers
        .iter()
        .filter(|(changed, _)| changed.contains(&"topic once: created".to_string()))
        .count();
    let swapped = answers
        .iter()
        .filter(|(changed, _)| changed.contains(&"topic load: hooks changed".to_string()))
        .count();
    assert_eq!((created, swapped), (1, 1), "{answers:?}");
    assert_eq!(validation_plugin(&api, "load").await, "hostile");
    broker.stop().await;
}

/// SIGHUP makes the binary read its config file again: a topic added to
/// the file appears; a broken file leaves it serving.
#[tokio::test]
async fn sighup_reloads_the_binary() {
    let dir = data_dir();
    let cfg_dir = data_dir();
    let file = cfg_dir.path().join("netlog.toml");
    let mut spec = Spec::new(dir.path());
    spec.write(&file);
    let mut netlog =
        spawn_netlog_with(dir.path(), &[OsArg::from("--config"), file.clone().into()]).await;
    let api = netlog.api();
    expect_json(api.get("/load").await, 200).await;
    expect_error(api.get("/hup").await, 404, "topic not found").await;

    spec.extra_topics.push("hup".into());
    spec.write(&file);
    hangup(netlog.pid());
    eventually("the topic added by SIGHUP", Duration::from_secs(20), || {
        let api = netlog.api();
        async move { (api.get("/hup").await.status() == 200).then_some(()) }
    })
    .await;

    std::fs::write(&file, "not toml [").expect("write");
    hangup(netlog.pid());
    eventually(
        "the refused reload in the log",
        Duration::from_secs(20),
        || {
            let log = netlog.log();
            async move { log.contains("reload refused").then_some(()) }
        },
    )
    .await;
    assert_serving(&api).await;
    netlog.terminate().await;
}

type OsArg = std::ffi::OsString;

/// Sends SIGHUP to `pid` with `kill(1)`.
fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}
