//! Figures for the Python (`py_json_fields.wasm`) and JavaScript
//! (`js_text_rules.wasm`) validators beside the Rust `json_validator.wasm`:
//! component size, compile time cold (empty code cache) and cached (a fresh
//! host mapping what the first pass stored), bind time (instantiate and
//! `init`), the peak linear memory an instance grows to, and the per-call
//! time of `validate` for batches of 1 and 100 messages (median of
//! [`CALLS`] calls after [`WARMUP_CALLS`]).
//!
//! `cargo run --release --example plugin_langs [PLUGIN_DIR]` (or without
//! `--release`: the dev profile builds wasmtime optimized too)
//! (default: `$NETLOG_PLUGIN_DIR`, else `plugins/dist`). Components that are
//! absent (a toolchain build.sh could not install) are reported and skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netlog::plugin::{HostOptions, Limits, PluginError, PluginHost};

/// The validators compared, and the config each is bound with.
const VALIDATORS: [(&str, &str); 3] = [
    ("json_validator.wasm", r#"{"required": ["id", "amount"]}"#),
    ("py_json_fields.wasm", r#"{"required": ["id", "amount"]}"#),
    (
        "js_text_rules.wasm",
        r#"{"max_bytes": 1024, "pattern": "\"amount\""}"#,
    ),
];
/// Calls timed per batch size.
const CALLS: usize = 200;
/// Calls made before timing, so the instance pool and caches are warm.
const WARMUP_CALLS: usize = 20;

/// A JSON object of about 100 bytes that every validator above accepts.
fn message(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id": {i:08}, "user": "user-{i:06}", "action": "checkout", "amount": 1999, "ok": true}}"#
    )
    .into_bytes()
}

fn main() -> Result<(), PluginError> {
    let dir = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("NETLOG_PLUGIN_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/dist"));
    let messages: Vec<Vec<u8>> = (0..100).map(message).collect();
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8} {:>9} {:>11} {:>13}",
        "component",
        "size MiB",
        "cold s",
        "cached s",
        "bind ms",
        "peak MiB",
        "call/1 µs",
        "call/100 µs"
    );
    for (file, config) in VALIDATORS {
        let path = dir.join(file);
        if !path.is_file() {
            println!("{file:<22} absent from {} (skipped)", dir.display());
            continue;
        }
        measure(&path, file, config, &messages)?;
    }
    Ok(())
}

/// Prints one row of figures for the component at `path`.
fn measure(path: &Path, file: &str, config: &str, messages: &[Vec<u8>]) -> Result<(), PluginError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let cache = std::env::temp_dir().join(format!("netlog-plugin-langs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let load = || -> Result<(Duration, _), PluginError> {
        let host = PluginHost::new(HostOptions {
            cache_dir: Some(cache.clone()),
        })?;
        let started = Instant::now();
        let plugin = host.load(file, path, Limits::default())?;
        Ok((started.elapsed(), plugin))
    };
    let (cold, _) = load()?;
    let (cached, plugin) = load()?;
    let started = Instant::now();
    let validator = plugin.validator("figures", config)?;
    let bind = started.elapsed();
    let mut per_call = Vec::new();
    for n in [1, 100] {
        let batch: Vec<&[u8]> = messages[..n].iter().map(Vec::as_slice).collect();
        for _ in 0..WARMUP_CALLS {
            validator.validate(&batch)?;
        }
        let mut times: Vec<Duration> = (0..CALLS)
            .map(|_| {
                let started = Instant::now();
                let verdicts = validator.validate(&batch);
                let took = started.elapsed();
                assert!(verdicts.is_ok_and(|v| v.len() == n), "{file} validates");
                took
            })
            .collect();
        times.sort();
        per_call.push(times[CALLS / 2]);
    }
    let stats = validator.stats();
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "{file:<22} {:>10.1} {:>10.2} {:>10.3} {:>8.1} {:>9.1} {:>11.0} {:>13.0}",
        mib(size),
        cold.as_secs_f64(),
        cached.as_secs_f64(),
        bind.as_secs_f64() * 1e3,
        mib(stats.peak_memory_bytes),
        per_call[0].as_secs_f64() * 1e6,
        per_call[1].as_secs_f64() * 1e6,
    );
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
