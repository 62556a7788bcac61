//! Times loading the four first-party plugins the way the broker does at
//! start-up: once with an empty code cache (everything is compiled) and once
//! with the cache the first pass filled (everything is mapped), each with a
//! fresh `PluginHost`. Also times binding each to a topic (instantiate and
//! `init`).
//!
//! `cargo run --release --example plugin_startup [PLUGIN_DIR]`
//! (default: `$NETLOG_PLUGIN_DIR`, else `plugins/dist`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netlog::plugin::{HostOptions, Limits, PluginError, PluginHost, PluginKind};

/// The first-party plugins and the config each is bound with.
const PLUGINS: [(&str, &str); 4] = [
    ("json_validator.wasm", r#"{"required": ["id"]}"#),
    ("lz4_codec.wasm", "{}"),
    ("keep_unread.wasm", r#"{"max_age": "7day"}"#),
    ("size_cap.wasm", r#"{"max_bytes": "10GiB"}"#),
];

/// Loads every plugin with a new host on `cache_dir`; returns the time to
/// create the host and load all, and the time to bind all to a topic.
fn start(dir: &Path, cache_dir: &Path) -> Result<(Duration, Duration), PluginError> {
    let started = Instant::now();
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(cache_dir.to_path_buf()),
    })?;
    let mut plugins = Vec::new();
    for (file, config) in PLUGINS {
        plugins.push((host.load(file, &dir.join(file), Limits::default())?, config));
    }
    let loaded = started.elapsed();
    let started = Instant::now();
    for (plugin, config) in &plugins {
        match plugin.kind() {
            PluginKind::Validator => drop(plugin.validator("startup", config)?),
            PluginKind::Codec => drop(plugin.codec("startup", config)?),
            PluginKind::Retention => drop(plugin.retention("startup", config)?),
        }
    }
    Ok((loaded, started.elapsed()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("NETLOG_PLUGIN_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/dist"));
    let cache = tempfile::tempdir()?;
    let (cold, cold_bind) = start(&dir, cache.path())?;
    let (warm, warm_bind) = start(&dir, cache.path())?;
    println!("loading 4 plugins from {}:", dir.display());
    println!("  cold cache (compile): {cold:>12.3?}   then binding to a topic: {cold_bind:.3?}");
    println!("  warm cache (map):     {warm:>12.3?}   then binding to a topic: {warm_bind:.3?}");
    Ok(())
}
