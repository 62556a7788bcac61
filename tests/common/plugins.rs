//! Plugin helpers: where the built components are, one shared host, plugin
//! declarations for a broker's config, and what a topic's data files hold.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use netlog::config::{Config, PluginDecl};
use netlog::plugin::{
    DEFAULT_MEMORY_BYTES as DEFAULT_PLUGIN_MEMORY, DEFAULT_TIME_PER_CALL as DEFAULT_PLUGIN_TIME,
};
use netlog::plugin::{HostOptions, Limits, Plugin, PluginHost};

use super::{Api, expect_json, test_config};

/// The directory holding the built plugin components: `$NETLOG_PLUGIN_DIR`,
/// or `plugins/dist` in the crate. Panics, saying how to build them, when the
/// directory is missing.
pub fn plugin_dist() -> PathBuf {
    let dir = std::env::var_os("NETLOG_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/dist"));
    if !dir.join("json_validator.wasm").is_file() {
        panic!(
            "no plugin components in {}: run plugins/build.sh (or set NETLOG_PLUGIN_DIR)",
            dir.display()
        );
    }
    dir
}

/// The path of the built component `file` (e.g. `lz4_codec.wasm`).
pub fn plugin_path(file: &str) -> PathBuf {
    let path = plugin_dist().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run plugins/build.sh",
        path.display()
    );
    path
}

/// One plugin host for the whole test binary (no code cache), with logs
/// going to the test's output.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("netlog=debug")
            .try_init();
        PluginHost::new(HostOptions::default()).expect("plugin host")
    })
}

/// Loads `file` from the dist directory under its stem's name.
pub fn load(file: &str, limits: Limits) -> Arc<Plugin> {
    let name = file.trim_end_matches(".wasm").replace('_', "-");
    host()
        .load(&name, &plugin_path(file), limits)
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

/// A declaration of the built component `file` as plugin `name`, with the
/// default limits and no config.
pub fn declare(name: &str, file: &str) -> PluginDecl {
    PluginDecl {
        name: name.to_string(),
        path: plugin_path(file),
        memory_limit: DEFAULT_PLUGIN_MEMORY,
        time_limit: DEFAULT_PLUGIN_TIME,
        fuel: None,
        config: serde_json::json!({}),
    }
}

/// The test configuration on `dir` with `plugins` declared.
pub fn config_with(dir: &Path, plugins: Vec<PluginDecl>) -> Config {
    Config {
        plugins,
        ..test_config(dir)
    }
}

/// The entries of a segment's data file, read straight from disk: for each,
/// its `compver` byte and its stored payload (compressed, for a set).
pub fn data_entries(path: &Path) -> Vec<(u8, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut entries = Vec::new();
    let mut at = SEGMENT_HEADER;
    while at < bytes.len() {
        let head = &bytes[at..at + 9];
        let len = u32::from_be_bytes(head[5..9].try_into().unwrap()) as usize;
        let payload = bytes[at + 9..at + 9 + len].to_vec();
        let crc = u32::from_be_bytes(head[1..5].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&payload), "CRC of the entry at {at}");
        entries.push((head[0], payload));
        at += 9 + len;
    }
    entries
}

/// Bytes of a data file's header, before the first entry.
const SEGMENT_HEADER: usize = 16;

/// Asserts that the broker answers `GET /` with its list of topics.
pub async fn assert_serving(api: &Api) {
    let topics = expect_json(api.get("/").await, 200).await;
    assert!(topics.is_array(), "GET / lists the topics: {topics}");
}
