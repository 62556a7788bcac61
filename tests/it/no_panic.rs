//! No input panics netlog: property tests feed random text and structured
//! near-misses (huge numbers, units, signs, unicode, empty) to every parser
//! of outside input, in process, and the request parameters to a real broker
//! over HTTP, where every answer must be a success or netlog's error shape.

use crate::common;

use std::time::Duration;

use netlog::config::{
    self, HookSetting, OnError, Overrides, RawValue, Settings, SettingsInput, Strictness,
};
use netlog::duration::{parse_duration, parse_offset, parse_size};
use netlog::message;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;

/// Cases per pure parser: cheap, so many.
const PARSER_CASES: u32 = 2_000;
/// Cases that touch the disk or the network.
const IO_CASES: u32 = 300;
/// Longest one HTTP answer may take here (scans below never wait: their
/// scanner has messages, or their client gives up first).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Text close to what the parsers accept, and far from it.
fn near_miss() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,30}",
        "[-+]?[0-9]{1,25}(\\.[0-9]{0,6})?(ns|us|µs|μs|ms|s|m|h|day|days|month|months|year|years|B|b|KB|kb|KiB|MiB|GiB|TiB|EiB|x|)",
        "[0-9]{1,20}(year|month|day)[0-9]{0,20}(h|m|s|ms|ns|day)?",
        "([0-9]{1,3}(h|m|s|ms)){1,8}",
        "[ \t]*(beginning|first|oldest|start|last|latest|end|now|LAST|Now)[ \t]*",
        "[0-9٣१①Ⅻ]{1,5}[sµ㎳]",
        prop::sample::select(vec![
            "",
            " ",
            "0",
            "-0",
            "+0",
            "00",
            "0.0",
            ".",
            "..s",
            "1e400h",
            "NaN",
            "inf",
            "-inf",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "500000000000year",
            "500000000000year500000000000day",
            "1.5.5s",
            "5 s",
            "0x10",
            "5s5",
            "s",
            "ms",
            "year",
            "1yearyear",
            "1day1month",
            "1year-1s",
            "\u{0}",
            "9e18ns",
            "18446744073709551615ns",
            "18446744073709551615s",
            "18446744073709551615h",
            "18446744073709551615TiB",
            "1.8e19s",
            "-1",
            "-5s",
            "1EiB",
            "always",
            "never",
        ])
        .prop_map(str::to_string),
    ]
}

fn raw_value() -> impl Strategy<Value = RawValue> {
    prop_oneof![
        any::<u64>().prop_map(RawValue::Int),
        prop::sample::select(vec![0u64, 1, 999, 1000, 4095, 4096, u64::MAX, u64::MAX - 1])
            .prop_map(RawValue::Int),
        near_miss().prop_map(RawValue::Text),
    ]
}

fn hook() -> impl Strategy<Value = HookSetting> {
    (
        prop::sample::select(vec!["p", "lz4", "", "nope"]),
        prop_oneof![Just(Value::Null), Just(serde_json::json!({"a": 1}))],
        prop::option::of(prop_oneof![Just(OnError::Reject), Just(OnError::Accept)]),
    )
        .prop_map(|(plugin, config, on_error)| HookSetting {
            plugin: plugin.to_string(),
            config,
            on_error,
        })
}

fn settings_input() -> impl Strategy<Value = SettingsInput> {
    let v = || prop::option::of(raw_value());
    (
        (v(), v(), v(), v(), v()),
        prop::option::of(near_miss()),
        prop::option::of(hook()),
        prop::option::of(hook()),
        prop::option::of(prop::collection::btree_map(
            any::<u8>(),
            "[a-z0-9]{0,4}",
            0..4,
        )),
        (v(), v()),
    )
        .prop_map(
            |(
                (age, size, num, interval, ctype),
                compression,
                validation,
                retention,
                codecs,
                (msb, msa),
            )| {
                SettingsInput {
                    segment_age: age,
                    segment_size: size,
                    batch_num_messages: num,
                    batch_interval: interval,
                    compression_type: ctype,
                    compression,
                    validation,
                    retention,
                    codecs,
                    min_segment_bytes: msb,
                    min_segment_age: msa,
                    ..SettingsInput::default()
                }
            },
        )
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// The duration, size and offset grammars return a value or an error for
/// any text, never a panic.
#[test]
fn grammar_parsers_never_panic() {
    runner(PARSER_CASES)
        .run(&near_miss(), |text| {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
            let _ = parse_offset(&text);
            Ok(())
        })
        .unwrap();
}

/// The one settings resolver takes any input, from any source strictness.
#[test]
fn settings_resolver_never_panics() {
    let plugins = vec!["p".to_string(), "lz4".to_string()];
    runner(PARSER_CASES)
        .run(&(settings_input(), any::<bool>()), |(input, stored)| {
            let strictness = if stored {
                Strictness::Stored
            } else {
                Strictness::Refuse
            };
            if let Ok(s) =
                config::resolve_settings(input, &Settings::default(), &plugins, strictness)
            {
                // What it accepted round-trips through its own JSON.
                let json = serde_json::to_vec(&s).expect("settings serialize");
                let _ = serde_json::from_slice::<Settings>(&json);
            }
            Ok(())
        })
        .unwrap();
}

/// JSON bodies of `POST /{topic}` (random bytes, and objects of known keys
/// with random values) parse into `SettingsInput` or fail, never panic.
#[test]
fn settings_json_bodies_never_panic() {
    let keys = prop::sample::select(vec![
        "segment_age",
        "segment_size",
        "batch_num_messages",
        "batch_interval",
        "compression_type",
        "compression",
        "min_segment_bytes",
        "min_segment_age",
        "codecs",
        "validation",
        "retention",
        "bogus",
    ]);
    let value = prop_oneof![
        near_miss().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::Null),
        Just(serde_json::json!({"plugin": "p", "config": {"x": 1}, "on_error": "accept"})),
        Just(serde_json::json!({"4": "lz4", "300": "x"})),
        Just(serde_json::json!([1, 2])),
    ];
    let object = prop::collection::btree_map(keys, value, 0..6)
        .prop_map(|m| serde_json::to_vec(&m).expect("JSON"));
    let body = prop_oneof![object, prop::collection::vec(any::<u8>(), 0..64)];
    let plugins = vec!["p".to_string()];
    runner(PARSER_CASES)
        .run(&body, |bytes| {
            if let Ok(input) = serde_json::from_slice::<SettingsInput>(&bytes) {
                let _ = config::resolve_settings(
                    input,
                    &Settings::default(),
                    &plugins,
                    Strictness::Refuse,
                );
            }
            Ok(())
        })
        .unwrap();
}

/// Server settings from flags and from a TOML file go through `config::load`
/// without panicking, and a refusal names its place.
#[test]
fn server_settings_never_panic() {
    let dir = common::data_dir();
    let key = prop::sample::select(vec![
        "listen",
        "dir",
        "monitor_interval",
        "fsync",
        "max_body",
        "log_level",
        "index_entries",
    ]);
    let toml_key = prop::sample::select(vec![
        "listen",
        "data_dir",
        "monitor_interval",
        "fsync",
        "max_body",
        "log_level",
        "index_entries",
    ]);
    let toml_value = prop_oneof![
        near_miss().prop_map(|t| serde_json::to_string(&t).expect("quoted")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("[]".to_string()),
    ];
    let case = (key, near_miss(), toml_key, toml_value, settings_input());
    let path = dir.path().join("fuzz.toml");
    runner(IO_CASES)
        .run(&case, |(key, text, tkey, tvalue, defaults)| {
            let flags = Overrides {
                config: None,
                server: vec![(key, text)],
                defaults,
            };
            if let Err(e) = config::load(&flags) {
                prop_assert!(e.to_string().starts_with('-'), "a flag error names it: {e}");
            }
            std::fs::write(&path, format!("[server]\n{tkey} = {tvalue}\n")).expect("write");
            let file = Overrides {
                config: Some(path.clone()),
                ..Overrides::default()
            };
            if let Err(e) = config::load(&file) {
                prop_assert!(e.to_string().contains("fuzz.toml"), "names the file: {e}");
            }
            Ok(())
        })
        .unwrap();
}

/// Batch frames: random bytes, and valid frames with a byte flipped or cut,
/// are split or refused, never a panic or a read past the end.
#[test]
fn batch_frames_never_panic() {
    let frames = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6).prop_map(
        |payloads| {
            let mut out = Vec::new();
            for p in payloads {
                message::encode(&mut out, message::PLAIN, &p);
            }
            out
        },
    );
    let damaged = (
        frames,
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(mut buf, at, byte, cut)| {
            if !buf.is_empty() {
                let i = at.index(buf.len());
                if cut {
                    buf.truncate(i);
                } else {
                    buf[i] ^= byte;
                }
            }
            buf
        });
    let input = prop_oneof![prop::collection::vec(any::<u8>(), 0..128), damaged];
    runner(PARSER_CASES)
        .run(&input, |buf| {
            let mut total = 0usize;
            for m in message::plain_messages(&buf) {
                match m {
                    Ok(payload) => total += payload.len() + 9,
                    Err(_) => break,
                }
            }
            prop_assert!(total <= buf.len());
            let _ = message::count_plain(&buf);
            let _ = message::decode(&buf);
            Ok(())
        })
        .unwrap();
}

/// Whether `status` and `body` are a success or netlog's error shape.
fn well_formed(status: u16, body: &[u8]) -> Result<(), String> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{status} with a body that is not JSON ({e}): {body:?}"))?;
    let ok = v["ok"] == Value::Bool(false)
        && v["status"] == status
        && v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("netlog: "));
    if ok {
        Ok(())
    } else {
        Err(format!("{status}: not the error shape: {v}"))
    }
}

/// One query parameter of the HTTP case, by route.
#[derive(Debug, Clone)]
enum HttpCase {
    /// `POST /data/scanner?from=V`.
    ScannerFrom(String),
    /// `GET /data/scan` of a fresh scanner at 0 with these wait, max,
    /// max_bytes.
    Scan(Option<String>, Option<String>, Option<String>),
    /// `GET /empty/scan?wait=V` on a topic with nothing to read: the client
    /// gives up after a moment (a valid wait is a long poll).
    EmptyWait(String),
    /// `GET /data/stream` with from, heartbeat and a `Last-Event-ID`.
    Stream(Option<String>, Option<String>, Option<String>),
    /// `GET /data/payload/V`.
    Payload(String),
    /// `POST /data/messages` with an ndjson body of random lines.
    Ndjson(Vec<u8>),
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let opt = || prop::option::of(near_miss());
    prop_oneof![
        near_miss().prop_map(HttpCase::ScannerFrom),
        (opt(), opt(), opt()).prop_map(|(w, m, b)| HttpCase::Scan(w, m, b)),
        near_miss().prop_map(HttpCase::EmptyWait),
        (opt(), opt(), prop::option::of("[ -~]{0,24}"))
            .prop_map(|(f, h, l)| HttpCase::Stream(f, h, l)),
        near_miss().prop_map(HttpCase::Payload),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(HttpCase::Ndjson),
    ]
}

/// `path` on the broker with `pairs` as its query, percent-encoded.
fn url(api: &common::Api, path: &str, pairs: &[(String, String)]) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&api.url(path)).expect("url");
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url
}

/// Sends one case; returns the status and (a bounded prefix of) the body,
/// or `None` when the client gave up on a long poll on purpose.
async fn send(api: &common::Api, case: HttpCase) -> Option<(u16, Vec<u8>)> {
    let q = |pairs: &[(&str, &Option<String>)]| {
        pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
            .collect::<Vec<_>>()
    };
    let req = match case {
        HttpCase::ScannerFrom(from) => {
            api.http
                .post(url(api, "/data/scanner", &[("from".into(), from)]))
        }
        HttpCase::Scan(wait, max, max_bytes) => {
            let created = api.scanner("data", "from=0").await;
            let id = created["id"].as_str().expect("id").to_string();
            let mut pairs = q(&[("wait", &wait), ("max", &max), ("max_bytes", &max_bytes)]);
            pairs.push(("id".into(), id));
            api.http.get(url(api, "/data/scan", &pairs))
        }
        HttpCase::EmptyWait(wait) => {
            let id = api.scanner_id("empty", "end").await;
            let pairs = [("id".to_string(), id), ("wait".to_string(), wait)];
            let req = api.http.get(url(api, "/empty/scan", &pairs));
            return match tokio::time::timeout(Duration::from_millis(200), req.send()).await {
                Err(_) => None,
                Ok(r) => {
                    let r = r.expect("the broker answers");
                    let status = r.status().as_u16();
                    Some((status, r.bytes().await.expect("body").to_vec()))
                }
            };
        }
        HttpCase::Stream(from, heartbeat, last) => {
            let pairs = q(&[("from", &from), ("heartbeat", &heartbeat)]);
            let mut req = api.http.get(url(api, "/data/stream", &pairs));
            if let Some(l) = last {
                req = req.header("Last-Event-ID", l);
            }
            let mut resp = req.send().await.expect("the broker answers");
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                // A stream never ends: read its first chunk and drop it.
                let first = tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await;
                let chunk = first.expect("a stream greets at once").expect("chunk");
                return Some((status, chunk.map(|c| c.to_vec()).unwrap_or_default()));
            }
            return Some((status, resp.bytes().await.expect("body").to_vec()));
        }
        HttpCase::Payload(offset) => {
            let mut u = reqwest::Url::parse(&api.url("/data/payload/")).expect("url");
            u.path_segments_mut()
                .expect("base")
                .pop_if_empty()
                .push(&offset);
            api.http.get(u)
        }
        HttpCase::Ndjson(body) => api
            .http
            .post(api.url("/data/messages"))
            .header("Content-Type", "application/x-ndjson")
            .body(body),
    };
    let resp = req.send().await.expect("the broker answers");
    let status = resp.status().as_u16();
    Some((status, resp.bytes().await.expect("body").to_vec()))
}

/// Every parameter of the API (offsets, waits, heartbeats, counts, sizes,
/// `Last-Event-ID`, ndjson lines) with random values: a real broker answers
/// each with a success or its error shape, and stays up.
#[test]
fn http_parameters_never_panic_the_broker() {
    let dir = common::data_dir();
    let broker = common::spawn_broker(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = common::client_builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("client");
    let api = common::Api::with_client(&broker.base_url(), http);
    rt.block_on(async {
        api.create_topic("data").await;
        api.create_topic("empty").await;
        for i in 0..50 {
            api.publish("data", format!("message {i}")).await;
        }
    });
    runner(IO_CASES)
        .run(&http_case(), |case| {
            let shown = format!("{case:?}");
            if let Some((status, body)) = rt.block_on(send(&api, case)) {
                prop_assert!(
                    well_formed(status, &body).is_ok(),
                    "{shown}: {:?}",
                    well_formed(status, &body)
                );
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        let resp = api.get("/data/check").await;
        assert_eq!(resp.status(), 200, "the topic is healthy after the run");
    });
    rt.block_on(broker.stop());
}

/// The named cases of issue 13: an absurd `wait` or `heartbeat` on scan and
/// stream is clamped or refused, never a panic, and the broker lives.
#[test]
fn absurd_waits_and_heartbeats_are_clamped() {
    let dir = common::data_dir();
    let broker = common::spawn_broker(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = broker.api();
    rt.block_on(async {
        api.create_topic("t").await;
        api.publish("t", "one").await;
        for absurd in [
            "500000000000year",
            "18446744073709551615s",
            "99999999999999999999year",
        ] {
            // With a message to read, the scan answers at once.
            let id = api.scanner_id("t", "0").await;
            let resp = api.scan("t", &id, absurd).await;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.expect("body");
            assert!(status == 200 || status == 400, "{absurd}: {status}");
            well_formed(status, &body).unwrap();
            // With nothing to read, it waits (clamped) or is refused: either
            // way the broker answers something else meanwhile.
            let id = api.scanner_id("t", "end").await;
            let waiting =
                tokio::time::timeout(Duration::from_millis(300), api.scan("t", &id, absurd)).await;
            if let Ok(resp) = waiting {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.expect("body");
                assert_eq!(
                    status, 400,
                    "{absurd}: an answer before the wait is a refusal"
                );
                well_formed(status, &body).unwrap();
            }
            for path in [
                format!("/t/stream?heartbeat={absurd}"),
                format!("/t/stream?from=end&heartbeat={absurd}"),
            ] {
                let mut resp = api.get(&path).await;
                let status = resp.status().as_u16();
                if status == 200 {
                    let first = tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await;
                    assert!(first.expect("greets at once").expect("chunk").is_some());
                } else {
                    assert_eq!(status, 400, "{path}");
                    well_formed(status, &resp.bytes().await.expect("body")).unwrap();
                }
            }
            assert_eq!(
                api.get("/").await.status(),
                200,
                "the broker lives after {absurd}"
            );
        }
    });
    rt.block_on(broker.stop());
}
