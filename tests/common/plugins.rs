//! Plugin helpers: where the built components are, one shared host.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use netlog::plugin::{HostOptions, Limits, Plugin, PluginHost};

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
