//! Configuration: the one home for settings, the server's and each topic's.
//!
//! Three layers, each overriding the one before: built-in defaults (netlog's,
//! named constants below and in `settings.rs`), the TOML file given with
//! `--config`, and netlog's command-line flags. [`load`] resolves all three
//! into one [`Config`]. Every value, whatever its source, goes through the
//! same function for its key (`server_value` here, [`settings::resolve`] for
//! topic settings), so a flag and a TOML key accept the same spellings, have
//! the same limits and fail with the same message; only the place named in
//! the error differs (`-monitor_interval`, `netlog.toml: [server]
//! monitor_interval`).
//!
//! A topic's [`Settings`] are netlog's `settings.json` fields plus this
//! broker's extensions (hooks, codec plugins). They are resolved against the
//! server defaults when the topic is created and stored whole, so a later
//! change of defaults does not change an existing topic.

pub mod auth;
mod engine;
mod server;
mod settings;
mod toml_file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{parse_duration, parse_size};
use crate::log::FsyncPolicy;

use crate::plugin::{
    DEFAULT_MEMORY_BYTES as DEFAULT_PLUGIN_MEMORY, DEFAULT_TIME_PER_CALL as DEFAULT_PLUGIN_TIME,
    MIN_MEMORY_BYTES as MIN_PLUGIN_MEMORY,
};
pub use engine::{EngineConfig, JetStreamConfig};
pub use server::*;
pub use settings::{
    DEFAULT_BATCH_INTERVAL, DEFAULT_BATCH_NUM_MESSAGES, DEFAULT_DEDUP_MAX_KEYS,
    DEFAULT_DEDUP_WINDOW, DEFAULT_MIN_SEGMENT_AGE, DEFAULT_MIN_SEGMENT_BYTES, DEFAULT_SEGMENT_AGE,
    DEFAULT_SEGMENT_SIZE, HookSetting, MAX_DEDUP_MAX_KEYS, MAX_DEDUP_WINDOW, MIN_DEDUP_WINDOW,
    MIN_ROLL_AGE_FLOOR, MIN_SEGMENT_AGE, MIN_SEGMENT_SIZE, MessageFormat, OnError, RawValue,
    Settings, SettingsError, SettingsInput, Strictness, check_topic_name,
    resolve as resolve_settings,
};

/// A configuration error, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type).
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The path is not a regular file (a directory, FIFO, socket or
    /// device): refused before it is opened, so nothing blocks or reads
    /// without end.
    #[error("{}: not a regular file (it is {kind}); give a TOML file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{}: {size} bytes, over the limit of {limit} bytes", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text", path.display())]
    NotText {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A value is wrong: `place` names the file, the table and the key (or
    /// the flag).
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
}

/// Default listen address: all interfaces, netlog's port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7200";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;
/// Largest `max_body` allowed: 256 MiB, so one request always fits in one
/// log entry.
pub const MAX_MAX_BODY: u64 = 256 << 20;
/// Default period of the segment monitor: 1 s.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest monitor period or fsync interval: 1 ms.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest monitor period or fsync interval: 1 day. Longer is a mistake
/// (segments would never roll, appends never reach the disk).
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Default [`Config::scanner_idle_ttl`]: a day.
pub const DEFAULT_SCANNER_IDLE_TTL: Duration = Duration::from_secs(86_400);
/// Longest [`Config::scanner_idle_ttl`]: 365 days.
pub const MAX_SCANNER_IDLE_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Largest config file read: 1 MiB. A longer one is refused without being
/// read whole (a typo'd `--config /dev/zero` or a huge file cannot take the
/// memory).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest plugin component file accepted: 64 MiB. Checked on the file's
/// metadata when the config is loaded, before anything reads it.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 << 20;
/// Fewest and most entries an index file may be given (the latter is 256 MiB
/// of index per segment).
pub const INDEX_ENTRIES_RANGE: std::ops::RangeInclusive<u32> = 2..=(16 << 20);

/// A plugin the operator allows, from `[plugins.<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginDecl {
    /// The table name, used by topics to refer to it.
    pub name: String,
    /// The component file (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Memory limit in bytes. Default 32 MiB; at least 64 KiB.
    pub memory_limit: u64,
    /// Wall-clock limit per call. Default 100 ms; above zero.
    pub time_limit: Duration,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
    /// The config a codec plugin's `init` gets (`{}` when not set). A codec
    /// has no per-topic config, since data it wrote must read back the same
    /// way in every topic; validation and retention plugins get theirs per
    /// topic, from the hook's `config`, and ignore this one.
    pub config: serde_json::Value,
}

/// The broker's whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (`:7200` means all interfaces).
    pub listen: String,
    /// Where topics live.
    pub data_dir: PathBuf,
    /// How often the segment monitor runs. Default 1 s; 1 ms to 1 day.
    pub monitor_interval: Duration,
    /// Largest request body, in bytes (413 beyond). Default 64 MiB; 1 byte
    /// to 256 MiB.
    pub max_body: u64,
    /// When appends are fsynced. Default every 1 s; an interval is 1 ms to
    /// 1 day.
    pub fsync: FsyncPolicy,
    /// Entries per index file. Default 102,400; 2 to 16 Mi.
    pub index_entries: u32,
    /// `scanner_idle_ttl`: a scanner that is not persistent and has not been
    /// scanned for this long is removed (netlog kept them until restart).
    /// Default 1day; 1s to 365day.
    pub scanner_idle_ttl: Duration,
    /// Settings new topics start from.
    pub defaults: Settings,
    /// Declared plugins.
    pub plugins: Vec<PluginDecl>,
    /// Topics declared in the file, created at start-up if missing.
    pub topics: BTreeMap<String, SettingsInput>,
    /// Log filter (`info`, `debug`, or a `RUST_LOG`-style directive).
    pub log_level: String,
    /// Connection limits, browser origins and TLS (`[server]`).
    pub server: ServerOptions,
    /// Where this config came from (the file and the flags), so a reload
    /// reads them again. Set by [`load`]; default: no file, nothing to
    /// reload.
    pub source: Overrides,
    /// Tokens and rights (`[auth]`); off by default.
    pub auth: auth::AuthConfig,
    /// Broker-wide bounds on consumer groups (`[groups]`).
    pub groups: GroupLimits,
    /// A second listener serving `/metrics`, `/health` and `/ready` (`[server]
    /// admin_listen`, `host:port`). Default: none.
    pub admin_listen: Option<String>,
    /// How log lines are written. Default text.
    pub log_format: LogFormat,
    /// The TOML file this config was read from, if any.
    pub config_file: Option<PathBuf>,
    /// The web console (`[console]`).
    pub console: ConsoleOptions,
    /// Where topics are stored (`[engine]`); start-only. Default embedded.
    pub engine: EngineConfig,
}

/// How log lines are written (`--log-format`, `[server] log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            monitor_interval: DEFAULT_MONITOR_INTERVAL,
            max_body: DEFAULT_MAX_BODY,
            fsync: FsyncPolicy::default(),
            index_entries: crate::log::DEFAULT_INDEX_ENTRIES,
            scanner_idle_ttl: DEFAULT_SCANNER_IDLE_TTL,
            defaults: Settings::default(),
            plugins: Vec::new(),
            topics: BTreeMap::new(),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            server: ServerOptions::default(),
            source: Overrides::default(),
            auth: auth::AuthConfig::default(),
            groups: GroupLimits::default(),
            admin_listen: None,
            log_format: LogFormat::default(),
            config_file: None,
            console: ConsoleOptions::default(),
            engine: EngineConfig::default(),
        }
    }
}

/// What the command line says: the config file and netlog's flags, as text.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// Server keys given as flags (`listen`, `dir`, `monitor_interval`,
    /// `fsync`, `max_body`, `log_level`), by key.
    pub server: Vec<(&'static str, String)>,
    /// Default topic settings given as flags.
    pub defaults: SettingsInput,
}

/// Resolves the defaults, the file `overrides.config` names and the flags
/// into one validated [`Config`] (see the module docs).
pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut cfg = match &overrides.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    cfg.config_file = overrides.config.clone();
    for (key, value) in &overrides.server {
        let place = || format!("-{}", flag_name(key));
        cfg.set_server(key, &RawValue::Text(value.clone()))
            .map_err(|message| ConfigError::Invalid {
                place: place(),
                message,
            })?;
    }
    cfg.defaults = resolve_settings(
        overrides.defaults.clone(),
        &cfg.defaults,
        &cfg.plugin_names(),
        Strictness::Refuse,
    )
    .map_err(|e| ConfigError::Invalid {
        place: format!("-{}", flag_name(e.key)),
        message: e.message,
    })?;
    cfg.source = overrides.clone();
    Ok(cfg)
}

/// The flag that sets `key` (netlog's spellings).
fn flag_name(key: &str) -> &str {
    match key {
        "data_dir" => "dir",
        "compression_type" => "compression",
        k => k,
    }
}

impl Config {
    /// The names of declared plugins (for resolving codec names).
    pub fn plugin_names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name.clone()).collect()
    }

    /// Turns netlog's `:7200` into an address tokio can bind.
    pub fn listen_addr(&self) -> String {
        bindable(&self.listen)
    }

    /// The admin listener's address, bindable, if one is set.
    pub fn admin_listen_addr(&self) -> Option<String> {
        self.admin_listen.as_deref().map(bindable)
    }

    /// Loads a TOML file on top of the defaults. Only a regular file of at
    /// most [`MAX_CONFIG_BYTES`] is read; anything else is refused, naming
    /// the file, and nothing here blocks (see [`read_regular_file`]).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_regular_file(path, MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|source| ConfigError::NotText {
            path: path.to_path_buf(),
            source,
        })?;
        let file: toml_file::File = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        file.resolve(path)
    }

    /// Sets one server key from any source; the error says what is wrong
    /// with the value (the caller names the place). Paths are taken as
    /// given: the TOML loader joins them to the file's folder first.
    pub(crate) fn set_server(&mut self, key: &str, value: &RawValue) -> Result<(), String> {
        let text = || match value {
            RawValue::Text(t) => Ok(t.clone()),
            RawValue::Int(n) => Err(format!("expected text, found the number {n}")),
            RawValue::Negative(n) => Err(format!("expected text, found the number {n}")),
        };
        match key {
            "listen" => self.listen = listen(&text()?)?,
            "data_dir" | "dir" => self.data_dir = data_dir(&text()?)?,
            "monitor_interval" => self.monitor_interval = interval(value)?,
            "fsync" => self.fsync = fsync(value)?,
            "max_body" => self.max_body = max_body(value)?,
            "log_level" | "loglevel" => self.log_level = log_level(&text()?)?,
            "index_entries" => self.index_entries = index_entries(value)?,
            "scanner_idle_ttl" => self.scanner_idle_ttl = scanner_idle_ttl(value)?,
            "admin_listen" => self.admin_listen = Some(listen(&text()?)?),
            "log_format" => self.log_format = log_format(&text()?)?,
            other => return Err(format!("unknown server setting {other:?}")),
        }
        Ok(())
    }
}

/// netlog's `:7200` as an address tokio can bind.
fn bindable(listen: &str) -> String {
    if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    }
}

/// Checks that `path` is a regular file of at most `limit` bytes, from its
/// metadata (symbolic links followed), without opening it. Returns its size.
pub(crate) fn check_regular_file(path: &Path, limit: u64) -> Result<u64, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    crate::bounded::check(&meta, limit).map_err(|e| unfit(path, limit, e))
}

/// Reads a regular file of at most `limit` bytes, without blocking on a
/// FIFO or reading past the limit (see `bounded`).
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, ConfigError> {
    crate::bounded::read_regular_file(path, limit).map_err(|e| unfit(path, limit, e))
}

/// The config error for a file `bounded` refused.
fn unfit(path: &Path, limit: u64, e: crate::bounded::Unfit) -> ConfigError {
    use crate::bounded::Unfit;
    let path = path.to_path_buf();
    match e {
        Unfit::Io(source) => ConfigError::Read { path, source },
        Unfit::NotAFile(kind) => ConfigError::NotAFile { path, kind },
        Unfit::TooLarge(size) => ConfigError::TooLarge { path, size, limit },
    }
}

/// A listen address: `host:port` or netlog's `:port`.
fn listen(text: &str) -> Result<String, String> {
    let port = text.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some(p) if p.parse::<u16>().is_ok() => Ok(text.to_string()),
        _ if text.parse::<u16>().is_ok() => Err(format!(
            "{text:?} has no host part: write \":{text}\" for all interfaces or \
             \"127.0.0.1:{text}\" for this machine only"
        )),
        _ => Err(format!(
            "{text:?} is not an address: expected host:port, e.g. \":7200\" or \"127.0.0.1:7200\""
        )),
    }
}

/// A data directory: any path but the empty one.
fn data_dir(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        return Err("must not be empty: give a directory, e.g. \"data\"".into());
    }
    Ok(PathBuf::from(text))
}

/// `scanner_idle_ttl`: a duration from 1 s to [`MAX_SCANNER_IDLE_TTL`].
fn scanner_idle_ttl(value: &RawValue) -> Result<Duration, String> {
    let d = match value {
        RawValue::Text(t) => parse_duration(t).map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "expected a duration such as \"1day\", found {}",
                other.show()
            ));
        }
    };
    if d < Duration::from_secs(1) || d > MAX_SCANNER_IDLE_TTL {
        return Err(format!("must be 1s to 365day (got {})", value.show()));
    }
    Ok(d)
}

/// A duration from [`MIN_INTERVAL`] to [`MAX_INTERVAL`]; a number is
/// nanoseconds.
fn interval(value: &RawValue) -> Result<Duration, String> {
    let d = match value {
        RawValue::Int(n) => Duration::from_nanos(*n),
        RawValue::Negative(n) => return Err(format!("{n} is negative")),
        RawValue::Text(t) => parse_duration(t).map_err(|e| e.to_string())?,
    };
    if d < MIN_INTERVAL {
        return Err(format!(
            "must be at least 1ms (got {}): write units, e.g. \"1s\"",
            value.show()
        ));
    }
    if d > MAX_INTERVAL {
        return Err(format!("must be at most 1day (got {})", value.show()));
    }
    Ok(d)
}

/// `always`, `never`, or an interval of at least 1 ms.
fn fsync(value: &RawValue) -> Result<FsyncPolicy, String> {
    if let RawValue::Text(t) = value {
        match t.trim().to_ascii_lowercase().as_str() {
            "always" => return Ok(FsyncPolicy::Always),
            "never" | "os" => return Ok(FsyncPolicy::Never),
            _ => {}
        }
    }
    interval(value)
        .map(FsyncPolicy::Interval)
        .map_err(|e| format!("expected always, never or an interval: {e}"))
}

fn size(value: &RawValue) -> Result<u64, String> {
    match value {
        RawValue::Int(n) => Ok(*n),
        RawValue::Negative(n) => Err(format!("{n} is negative")),
        RawValue::Text(t) => parse_size(t).map_err(|e| e.to_string()),
    }
}

/// 1 byte to [`MAX_MAX_BODY`].
fn max_body(value: &RawValue) -> Result<u64, String> {
    let n = size(value)?;
    if n == 0 || n > MAX_MAX_BODY {
        return Err(format!("must be 1 byte to 256MiB (got {})", value.show()));
    }
    Ok(n)
}

/// A log level, or a `RUST_LOG`-style filter whose every directive ends in
/// a level (`netlog=debug,info`).
fn log_level(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let bad = |why: String| {
        format!(
            "{text:?} is not a log level (trace, debug, info, warn, error, off) or filter: {why}"
        )
    };
    for directive in text.split(',') {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(bad(format!("{directive:?} does not end in a level")));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| bad(e.to_string()))
}

/// `text` or `json`.
fn log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "{text:?} is not a log format: expected \"text\" or \"json\""
        )),
    }
}

fn index_entries(value: &RawValue) -> Result<u32, String> {
    let n = match value {
        RawValue::Int(n) => *n,
        RawValue::Negative(n) => return Err(format!("{n} is negative")),
        RawValue::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a whole number"))?,
    };
    u32::try_from(n)
        .ok()
        .filter(|n| INDEX_ENTRIES_RANGE.contains(n))
        .ok_or_else(|| {
            format!(
                "must be {} to {} (got {n})",
                INDEX_ENTRIES_RANGE.start(),
                INDEX_ENTRIES_RANGE.end()
            )
        })
}

/// A plugin's memory limit: at least [`MIN_PLUGIN_MEMORY`].
pub(crate) fn plugin_memory(value: &RawValue) -> Result<u64, String> {
    let n = size(value)?;
    if n < MIN_PLUGIN_MEMORY {
        return Err("must be at least 64KiB (one wasm page)".into());
    }
    Ok(n)
}

/// A plugin's time limit per call: above zero.
pub(crate) fn plugin_time(value: &RawValue) -> Result<Duration, String> {
    let d = match value {
        RawValue::Int(n) => Duration::from_nanos(*n),
        RawValue::Negative(n) => return Err(format!("{n} is negative")),
        RawValue::Text(t) => parse_duration(t).map_err(|e| e.to_string())?,
    };
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    if d > MAX_INTERVAL {
        return Err("must be at most 1day".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scanner_idle_ttl` takes 1s to 365day, as text with units only.
    #[test]
    fn scanner_idle_ttl_is_bounded() {
        let mut cfg = Config::default();
        let set = |cfg: &mut Config, v: RawValue| cfg.set_server("scanner_idle_ttl", &v);
        assert!(set(&mut cfg, RawValue::Text("2h".into())).is_ok());
        assert_eq!(cfg.scanner_idle_ttl, Duration::from_secs(7200));
        for bad in ["0s", "999ms", "366day", "300000000000year", "soon"] {
            assert!(set(&mut cfg, RawValue::Text(bad.into())).is_err(), "{bad}");
        }
        assert!(set(&mut cfg, RawValue::Int(5)).is_err());
        assert_eq!(cfg.scanner_idle_ttl, Duration::from_secs(7200));
    }

    /// `-listen 7312` says how to write the address.
    #[test]
    fn listen_without_colon_gets_a_hint() {
        let e = listen("7312").unwrap_err();
        assert!(e.contains("\":7312\""), "{e}");
        assert!(listen(":7312").is_ok() && listen("127.0.0.1:0").is_ok());
    }

    /// Zero intervals and bodies, and nonsense log levels, are refused.
    #[test]
    fn zeros_and_nonsense_are_refused() {
        assert!(interval(&"0".into()).is_err());
        assert!(interval(&"0s".into()).is_err());
        assert!(fsync(&"0".into()).is_err());
        assert!(max_body(&"0".into()).is_err());
        assert!(max_body(&"1GiB".into()).is_err());
        assert!(log_level("loud!!").is_err());
        assert!(interval(&"2day".into()).is_err());
        assert!(interval(&"500000000000year".into()).is_err());
        assert!(interval(&"1day".into()).is_ok());
        assert!(data_dir("").is_err() && data_dir(" ").is_err());
        assert!(log_level("debug").is_ok() && log_level("netlog=trace,info").is_ok());
        assert_eq!(log_format("JSON"), Ok(LogFormat::Json));
        assert!(log_format("xml").is_err());
    }
}

/// Broker-wide bounds on consumer groups (`[groups]` in the config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupLimits {
    /// Groups on one topic: 64 by default, 1 to 10,000.
    pub max_groups_per_topic: usize,
    /// Groups in all: 1024 by default, 1 to 100,000.
    pub max_groups: usize,
    /// The sum of every group's `max_pending`: 4,000,000 by default, at
    /// most 1,000,000,000.
    pub max_pending_total: u64,
}

impl Default for GroupLimits {
    fn default() -> GroupLimits {
        GroupLimits {
            max_groups_per_topic: 64,
            max_groups: 1024,
            max_pending_total: 4_000_000,
        }
    }
}

impl GroupLimits {
    /// Refuses values outside the documented ranges.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.max_groups_per_topic) {
            return Err("max_groups_per_topic must be 1 to 10000".into());
        }
        if !(1..=100_000).contains(&self.max_groups) {
            return Err("max_groups must be 1 to 100000".into());
        }
        if !(1..=1_000_000_000).contains(&self.max_pending_total) {
            return Err("max_pending_total must be 1 to 1000000000".into());
        }
        Ok(())
    }
}
