//! The operator's TOML file: what loads, and how every mistake is reported
//! (by `Config::from_file`, by `Broker::open` for what only loading the
//! plugins reveals, and by the real binary on its way out).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::common::*;
use netlog::broker::Broker;
use netlog::config::Config;
use serde_json::json;
use tempfile::TempDir;

/// Writes `text` as `netlog.toml` in `dir` and returns its path.
fn write_toml(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("netlog.toml");
    std::fs::write(&path, text).expect("write the TOML file");
    path
}

/// A TOML `path = ...` line for the built component `file`.
fn path_line(file: &str) -> String {
    format!("path = {:?}", plugin_path(file).display().to_string())
}

/// Loads `text` and opens a broker on a data directory inside `dir`; returns
/// the error that must come out of one or the other.
fn open_error(dir: &TempDir, text: &str) -> String {
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::from_file(&write_toml(dir.path(), text)).expect("the file loads")
    };
    Broker::open(config)
        .err()
        .expect("the broker refuses to open")
        .to_string()
}

/// Asserts that `text` contains every one of `parts`.
fn assert_names(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} is named in: {text}");
    }
}

/// A misspelt key is refused, naming the key and the file.
#[test]
fn unknown_key_is_named() {
    let dir = data_dir();
    let path = write_toml(dir.path(), "[server]\nlisen = \"127.0.0.1:0\"\n");
    let err = Config::from_file(&path).unwrap_err().to_string();
    assert_names(&err, &["lisen", &path.display().to_string()]);
}

/// A plugin whose file does not exist is refused, naming its table and key.
#[test]
fn missing_component_file_is_named() {
    let dir = data_dir();
    let path = write_toml(dir.path(), "[plugins.ghost]\npath = \"ghost.wasm\"\n");
    let err = Config::from_file(&path).unwrap_err().to_string();
    assert_names(
        &err,
        &["[plugins.ghost] path", "no such file", "ghost.wasm"],
    );
}

/// A codec assigned as a validator is refused, naming the topic, the hook and both kinds.
#[test]
fn component_of_the_wrong_kind_is_refused() {
    let dir = data_dir();
    let text = format!(
        "[plugins.lz4]\n{}\n\n[topics.orders]\nvalidation = {{ plugin = \"lz4\" }}\n",
        path_line("lz4_codec.wasm")
    );
    let err = open_error(&dir, &text);
    assert_names(
        &err,
        &["orders", "validation", "validator", "\"lz4\"", "codec"],
    );
}

/// An init refusing its config (a hook's or a codec's) stops the broker, naming plugin and topic.
#[test]
fn init_refusing_its_config_is_named() {
    let cases = [
        (
            format!(
                "[plugins.json]\n{}\n\n[topics.orders]\nvalidation = {{ plugin = \"json\", config = {{ bogus = 1 }} }}\n",
                path_line("json_validator.wasm")
            ),
            vec!["json", "orders", "bogus"],
        ),
        (
            format!(
                "[plugins.hostile]\n{}\n\n[topics.orders]\nvalidation = {{ plugin = \"hostile\", config = {{ init = \"fail\" }} }}\n",
                path_line("hostile_validator.wasm")
            ),
            vec!["hostile", "orders", "refused by hostile-validator"],
        ),
        (
            format!(
                "[plugins.sour]\n{}\nconfig = {{ mode = \"sideways\" }}\n\n[topics.orders]\ncompression = \"sour\"\n",
                path_line("hostile_codec.wasm")
            ),
            vec!["sour", "orders", "sideways"],
        ),
    ];
    for (text, parts) in cases {
        let dir = data_dir();
        assert_names(&open_error(&dir, &text), &parts);
    }
}

/// A plugin's `config` table is kept for its `init`, as JSON.
#[test]
fn plugin_config_table_is_loaded() {
    let dir = data_dir();
    let text = format!(
        "[plugins.sour]\n{}\nconfig = {{ mode = \"trap-compress\" }}\n\n[plugins.lz4]\n{}\n",
        path_line("hostile_codec.wasm"),
        path_line("lz4_codec.wasm")
    );
    let config = Config::from_file(&write_toml(dir.path(), &text)).unwrap();
    let by_name = |name: &str| {
        config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is declared"))
            .config
            .clone()
    };
    assert_eq!(by_name("sour"), json!({"mode": "trap-compress"}));
    assert_eq!(by_name("lz4"), json!({}));
}

/// examples/netlog.toml loads, with paths relative to itself, and a broker opens with it.
#[test]
fn example_config_loads_and_opens() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/netlog.toml");
    let config = Config::from_file(&example).expect("examples/netlog.toml loads");
    assert_eq!(config.plugins.len(), 4);
    // Its topics name plugins only it declares: it must not share the plain
    // run's ./data, or the plain run finds them there.
    assert_eq!(
        config.data_dir.file_name(),
        Some(OsStr::new("data-example")),
        "the example keeps its data apart from the plain run's"
    );
    for plugin in &config.plugins {
        assert!(plugin.path.is_file(), "{} exists", plugin.path.display());
    }
    let dir = data_dir();
    let broker = Broker::open(Config {
        data_dir: dir.path().to_path_buf(),
        ..config
    })
    .expect("a broker opens with the example config");
    assert_eq!(broker.topic_names(), ["metrics", "orders"]);
    let orders = broker.topic("orders").unwrap();
    assert!(orders.hooks().validator.is_some() && orders.hooks().retention.is_some());
    assert_eq!(orders.settings().compression_name(), "lz4");
    assert_eq!(
        broker
            .topic("metrics")
            .unwrap()
            .settings()
            .compression_name(),
        "snappy"
    );
    broker.close().unwrap();
}

/// The binary exits non-zero with the reason on stderr, at parse time and at open time.
#[test]
fn binary_reports_config_errors() {
    let dir = data_dir();
    let path = write_toml(dir.path(), "[server]\nlisen = \"127.0.0.1:0\"\n");
    let run = run_netlog([OsStr::new("--config"), path.as_os_str()]);
    assert!(!run.status.success(), "exit {:?}", run.status);
    assert_names(&run.stderr, &["config error", "lisen"]);

    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[plugins.hostile]\n{}\n\n[topics.orders]\nvalidation = {{ plugin = \"hostile\", config = {{ init = \"fail\" }} }}\n",
        dir.path().join("data").display().to_string(),
        path_line("hostile_validator.wasm")
    );
    let path = write_toml(dir.path(), &text);
    let run = run_netlog([OsStr::new("--config"), path.as_os_str()]);
    assert!(!run.status.success(), "exit {:?}", run.status);
    assert_names(
        &run.stderr,
        &["hostile", "orders", "refused by hostile-validator"],
    );
}
