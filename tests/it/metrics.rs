//! Operations over HTTP: `/_metrics` checked series by series against what
//! was done, `/_health` and `/_ready`, and the binary's JSON logs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// The JSON validator component.
const JSON_VALIDATOR: &str = "json_validator.wasm";

/// One sample of the exposition: name, labels, value.
type Sample = (String, HashMap<String, String>, f64);

/// Parses the Prometheus text format (0.0.4): `#` lines skipped, each other
/// line `name{k="v",...} value`, label values unescaped.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), HashMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest)),
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_labels(rest: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "a quoted label value in {rest:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("escape at the end of {rest:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        match chars.next() {
            Some(',') if chars.peek() == Some(&'}') => break,
            Some(',') => continue,
            Some('}') => break,
            other => panic!("unexpected {other:?} in labels {rest:?}"),
        }
    }
    labels
}

/// The one sample named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let hits: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(hits.len(), 1, "one {name} with {want:?}, found {hits:?}");
    hits[0]
}

async fn scrape(api: &Api) -> (String, Vec<Sample>) {
    scrape_at(api, "/_metrics").await
}

async fn scrape_at(api: &Api, path: &str) -> (String, Vec<Sample>) {
    let resp = api.get(path).await;
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

/// After publishes, rejections, scans and reads, every per-topic,
/// per-plugin and HTTP series says exactly what was done.
#[tokio::test]
async fn metrics_count_what_was_done() {
    let dir = data_dir();
    let broker = spawn_broker_with(config_with(
        dir.path(),
        vec![declare("json", JSON_VALIDATOR)],
    ));
    let api = broker.api();
    let hook = json!({"validation": {"plugin": "json", "config": {"required": ["id"]}}});
    api.create_topic_with("orders", &hook).await;
    api.create_topic("quiet").await;

    let mut bytes = 0;
    for i in 0..3 {
        let m = format!(r#"{{"id":{i}}}"#);
        bytes += m.len();
        api.publish("orders", m).await;
    }
    let lines: Vec<String> = (3..7).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
    bytes += lines.iter().map(String::len).sum::<usize>();
    let resp = api.publish_ndjson("orders", lines.join("\n")).await;
    assert_eq!(resp.status(), 201);
    for bad in ["not json", r#"{"no_id":1}"#] {
        assert_eq!(api.post("/orders/payload", bad).await.status(), 422);
    }
    let resp = api
        .publish_ndjson("orders", "{\"id\":8}\n{\"nope\":0}")
        .await;
    assert_eq!(resp.status(), 422);

    let scanner = api.scanner("orders", "from=oldest&persist=true").await;
    let id = scanner["id"].as_str().unwrap().to_string();
    let resp = api.get(&format!("/orders/scan?id={id}&max=5")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(api.get("/orders/payload/0").await.status(), 200);
    assert_eq!(api.get("/no-such-topic/payload/0").await.status(), 404);

    let (text, m) = scrape(&api).await;
    let orders = [("topic", "orders")];
    assert_eq!(value(&m, "netlog_messages_in_total", &orders), 7.0);
    assert_eq!(value(&m, "netlog_bytes_in_total", &orders), bytes as f64);
    assert_eq!(value(&m, "netlog_messages_out_total", &orders), 6.0);
    assert_eq!(value(&m, "netlog_latest_offset", &orders), 6.0);
    assert_eq!(value(&m, "netlog_segments", &orders), 1.0);
    assert!(value(&m, "netlog_disk_bytes", &orders) > bytes as f64);
    assert_eq!(
        value(
            &m,
            "netlog_scanner_lag",
            &[("topic", "orders"), ("scanner", &id)]
        ),
        2.0,
        "5 of 7 read"
    );
    for (route, n) in [("payload", 3.0), ("messages", 1.0)] {
        let labels = [("topic", "orders"), ("route", route)];
        assert_eq!(value(&m, "netlog_publish_seconds_count", &labels), n);
        let inf = [("topic", "orders"), ("route", route), ("le", "+Inf")];
        assert_eq!(value(&m, "netlog_publish_seconds_bucket", &inf), n);
    }
    let quiet = [("topic", "quiet")];
    assert_eq!(value(&m, "netlog_messages_in_total", &quiet), 0.0);
    assert_eq!(value(&m, "netlog_latest_offset", &quiet), -1.0);
    assert!(
        !m.iter()
            .any(|(n, l, _)| n.starts_with("netlog_publish_seconds")
                && l.get("topic").is_some_and(|t| t == "quiet")),
        "no empty histograms"
    );

    let plugin = [
        ("plugin", "json"),
        ("topic", "orders"),
        ("hook", "validation"),
    ];
    assert_eq!(
        value(&m, "netlog_plugin_calls_total", &plugin),
        7.0,
        "one call per request"
    );
    assert_eq!(value(&m, "netlog_plugin_rejections_total", &plugin), 3.0);
    assert_eq!(value(&m, "netlog_plugin_call_seconds_count", &plugin), 7.0);
    for kind in ["trap", "timeout", "memory", "error", "bad_answer"] {
        let labels = [plugin[0], plugin[1], plugin[2], ("kind", kind)];
        assert_eq!(
            value(&m, "netlog_plugin_failures_total", &labels),
            0.0,
            "{kind}"
        );
    }
    assert!(value(&m, "netlog_plugin_memory_peak_bytes", &plugin) > 0.0);

    let http = |route: &str, code: &str| {
        value(
            &m,
            "netlog_http_requests_total",
            &[("route", route), ("code", code)],
        )
    };
    assert_eq!(http("/{topic}/payload", "201"), 3.0);
    assert_eq!(http("/{topic}/payload", "422"), 2.0);
    assert_eq!(http("/{topic}/messages", "422"), 1.0);
    assert_eq!(http("/{topic}/scan", "200"), 1.0);
    assert_eq!(http("/{topic}/payload/{offset}", "404"), 1.0);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("netlog_http") && l.contains("orders")),
        "no topic name in an HTTP route label:\n{text}"
    );
    assert_eq!(value(&m, "netlog_long_polls", &[]), 0.0);
    assert_eq!(value(&m, "netlog_streams", &[]), 0.0);
    if cfg!(target_os = "linux") {
        assert!(value(&m, "process_resident_memory_bytes", &[]) > 0.0);
        assert!(value(&m, "process_open_fds", &[]) > 0.0);
        value(&m, "process_cpu_seconds_total", &[]);
    }
    broker.stop().await;
}

/// A deleted topic's series go with it, and a topic name that needs escaping
/// comes back intact through the parser.
#[tokio::test]
async fn deleted_topics_leave_the_exposition() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("gone").await;
    api.create_topic("stays").await;
    api.publish("gone", "x").await;
    assert_eq!(api.delete("/gone").await.status(), 200);
    let (text, m) = scrape(&api).await;
    assert!(!text.contains("topic=\"gone\""), "{text}");
    assert_eq!(
        value(&m, "netlog_messages_in_total", &[("topic", "stays")]),
        0.0
    );
    broker.stop().await;
}

/// An open stream shows in `netlog_streams` and leaves it when its client
/// closes: at once, not at its next keep-alive (15 s).
#[tokio::test]
async fn open_streams_are_counted() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    api.create_topic("live").await;
    let stream = api.get("/live/stream?from=oldest").await;
    assert_eq!(stream.status(), 200);
    let (_, m) = scrape(&api).await;
    assert_eq!(value(&m, "netlog_streams", &[]), 1.0);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_, m) = scrape(&api).await;
        if value(&m, "netlog_streams", &[]) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.stop().await;
}

/// `/_health` and `/_ready` answer in netlog's shape; other methods are
/// refused.
#[tokio::test]
async fn health_and_ready_answer() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let body = expect_json(api.get("/_health").await, 200).await;
    assert_eq!(body, json!({"ok": true, "message": "alive"}));
    let body = expect_json(api.get("/_ready").await, 200).await;
    assert_eq!(body["ok"], true);
    assert_eq!(api.post_empty("/_health").await.status(), 405);
    assert_eq!(api.post_empty("/_metrics").await.status(), 405);
    broker.stop().await;
}

/// Runs the binary with `args` through the launcher, checks `/_health`,
/// stops it with SIGTERM (a clean exit) and returns what it logged.
async fn run_and_stop(args: &[&str]) -> String {
    let dir = data_dir();
    let mut netlog = Launch::new()
        .dir(&dir.path().join("data"))
        .args(args)
        .start()
        .await;
    assert_eq!(netlog.api().get("/_health").await.status(), 200);
    netlog.terminate().await;
    netlog.log()
}

/// `--log-format json` writes one JSON object per line, and the start-up
/// line names version, address, data dir, fsync, config, auth, TLS and
/// counts.
#[tokio::test]
async fn json_logs_parse_line_by_line() {
    let log = run_and_stop(&["--log-format", "json"]).await;
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let start = lines
        .iter()
        .find(|l| l["fields"]["message"] == "netlog listening")
        .unwrap_or_else(|| panic!("a start-up line in:\n{log}"));
    let f = &start["fields"];
    assert_eq!(f["version"], env!("CARGO_PKG_VERSION"));
    assert!(f["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{f}");
    assert!(f["data_dir"].as_str().unwrap().ends_with("data"), "{f}");
    for key in ["fsync", "config", "auth", "tls", "topics", "plugins"] {
        assert!(!f[key].is_null(), "{key} in {f}");
    }
    assert_eq!(
        (f["auth"].clone(), f["tls"].clone()),
        (json!(false), json!(false))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "stopped cleanly")
    );
}

/// Text logs written to a file carry no colour codes.
#[tokio::test]
async fn text_logs_to_a_file_have_no_colour() {
    let log = run_and_stop(&[]).await;
    assert!(log.contains("netlog listening"), "{log}");
    assert!(!log.contains('\x1b'), "no ANSI escapes: {log:?}");
}

/// An unknown log format is refused before anything starts.
#[test]
fn unknown_log_format_is_refused() {
    let run = run_netlog(["--log-format", "xml", "-dir", "/nonexistent/never-created"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("log_format") && run.stderr.contains("xml"),
        "{}",
        run.stderr
    );
}

/// `[server] admin_listen` serves `/metrics`, `/health` and `/ready` on a
/// second port, and nothing else there.
#[tokio::test]
async fn admin_listener_serves_the_conventional_paths() {
    let dir = data_dir();
    let config = dir.path().join("netlog.toml");
    std::fs::write(&config, "[server]\nadmin_listen = \"127.0.0.1:0\"\n").unwrap();
    let mut broker = Launch::new()
        .dir(&dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .start()
        .await;
    let api = broker.api();
    api.create_topic("seen").await;
    let admin_addr = broker.admin_addr().expect("the admin listener's address");
    assert_ne!(admin_addr, broker.addr(), "a second port");
    let admin = Api::new(&format!("http://{admin_addr}"));
    let body = expect_json(admin.get("/health").await, 200).await;
    assert_eq!(body["message"], "alive");
    assert_eq!(admin.get("/ready").await.status(), 200);
    let (_, m) = scrape_at(&admin, "/metrics").await;
    assert_eq!(
        value(&m, "netlog_latest_offset", &[("topic", "seen")]),
        -1.0
    );
    assert_eq!(
        admin.get("/seen").await.status(),
        404,
        "no topic routes on the admin port"
    );
    assert_eq!(admin.post_empty("/seen").await.status(), 404);
    broker.terminate().await;
}

/// `log_format` and `admin_listen` are read from `[server]`, and a bad
/// value names the file, table and key.
#[test]
fn server_table_takes_log_format_and_admin_listen() {
    let dir = data_dir();
    let path = dir.path().join("netlog.toml");
    std::fs::write(
        &path,
        "[server]\nlog_format = \"json\"\nadmin_listen = \"127.0.0.1:9100\"\n",
    )
    .unwrap();
    let config = netlog::config::Config::from_file(&path).unwrap();
    assert_eq!(config.log_format, netlog::config::LogFormat::Json);
    assert_eq!(config.admin_listen.as_deref(), Some("127.0.0.1:9100"));
    std::fs::write(&path, "[server]\nlog_format = \"yaml\"\n").unwrap();
    let e = netlog::config::Config::from_file(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("log_format") && e.contains("yaml"), "{e}");
}

/// A codec plugin shows with `hook="compression"`: per batch written, one
/// compress call and one decompress call (the write-side verification), none
/// for a topic without it.
#[tokio::test]
async fn codec_plugin_calls_are_counted() {
    let dir = data_dir();
    let broker = spawn_broker_with(config_with(
        dir.path(),
        vec![declare("lz4", "lz4_codec.wasm")],
    ));
    let api = broker.api();
    api.create_topic_with("packed", &json!({"compression": "lz4"}))
        .await;
    for batch in 0..3 {
        let lines: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"batch":{batch},"i":{i}}}"#))
            .collect();
        assert_eq!(
            api.publish_ndjson("packed", lines.join("\n"))
                .await
                .status(),
            201
        );
    }
    let (_, m) = scrape(&api).await;
    let plugin = [
        ("plugin", "lz4"),
        ("topic", "packed"),
        ("hook", "compression"),
    ];
    assert_eq!(value(&m, "netlog_plugin_calls_total", &plugin), 6.0);
    assert!(
        !m.iter()
            .any(|(n, l, _)| n == "netlog_plugin_rejections_total"
                && l.get("hook").is_some_and(|h| h == "compression")),
        "rejections are a validator's"
    );
    broker.stop().await;
}
