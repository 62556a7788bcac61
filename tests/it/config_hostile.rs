//! The config loader against hostile input, through the real binary: files
//! that are not regular files, files too large to read, and values that can
//! only be mistakes. Each run must end promptly, non-zero, with an error
//! naming the file (and for a value, the table and the key).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Finished, run_netlog};
use tempfile::TempDir;

/// How long a refused start-up may take: it reads no more than 1 MiB and
/// opens nothing that blocks, so this is generous even on a loaded machine.
const PROMPT: Duration = Duration::from_secs(10);
/// Size of the sparse files standing for "a 2 GiB file": never written, so
/// they take no disk.
const TWO_GIB: u64 = 2 << 30;

/// Runs `netlog --config <config>` with a listen address and data directory
/// in `dir`, asserting it ends within [`PROMPT`] with a failure.
fn refused(dir: &Path, config: &Path) -> Finished {
    let started = Instant::now();
    let out = run_netlog([
        "--config".as_ref(),
        config.as_os_str(),
        "-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "-dir".as_ref(),
        dir.join("data").as_os_str(),
    ]);
    let took = started.elapsed();
    assert!(
        took < PROMPT,
        "netlog took {took:?} to refuse {}",
        config.display()
    );
    assert!(
        !out.status.success(),
        "netlog accepted {}: {}{}",
        config.display(),
        out.stdout,
        out.stderr
    );
    assert!(
        out.status.code().is_some(),
        "netlog exited by a signal, not with an error: {:?}\n{}",
        out.status,
        out.stderr
    );
    out
}

/// Asserts the error names every one of `parts`.
fn names(out: &Finished, parts: &[&str]) {
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "the error does not name {part:?}: {}",
            out.stderr
        );
    }
}

fn write_toml(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the config");
    path
}

fn sparse(path: &Path) {
    let f = std::fs::File::create(path).expect("create the sparse file");
    f.set_len(TWO_GIB).expect("extend the sparse file");
}

/// A FIFO as `--config` is refused without opening it (an open would block
/// until a writer came).
#[test]
fn fifo_config_is_refused_without_blocking() {
    let dir = common::data_dir();
    let fifo = dir.path().join("netlog.fifo");
    let c = std::ffi::CString::new(fifo.to_str().expect("UTF-8 path")).expect("no NUL");
    // SAFETY: a valid NUL-terminated path and a plain mode.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let out = refused(dir.path(), &fifo);
    names(&out, &["netlog.fifo", "not a regular file", "FIFO"]);
}

/// `--config /dev/zero` is refused as a device, not read until memory ends.
#[test]
fn dev_zero_config_is_refused() {
    let dir = common::data_dir();
    let out = refused(dir.path(), Path::new("/dev/zero"));
    names(
        &out,
        &["/dev/zero", "not a regular file", "character device"],
    );
}

/// A directory as `--config` is refused, naming it.
#[test]
fn directory_config_is_refused() {
    let dir = common::data_dir();
    let sub = dir.path().join("conf.d");
    std::fs::create_dir(&sub).expect("mkdir");
    let out = refused(dir.path(), &sub);
    names(&out, &["conf.d", "not a regular file", "directory"]);
}

/// A 2 GiB config file is refused on its size, before being read.
#[test]
fn huge_config_is_refused_by_size() {
    let dir = common::data_dir();
    let big = dir.path().join("huge.toml");
    sparse(&big);
    let out = refused(dir.path(), &big);
    names(&out, &["huge.toml", &TWO_GIB.to_string(), "over the limit"]);
}

/// A config of NUL bytes under the size limit is refused as TOML, naming
/// the file (it is read, but only up to the limit).
#[test]
fn nul_config_is_refused_as_toml() {
    let dir = common::data_dir();
    let path = dir.path().join("nul.toml");
    std::fs::write(&path, vec![0u8; 4096]).expect("write NULs");
    let out = refused(dir.path(), &path);
    names(&out, &["nul.toml"]);
}

/// Zero and absurd server values are refused, naming file, table and key.
#[test]
fn zero_and_absurd_server_values_are_refused() {
    let dir = common::data_dir();
    for (key, value, says) in [
        ("monitor_interval", "\"0\"", "at least 1ms"),
        ("monitor_interval", "\"0s\"", "at least 1ms"),
        ("monitor_interval", "0", "at least 1ms"),
        ("monitor_interval", "\"500000000000year\"", ""),
        ("fsync", "\"0\"", "at least 1ms"),
        ("fsync", "\"2day\"", "at most 1day"),
        ("max_body", "0", "1 byte to 256MiB"),
        ("max_body", "\"0B\"", "1 byte to 256MiB"),
        ("max_body", "\"1TiB\"", "1 byte to 256MiB"),
        ("log_level", "\"loud\"", "not a log level"),
        ("log_level", "\"\"", "not a log level"),
        ("index_entries", "0", "must be 2 to"),
        ("data_dir", "\"\"", "must not be empty"),
        ("listen", "\"7200\"", "no host part"),
    ] {
        let path = write_toml(&dir, "server.toml", &format!("[server]\n{key} = {value}\n"));
        let out = refused(dir.path(), &path);
        names(&out, &["server.toml", &format!("[server] {key}"), says]);
    }
}

/// Bad topic settings in `[defaults]` and `[topics.*]` name table and key.
#[test]
fn bad_topic_values_are_refused() {
    let dir = common::data_dir();
    for (table, key, value) in [
        ("defaults", "segment_age", "\"forever\""),
        ("defaults", "segment_size", "\"12 parsecs\""),
        ("defaults", "batch_num_messages", "\"-1\""),
        ("defaults", "batch_interval", "\"soon\""),
        ("defaults", "compression", "\"loud\""),
        ("topics.orders", "segment_size", "\"1EiB\""),
        ("topics.orders", "min_segment_age", "\"10ms\""),
    ] {
        let path = write_toml(
            &dir,
            "topics.toml",
            &format!("[{table}]\n{key} = {value}\n"),
        );
        let out = refused(dir.path(), &path);
        names(&out, &["topics.toml", &format!("[{table}] {key}")]);
    }
}

/// A 2 GiB "plugin" is refused on its size when the config is loaded,
/// before the host reads a byte of it; so are a FIFO and a directory.
#[test]
fn huge_or_special_plugin_files_are_refused() {
    let dir = common::data_dir();
    let big = dir.path().join("huge.wasm");
    sparse(&big);
    let path = write_toml(
        &dir,
        "plugins.toml",
        "[plugins.big]\npath = \"huge.wasm\"\n",
    );
    let out = refused(dir.path(), &path);
    names(
        &out,
        &[
            "plugins.toml",
            "[plugins.big] path",
            "huge.wasm",
            "over the limit",
        ],
    );

    let path = write_toml(
        &dir,
        "plugins.toml",
        "[plugins.dev]\npath = \"/dev/zero\"\n",
    );
    let out = refused(dir.path(), &path);
    names(
        &out,
        &["[plugins.dev] path", "/dev/zero", "not a regular file"],
    );

    std::fs::create_dir(dir.path().join("plugdir")).expect("mkdir");
    let path = write_toml(&dir, "plugins.toml", "[plugins.d]\npath = \"plugdir\"\n");
    let out = refused(dir.path(), &path);
    names(&out, &["[plugins.d] path", "plugdir", "directory"]);
}

/// Bad plugin limits name the plugin's table and the key.
#[test]
fn bad_plugin_limits_are_refused() {
    let dir = common::data_dir();
    let wasm = dir.path().join("small.wasm");
    std::fs::write(&wasm, b"\0asm").expect("write");
    for (key, value) in [
        ("time_limit", "\"0\""),
        ("time_limit", "0"),
        ("time_limit", "\"600000000year\""),
        ("time_limit", "\"2day\""),
        ("memory_limit", "0"),
        ("memory_limit", "\"1KiB\""),
        ("fuel", "0"),
    ] {
        let text = format!("[plugins.p]\npath = \"small.wasm\"\n{key} = {value}\n");
        let path = write_toml(&dir, "limits.toml", &text);
        let out = refused(dir.path(), &path);
        names(&out, &["limits.toml", &format!("[plugins.p] {key}")]);
    }
}

/// The limit is exact: a valid file of exactly `MAX_CONFIG_BYTES` loads
/// (its values read), one byte more is refused by size.
#[test]
fn config_size_limit_is_exact() {
    use netlog::config::{Config, MAX_CONFIG_BYTES};
    let dir = common::data_dir();
    let head = "[server]\nmonitor_interval = \"7s\"\n#";
    let fill = MAX_CONFIG_BYTES as usize - head.len() - 1;
    let text = format!("{head}{}\n", "x".repeat(fill));
    assert_eq!(text.len() as u64, MAX_CONFIG_BYTES);
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, &text).expect("write");
    let cfg = Config::from_file(&path).expect("a file at the limit loads");
    assert_eq!(cfg.monitor_interval, Duration::from_secs(7));

    std::fs::write(&path, format!("{text}#")).expect("write");
    let e = Config::from_file(&path).expect_err("one byte over is refused");
    assert!(e.to_string().contains("edge.toml"), "{e}");
    assert!(e.to_string().contains("over the limit"), "{e}");
}
