//! The plugin host against the real components in `plugins/dist`: the
//! first-party plugins doing their jobs, the hostile ones being contained.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{load, plugin_path};
use netlog::log::{Log, LogOptions};
use netlog::message::{Codec, Codecs};
use netlog::plugin::{
    HostOptions, Limits, MessageView, PluginError, PluginHost, PluginKind, RetentionDecision,
    RetentionState, ScannerState, SegmentState, Verdict, check_component,
};

const JSON: &str = "json_validator.wasm";
const LZ4: &str = "lz4_codec.wasm";
const KEEP_UNREAD: &str = "keep_unread.wasm";
const SIZE_CAP: &str = "size_cap.wasm";
const HOSTILE_VALIDATOR: &str = "hostile_validator.wasm";
const HOSTILE_CODEC: &str = "hostile_codec.wasm";
const DELETE_EVERYTHING: &str = "delete_everything.wasm";
const FIRST_PARTY: [&str; 4] = [JSON, LZ4, KEEP_UNREAD, SIZE_CAP];

fn limits_with_time(time_per_call: Duration) -> Limits {
    Limits {
        time_per_call,
        ..Limits::default()
    }
}

/// A hostile validator in `mode`, bound to `topic`.
fn hostile(mode: &str, topic: &str, limits: Limits) -> netlog::plugin::Validator {
    load(HOSTILE_VALIDATOR, limits)
        .validator(topic, &format!(r#"{{"mode": "{mode}"}}"#))
        .unwrap()
}

fn segment(base: u64, next: u64, bytes: u64, modified_ms: u64) -> SegmentState {
    SegmentState {
        base_offset: base,
        next_offset: next,
        bytes,
        created_ms: modified_ms,
        modified_ms,
    }
}

/// Three segments of 1000 bytes, offsets 0..30, the last one active.
fn three_segments(now_ms: u64) -> Vec<SegmentState> {
    vec![
        segment(0, 10, 1000, now_ms - 3000),
        segment(10, 20, 1000, now_ms - 2000),
        segment(20, 30, 1000, now_ms - 1000),
    ]
}

/// The JSON validator accepts JSON and rejects the rest with its reason.
#[test]
fn json_validator_accepts_good_and_rejects_bad() {
    let plugin = load(JSON, Limits::default());
    assert_eq!(plugin.kind(), PluginKind::Validator);
    assert_eq!(plugin.wit_version(), "0.1.0");
    let v = plugin
        .validator("orders", r#"{"required": ["id"]}"#)
        .unwrap();
    let verdicts = v
        .validate(&[br#"{"id": 1}"#, b"not json", br#"{"x": 2}"#])
        .unwrap();
    assert_eq!(verdicts.len(), 3);
    assert_eq!(verdicts[0], Verdict::Accept);
    match &verdicts[1] {
        Verdict::Reject(reason) => assert!(reason.contains("invalid JSON"), "{reason}"),
        v => panic!("not JSON accepted: {v:?}"),
    }
    assert_eq!(
        verdicts[2],
        Verdict::Reject(r#"missing required field "id""#.into())
    );
    let stats = v.stats();
    assert_eq!((stats.calls, stats.rejected, stats.errors), (1, 2, 0));
}

/// A batch of 100 gets 100 verdicts, in order.
#[test]
fn json_validator_judges_a_batch_of_100() {
    let v = load(JSON, Limits::default()).validator("t", "{}").unwrap();
    let msgs: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            if i % 10 == 7 {
                b"{broken".to_vec()
            } else {
                format!(r#"{{"n": {i}}}"#).into_bytes()
            }
        })
        .collect();
    let batch: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let verdicts = v.validate(&batch).unwrap();
    assert_eq!(verdicts.len(), 100);
    for (i, verdict) in verdicts.iter().enumerate() {
        assert_eq!(*verdict == Verdict::Accept, i % 10 != 7, "message {i}");
    }
    assert!(v.validate(&[]).unwrap().is_empty());
}

/// A config the plugin does not understand is an init error at bind time.
#[test]
fn json_validator_refuses_unknown_config_keys() {
    let err = load(JSON, Limits::default())
        .validator("orders", r#"{"requierd": ["id"]}"#)
        .unwrap_err();
    assert!(matches!(err, PluginError::Init { .. }), "{err}");
    assert!(err.to_string().contains("requierd"), "{err}");
}

/// Several threads validate through one validator at once.
#[test]
fn one_validator_serves_concurrent_callers() {
    let v = Arc::new(load(JSON, Limits::default()).validator("t", "{}").unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let msg = format!(r#"{{"thread": {t}, "i": {i}}}"#);
                    assert_eq!(v.validate(&[msg.as_bytes()]).unwrap(), [Verdict::Accept]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = v.stats();
    assert_eq!((stats.calls, stats.errors), (100, 0));
    assert!(stats.instances >= 1 && stats.instances <= 5, "{stats:?}");
}

/// LZ4 round-trips through the `Codec` trait and shrinks repetitive data.
#[test]
fn lz4_roundtrips_and_compresses() {
    let codec = load(LZ4, Limits::default()).codec("t", "{}").unwrap();
    assert_eq!(codec.name(), "lz4-codec");
    for data in [
        Vec::new(),
        b"x".to_vec(),
        (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect(),
    ] {
        let packed = codec.compress(&data).unwrap();
        assert_eq!(codec.decompress(&packed).unwrap(), data);
    }
    let repetitive = b"the same line, again and again\n".repeat(1000);
    let packed = codec.compress(&repetitive).unwrap();
    assert!(
        packed.len() < repetitive.len() / 10,
        "{} bytes",
        packed.len()
    );
    let err = codec.decompress(b"\xff\xff").unwrap_err();
    assert_eq!(err.codec, "lz4-codec");
}

/// A log whose sets are written with the LZ4 plugin reads back identically.
#[test]
fn lz4_codec_writes_and_reads_a_log() {
    let codec = load(LZ4, Limits::default()).codec("t", "{}").unwrap();
    let mut codecs = Codecs::default();
    codecs.bind(4, Arc::new(codec));
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        codecs,
        ..Default::default()
    };
    let msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("message number {i} with some repeated text").into_bytes())
        .collect();
    {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(log.append_set(&msgs, 4).unwrap(), 0);
        log.flush().unwrap();
    }
    let log = Log::open(dir.path(), opts).unwrap();
    let mut reader = log.reader(0).unwrap();
    for (i, want) in msgs.iter().enumerate() {
        let m = reader.next().unwrap().unwrap();
        assert_eq!((m.offset, &m.payload[..]), (i as u64, &want[..]));
    }
    assert!(reader.next().unwrap().is_none());
}

/// keep-unread deletes only what every persistent scanner has read.
#[test]
fn keep_unread_keeps_unread_segments() {
    let r = load(KEEP_UNREAD, Limits::default())
        .retention("t", "{}")
        .unwrap();
    let now = 1_700_000_000_000;
    let mut state = RetentionState {
        topic: "t".into(),
        segments: three_segments(now),
        scanners: vec![
            ScannerState {
                id: "a".into(),
                next_offset: 15,
                persistent: true,
            },
            ScannerState {
                id: "b".into(),
                next_offset: 0,
                persistent: false,
            },
        ],
        now_ms: now,
    };
    let keep_second = RetentionDecision {
        delete_oldest: 1,
        roll_active: false,
    };
    assert_eq!(r.evaluate(&state).unwrap(), keep_second);
    state.scanners[0].next_offset = 0;
    assert_eq!(r.evaluate(&state).unwrap().delete_oldest, 0);
    state.scanners[0].next_offset = 30;
    assert_eq!(r.evaluate(&state).unwrap().delete_oldest, 2);
    state.segments.clear();
    assert_eq!(r.evaluate(&state).unwrap(), RetentionDecision::default());
}

/// keep-unread's age cap deletes old segments even when unread.
#[test]
fn keep_unread_age_cap_overrides_scanners() {
    let r = load(KEEP_UNREAD, Limits::default())
        .retention("t", r#"{"max_age": "2s"}"#)
        .unwrap();
    let now = 1_700_000_000_000;
    let state = RetentionState {
        topic: "t".into(),
        segments: three_segments(now),
        scanners: vec![ScannerState {
            id: "a".into(),
            next_offset: 0,
            persistent: true,
        }],
        now_ms: now,
    };
    assert_eq!(r.evaluate(&state).unwrap().delete_oldest, 1);
}

/// size-cap deletes the oldest segments until the topic fits its cap.
#[test]
fn size_cap_deletes_oldest_over_the_cap() {
    let plugin = load(SIZE_CAP, Limits::default());
    let now = 1_700_000_000_000;
    let state = RetentionState {
        topic: "t".into(),
        segments: three_segments(now),
        scanners: Vec::new(),
        now_ms: now,
    };
    let within = plugin.retention("a", r#"{"max_bytes": 5000}"#).unwrap();
    assert_eq!(within.evaluate(&state).unwrap().delete_oldest, 0);
    let over = plugin.retention("b", r#"{"max_bytes": 1500}"#).unwrap();
    assert_eq!(over.evaluate(&state).unwrap().delete_oldest, 2);
    let by_count = plugin.retention("c", r#"{"max_messages": 25}"#).unwrap();
    assert_eq!(by_count.evaluate(&state).unwrap().delete_oldest, 1);
    let err = plugin.retention("d", "{}").unwrap_err();
    assert!(matches!(err, PluginError::Init { .. }), "{err}");
}

/// An endless loop is stopped by the time limit; the same validator then
/// works on a fresh instance, and another topic is served meanwhile.
#[test]
fn looping_validator_times_out_and_recovers() {
    let limits = limits_with_time(Duration::from_millis(100));
    let plugin = load(HOSTILE_VALIDATOR, limits.clone());
    let looping = plugin.validator("loops", r#"{"mode": "loop"}"#).unwrap();
    let calm = plugin.validator("calm", r#"{"mode": "ok"}"#).unwrap();
    std::thread::scope(|s| {
        let looper = s.spawn(|| {
            let started = Instant::now();
            let err = looping.validate(&[b"m"]).unwrap_err();
            (err, started.elapsed())
        });
        for _ in 0..20 {
            assert_eq!(calm.validate(&[b"m"]).unwrap(), [Verdict::Accept]);
        }
        let (err, took) = looper.join().unwrap();
        println!("loop stopped after {took:?} (limit 100ms)");
        assert!(
            matches!(&err, PluginError::Timeout { plugin, topic, .. }
                if plugin == "hostile-validator" && topic == "loops"),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
    });
    let err = looping.validate(&[b"m"]).unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    let stats = looping.stats();
    assert_eq!((stats.calls, stats.timeouts, stats.errors), (2, 2, 2));
    assert_eq!(stats.instances, 2, "a fresh instance after the timeout");
    assert_eq!(calm.stats().errors, 0);
}

/// A spin shorter than the limit, driven by host.now-ms, completes.
#[test]
fn slow_validator_within_its_limit_succeeds() {
    let plugin = load(
        HOSTILE_VALIDATOR,
        limits_with_time(Duration::from_millis(500)),
    );
    let v = plugin
        .validator("t", r#"{"mode": "slow", "ms": 20}"#)
        .unwrap();
    assert_eq!(
        v.validate(&[b"a", b"b"]).unwrap(),
        [Verdict::Accept, Verdict::Accept]
    );
}

/// A memory hog is stopped by the memory limit; the process lives on.
#[test]
fn memory_hog_is_stopped_by_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        time_per_call: Duration::from_secs(2),
        fuel: None,
    };
    let v = hostile("hog", "hog", limits);
    let err = v.validate(&[b"m"]).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, PluginError::MemoryLimit { limit, .. } if *limit == 16 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("hostile-validator"), "{err}");
    let stats = v.stats();
    assert_eq!((stats.traps, stats.memory_limits), (1, 1));
    assert!(stats.peak_memory_bytes <= 16 << 20, "{stats:?}");
}

/// A trap is reported as one; a validator in mode ok keeps working.
#[test]
fn trapping_validator_reports_the_trap() {
    let plugin = load(HOSTILE_VALIDATOR, Limits::default());
    let trapping = plugin.validator("traps", r#"{"mode": "trap"}"#).unwrap();
    for _ in 0..2 {
        let err = trapping.validate(&[b"m"]).unwrap_err();
        println!("{err}");
        match &err {
            PluginError::Trap {
                plugin,
                topic,
                detail,
                ..
            } => {
                assert_eq!(
                    (plugin.as_str(), topic.as_str()),
                    ("hostile-validator", "traps")
                );
                assert!(detail.contains("unreachable"), "{detail}");
            }
            e => panic!("not a trap: {e}"),
        }
    }
    assert_eq!(trapping.stats().instances, 2);
    let ok = plugin.validator("fine", r#"{"mode": "ok"}"#).unwrap();
    assert_eq!(ok.validate(&[b"m"]).unwrap(), [Verdict::Accept]);
}

/// reject-all rejects every message with its reason.
#[test]
fn reject_all_rejects_every_message() {
    let v = hostile("reject-all", "t", Limits::default());
    let verdicts = v.validate(&[b"a", b"b", b"c"]).unwrap();
    let reject = Verdict::Reject("rejected by hostile-validator".into());
    assert_eq!(verdicts, [reject.clone(), reject.clone(), reject]);
}

/// A verdict count that does not match the batch is a bad answer.
#[test]
fn wrong_verdict_count_is_a_bad_answer() {
    let v = hostile("wrong-count", "t", Limits::default());
    for batch in [&[][..], &[&b"a"[..], b"b"][..]] {
        let err = v.validate(batch).unwrap_err();
        assert!(matches!(err, PluginError::BadAnswer { .. }), "{err}");
    }
    assert_eq!(v.stats().errors, 2);
    assert_eq!(v.stats().instances, 1, "a bad answer keeps the instance");
}

/// An init that fails is an Init error naming the plugin and the topic.
#[test]
fn failing_init_names_plugin_and_topic() {
    let err = load(HOSTILE_VALIDATOR, Limits::default())
        .validator("orders", r#"{"init": "fail"}"#)
        .unwrap_err();
    let PluginError::Init {
        plugin,
        topic,
        reason,
    } = &err
    else {
        panic!("not an init error: {err}");
    };
    assert_eq!(
        (plugin.as_str(), topic.as_str()),
        ("hostile-validator", "orders")
    );
    assert_eq!(reason, "refused by hostile-validator");
    let text = err.to_string();
    assert!(
        text.contains("hostile-validator") && text.contains("orders"),
        "{text}"
    );
}

/// Fuel, when set, stops a loop before the time limit does.
#[test]
fn fuel_limit_stops_a_loop() {
    let limits = Limits {
        fuel: Some(5_000_000),
        time_per_call: Duration::from_secs(10),
        ..Limits::default()
    };
    let v = hostile("loop", "t", limits);
    let err = v.validate(&[b"m"]).unwrap_err();
    assert!(matches!(err, PluginError::FuelExhausted { .. }), "{err}");
    assert_eq!(v.stats().fuel_exhausted, 1);
}

/// A codec that traps or fails gives a CodecError naming the plugin.
#[test]
fn hostile_codec_failures_are_codec_errors() {
    let plugin = load(HOSTILE_CODEC, Limits::default());
    let trap = plugin.codec("t", r#"{"mode": "trap-compress"}"#).unwrap();
    let err = trap.compress(b"data").unwrap_err();
    assert_eq!(err.codec, "hostile-codec");
    assert!(err.to_string().contains("trapped"), "{err}");
    assert_eq!(trap.stats().traps, 1);

    let refuse = plugin
        .codec("t", r#"{"mode": "error-decompress"}"#)
        .unwrap();
    let packed = refuse.compress(b"data").unwrap();
    let err = refuse.decompress(&packed).unwrap_err();
    assert_eq!(err.codec, "hostile-codec");
    assert!(
        err.reason.contains("hostile-codec refuses to decompress"),
        "{err}"
    );
    assert_eq!((refuse.stats().errors, refuse.stats().traps), (1, 0));
}

/// delete-everything's raw answer is u32::MAX and a roll; clamping is the
/// broker's job.
#[test]
fn delete_everything_answers_u32_max() {
    let r = load(DELETE_EVERYTHING, Limits::default())
        .retention("t", "{}")
        .unwrap();
    let state = RetentionState {
        topic: "t".into(),
        segments: three_segments(10_000),
        ..Default::default()
    };
    let decision = r.evaluate(&state).unwrap();
    assert_eq!(
        decision,
        RetentionDecision {
            delete_oldest: u32::MAX,
            roll_active: true
        }
    );
}

/// A codec asked to be a validator is refused with both kinds named.
#[test]
fn wrong_kind_is_refused() {
    let plugin = load(LZ4, Limits::default());
    let err = plugin.validator("t", "{}").unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::WrongKind {
                expected: PluginKind::Validator,
                found: PluginKind::Codec,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "plugin lz4-codec is a codec plugin, not a validator"
    );
}

/// Random bytes and a core module are refused as not components.
#[test]
fn non_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.wasm");
    std::fs::write(&random, b"\x13\x37 definitely not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    for (path, found) in [
        (random, "not WebAssembly"),
        (core, "a core WebAssembly module"),
    ] {
        let err = common::host()
            .load("odd", &path, Limits::default())
            .unwrap_err();
        assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(found) && text.contains("plugin odd"),
            "{text}"
        );
    }
}

/// Writes a copy of `file` with `from` replaced by `to` (same length, so the
/// component stays well-formed) and returns its path inside `dir`.
fn patched(dir: &tempfile::TempDir, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(plugin_path(file)).unwrap();
    assert!(
        replace_all(&mut bytes, from, to) > 0,
        "{from} not found in {file}"
    );
    let path = dir.path().join(file);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Replaces every `from` in `bytes` with `to` (same length); returns how
/// many there were.
fn replace_all(bytes: &mut [u8], from: &str, to: &str) -> usize {
    assert_eq!(from.len(), to.len());
    let mut hits = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        bytes[i + at..i + at + to.len()].copy_from_slice(to.as_bytes());
        i += at + to.len();
        hits += 1;
    }
    hits
}

/// A copy of the 0.1.0 component `file` relabelled as built against 0.2.0:
/// its hook `interface` and its host import (if any) renamed. For a codec
/// or a retention policy, whose types are the same in both versions, that
/// is a genuine 0.2.0 component.
fn as_v0_2(dir: &tempfile::TempDir, file: &str, interface: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(plugin_path(file)).unwrap();
    let hook = format!("netlog:plugin/{interface}@0.1.0");
    assert!(replace_all(&mut bytes, &hook, &hook.replace("0.1.0", "0.2.0")) > 0);
    let host = "netlog:plugin/host@0.1.0";
    replace_all(&mut bytes, host, &host.replace("0.1.0", "0.2.0"));
    let path = dir.path().join(format!("v0_2_{file}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A component built against a version the host does not implement is
/// refused, naming it and the versions the host does implement.
#[test]
fn incompatible_wit_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (version, name) in [("0.3.0", "future"), ("1.1.0", "major"), ("0.0.9", "past")] {
        let path = patched(
            &dir,
            JSON,
            "netlog:plugin/validation@0.1.0",
            &format!("netlog:plugin/validation@{version}"),
        );
        let err = common::host()
            .load(name, &path, Limits::default())
            .unwrap_err();
        assert!(matches!(err, PluginError::Version { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "plugin {name}: built against netlog:plugin@{version}, but this broker supports \
                 netlog:plugin@0.1.x and netlog:plugin@0.2.x"
            )
        );
    }
}

/// A later 0.1 patch release loads as 0.1.
#[test]
fn patch_releases_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = patched(
        &dir,
        JSON,
        "netlog:plugin/validation@0.1.0",
        "netlog:plugin/validation@0.1.9",
    );
    let plugin = common::host()
        .load("patch", &path, Limits::default())
        .unwrap();
    assert_eq!(plugin.wit_version(), "0.1.9");
    assert!(!plugin.sees_message_metadata());
    let v = plugin.validator("t", "{}").unwrap();
    assert_eq!(v.validate(&[b"[1]"]).unwrap(), [Verdict::Accept]);
}

/// A component claiming 0.2.0 whose validator takes 0.1.0's message (a
/// record without key, headers and timestamp) is never called: wasmtime
/// checks the export's types when the hook is bound to a topic (at
/// start-up), not only its name.
#[test]
fn a_mislabelled_validator_is_refused_when_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = patched(
        &dir,
        JSON,
        "netlog:plugin/validation@0.1.0",
        "netlog:plugin/validation@0.2.0",
    );
    let plugin = common::host()
        .load("liar", &path, Limits::default())
        .unwrap();
    let err = plugin.validator("t", "{}").unwrap_err();
    assert!(matches!(err, PluginError::Instantiate { .. }), "{err:?}");
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(text.contains("plugin liar (topic t)"), "{text}");
    assert!(text.contains("failed to convert function"), "{text}");
}

/// A 0.2.0 codec and a 0.2.0 retention policy are called like their 0.1.0
/// builds.
#[test]
fn v0_2_codecs_and_policies_work() {
    let dir = tempfile::tempdir().unwrap();
    let lz4 = common::host()
        .load(
            "lz4-next",
            &as_v0_2(&dir, LZ4, "compression"),
            Limits::default(),
        )
        .unwrap();
    assert_eq!(lz4.wit_version(), "0.2.0");
    let codec = lz4.codec("t", "{}").unwrap();
    let data = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(10);
    let packed = codec.compress(&data).unwrap();
    assert!(packed.len() < data.len());
    assert_eq!(codec.decompress(&packed).unwrap(), data);

    let cap = common::host()
        .load(
            "cap-next",
            &as_v0_2(&dir, SIZE_CAP, "retention"),
            Limits::default(),
        )
        .unwrap();
    assert_eq!(cap.wit_version(), "0.2.0");
    let policy = cap.retention("t", r#"{"max_bytes": 2000}"#).unwrap();
    let now_ms = 1_000_000;
    let state = RetentionState {
        topic: "t".into(),
        segments: three_segments(now_ms),
        scanners: Vec::new(),
        now_ms,
    };
    assert_eq!(policy.evaluate(&state).unwrap().delete_oldest, 1);
}

/// The json-schema plugin is a 0.2.0 validator; through the library it is
/// shown headers and picks its schema by one.
#[test]
fn json_schema_is_a_v0_2_validator() {
    let plugin = load("json_schema.wasm", Limits::default());
    assert_eq!(plugin.kind(), PluginKind::Validator);
    assert_eq!(plugin.wit_version(), "0.2.0");
    assert!(plugin.sees_message_metadata());
    let v = plugin
        .validator(
            "t",
            r#"{"header": "schema", "schemas": {"a": {"type": "array"}, "b": {"type": "object"}}}"#,
        )
        .unwrap();
    let view = |value: &'static [u8], schema: &'static str| MessageView {
        headers: vec![("schema", schema.as_bytes())],
        ..MessageView::plain(value)
    };
    let verdicts = v
        .validate_messages(&[
            view(b"[]", "a"),
            view(b"[]", "b"),
            MessageView::plain(b"[]"),
        ])
        .unwrap();
    assert_eq!(verdicts[0], Verdict::Accept);
    assert_eq!(
        verdicts[1],
        Verdict::Reject(r#"schema "b": at "": type: value is not of type "object""#.into())
    );
    assert_eq!(
        verdicts[2],
        Verdict::Reject(r#"no "schema" header and no default schema"#.into())
    );
}

/// A component exporting no netlog hook is refused, listing its exports.
#[test]
fn component_without_a_hook_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = patched(
        &dir,
        JSON,
        "netlog:plugin/validation@0.1.0",
        "netlog:plugin/validatiom@0.1.0",
    );
    let err = common::host()
        .load("odd", &path, Limits::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::UnknownKind { .. }), "{err}");
    assert!(err.to_string().contains("validatiom"), "{err}");
}

/// A missing file is an Io error naming the path.
#[test]
fn missing_file_is_an_io_error() {
    let path = plugin_path(JSON).with_file_name("no_such_plugin.wasm");
    let err = common::host()
        .load("ghost", &path, Limits::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no_such_plugin.wasm"), "{err}");
}

/// A second host with the same cache directory maps the compiled code.
#[test]
fn cache_is_reused_across_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = HostOptions {
        cache_dir: Some(dir.path().join("cache")),
    };
    let load_all = |host: &PluginHost| {
        let started = Instant::now();
        let from_cache: Vec<bool> = FIRST_PARTY
            .iter()
            .map(|f| {
                host.load(f, &plugin_path(f), Limits::default())
                    .unwrap()
                    .from_cache()
            })
            .collect();
        (from_cache, started.elapsed())
    };
    let (cold, cold_time) = load_all(&PluginHost::new(opts.clone()).unwrap());
    let entries = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    let warm_host = PluginHost::new(opts).unwrap();
    let (warm, warm_time) = load_all(&warm_host);
    println!("4 plugins: cold cache {cold_time:?}, warm cache {warm_time:?}");
    assert_eq!(cold, [false; 4]);
    assert_eq!(entries, 4);
    assert_eq!(warm, [true; 4]);
    let v = warm_host
        .load("json", &plugin_path(JSON), Limits::default())
        .unwrap()
        .validator("t", "{}")
        .unwrap();
    assert_eq!(v.validate(&[b"[1]"]).unwrap(), [Verdict::Accept]);
}

/// check_component names the hook and version and runs init on the config.
#[test]
fn check_component_reports_each_kind() {
    for (file, kind, host_import) in [
        (JSON, PluginKind::Validator, false),
        (LZ4, PluginKind::Codec, false),
        (KEEP_UNREAD, PluginKind::Retention, true),
        (DELETE_EVERYTHING, PluginKind::Retention, true),
    ] {
        let report = check_component(&plugin_path(file), None).unwrap();
        println!("{report}\n");
        assert_eq!((report.kind, report.wit_version.as_str()), (kind, "0.1.0"));
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.imports_host, host_import, "{report}");
    }
    let refused = check_component(&plugin_path(SIZE_CAP), Some(r#"{"max_bytez": 1}"#)).unwrap();
    assert!(!refused.is_ok());
    assert!(
        refused.to_string().contains("init:      refused"),
        "{refused}"
    );
    let err = check_component(&plugin_path(JSON).with_file_name("nope.wasm"), None).unwrap_err();
    assert!(matches!(err, PluginError::Io { .. }), "{err}");
}
