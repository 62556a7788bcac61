//! Configuration: the server's, the operator's TOML file, and each topic's
//! settings.
//!
//! Three layers, each overriding the one before: built-in defaults (netlog's),
//! the TOML file given with `--config`, and netlog's command-line flags. The
//! result is one [`Config`], validated right after loading; every error names
//! the file, the table and the key.
//!
//! A topic's [`Settings`] are netlog's `settings.json` (`segment_age`,
//! `segment_size`, `batch_num_messages`, `batch_interval`, `compression_type`)
//! plus this broker's extensions (the topic's hooks and the codec plugins its
//! data was written with). They are resolved against the server defaults when
//! the topic is created and stored whole, so a later change of defaults does
//! not change an existing topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{format_duration, parse_duration};
use crate::log::FsyncPolicy;
use crate::message::{SET_GZIP, SET_NONE, SET_SNAPPY};

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
    /// A value is wrong: `place` names the file, the table and the key.
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
}

/// Default listen address: all interfaces, netlog's port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7200";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default largest request body.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;

/// What a hook does when its plugin traps, times out or errs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: the publish fails and nothing is written.
    #[default]
    Reject,
    /// Fail open: the message is accepted; the failure is logged and counted.
    Accept,
}

/// A hook assignment: which declared plugin, with what config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSetting {
    /// Name of a plugin declared in `[plugins]`.
    pub plugin: String,
    /// The plugin's config, handed to its `init` as JSON.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: serde_json::Value,
    /// Failure policy (validation only). Default `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn is_empty_object(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// A topic's settings, fully resolved (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Segments older than this are deleted by the monitor.
    #[serde(with = "duration_text")]
    pub segment_age: Duration,
    /// The active segment is rolled once its data passes this many bytes.
    pub segment_size: u64,
    /// Most messages written as one set by group commit.
    pub batch_num_messages: usize,
    /// Longest a message waits for others to share its write.
    #[serde(with = "duration_text")]
    pub batch_interval: Duration,
    /// 1 none, 2 gzip, 3 snappy, 4..=15 a codec plugin (see `codecs`).
    pub compression_type: u8,
    /// Validation hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<HookSetting>,
    /// Retention hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<HookSetting>,
    /// Codec plugins this topic's data may use, by compression value
    /// (`"4": "lz4"`); kept even when no longer written so old data reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub codecs: BTreeMap<u8, String>,
}

/// The settings JSON a client sends with `POST /{topic}`: every field is
/// optional and missing ones take the server's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    #[serde(default, with = "opt_duration_text")]
    pub segment_age: Option<Duration>,
    pub segment_size: Option<u64>,
    pub batch_num_messages: Option<usize>,
    #[serde(default, with = "opt_duration_text")]
    pub batch_interval: Option<Duration>,
    pub compression_type: Option<u8>,
    /// Extension: a codec by name (`none`, `gzip`, `snappy`, or a codec plugin).
    pub compression: Option<String>,
    /// Extension: a validation hook naming a declared plugin.
    pub validation: Option<HookSetting>,
    /// Extension: a retention hook naming a declared plugin.
    pub retention: Option<HookSetting>,
}

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `compression_type` outside 0..=3 or an unknown compression name.
    #[error("invalid compression type: {0}")]
    Compression(String),
    /// Any other bad value.
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Resolves `input` against `defaults`. Codec names other than the
    /// built-in ones are returned as `Err(Compression)` unless listed in
    /// `codec_plugins`, in which case they get the next free value 4..=15.
    pub fn resolve(
        input: SettingsInput,
        defaults: &Settings,
        codec_plugins: &[String],
    ) -> Result<Settings, SettingsError> {
        // As in netlog, a zero means "the default", not "nothing".
        let mut s = Settings {
            segment_age: input
                .segment_age
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults.segment_age),
            segment_size: input
                .segment_size
                .filter(|n| *n > 0)
                .unwrap_or(defaults.segment_size),
            batch_num_messages: input
                .batch_num_messages
                .filter(|n| *n > 0)
                .unwrap_or(defaults.batch_num_messages),
            batch_interval: input
                .batch_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults.batch_interval),
            compression_type: defaults.compression_type,
            validation: input.validation.or_else(|| defaults.validation.clone()),
            retention: input.retention.or_else(|| defaults.retention.clone()),
            codecs: defaults.codecs.clone(),
        };
        match input.compression_type {
            None | Some(0) => {}
            Some(c @ (SET_NONE | SET_GZIP | SET_SNAPPY)) => s.compression_type = c,
            Some(c) => return Err(SettingsError::Compression(c.to_string())),
        }
        if let Some(name) = input.compression {
            s.set_compression(&name, codec_plugins)?;
        }
        if s.batch_num_messages == 0 {
            return Err(SettingsError::Invalid(
                "batch_num_messages must be at least 1".into(),
            ));
        }
        if s.segment_size == 0 {
            return Err(SettingsError::Invalid(
                "segment_size must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    /// Replaces zeros (netlog's "use the default") with `defaults`' values,
    /// for settings files written by netlog.
    pub fn fill_zeros(&mut self, defaults: &Settings) {
        if self.segment_age.is_zero() {
            self.segment_age = defaults.segment_age;
        }
        if self.segment_size == 0 {
            self.segment_size = defaults.segment_size;
        }
        if self.batch_num_messages == 0 {
            self.batch_num_messages = defaults.batch_num_messages;
        }
        if self.batch_interval.is_zero() {
            self.batch_interval = defaults.batch_interval;
        }
        if self.compression_type == 0 {
            self.compression_type = defaults.compression_type;
        }
    }

    /// Sets the compression by name, binding a codec plugin to a value.
    pub fn set_compression(
        &mut self,
        name: &str,
        codec_plugins: &[String],
    ) -> Result<(), SettingsError> {
        self.compression_type = match name {
            "none" => SET_NONE,
            "gzip" => SET_GZIP,
            "snappy" => SET_SNAPPY,
            plugin if codec_plugins.iter().any(|p| p == plugin) => {
                match self.codecs.iter().find(|(_, p)| *p == plugin) {
                    Some((value, _)) => *value,
                    None => {
                        let value = (4..=15u8)
                            .find(|v| !self.codecs.contains_key(v))
                            .ok_or_else(|| {
                                SettingsError::Compression(
                                    "all 12 codec plugin values are used".into(),
                                )
                            })?;
                        self.codecs.insert(value, plugin.to_string());
                        value
                    }
                }
            }
            other => {
                return Err(SettingsError::Compression(format!(
                    "{other:?} is not none, gzip, snappy or a declared codec plugin"
                )));
            }
        };
        Ok(())
    }

    /// The name of the compression in use.
    pub fn compression_name(&self) -> &str {
        match self.compression_type {
            SET_GZIP => "gzip",
            SET_SNAPPY => "snappy",
            v => self.codecs.get(&v).map_or("none", String::as_str),
        }
    }
}

mod duration_text {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Str(String),
            Nanos(u64),
        }
        match Text::deserialize(d)? {
            Text::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
            Text::Nanos(n) => Ok(Duration::from_nanos(n)),
        }
    }
}

mod opt_duration_text {
    use super::*;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        duration_text::deserialize(d).map(Some)
    }
}

/// A plugin the operator allows, from `[plugins.<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginDecl {
    /// The table name, used by topics to refer to it.
    pub name: String,
    /// The component file (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Memory limit in bytes.
    pub memory_limit: u64,
    /// Wall-clock limit per call.
    pub time_limit: Duration,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
    /// The config a codec plugin's `init` gets (`{}` when not set). A codec
    /// has no per-topic config, since data it wrote must read back the same
    /// way in every topic; validation and retention plugins get theirs per
    /// topic, from the hook's `config`, and ignore this one.
    pub config: serde_json::Value,
}

/// Default memory limit of a plugin instance.
pub const DEFAULT_PLUGIN_MEMORY: u64 = 32 << 20;
/// Default wall-clock limit of one plugin call.
pub const DEFAULT_PLUGIN_TIME: Duration = Duration::from_millis(100);

/// The broker's whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (`:7200` means all interfaces).
    pub listen: String,
    /// Where topics live.
    pub data_dir: PathBuf,
    /// How often the segment monitor runs.
    pub monitor_interval: Duration,
    /// Largest request body, in bytes (413 beyond).
    pub max_body: u64,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Entries per index file.
    pub index_entries: u32,
    /// Settings new topics start from.
    pub defaults: Settings,
    /// Declared plugins.
    pub plugins: Vec<PluginDecl>,
    /// Topics declared in the file, created at start-up if missing.
    pub topics: BTreeMap<String, SettingsInput>,
    /// Log filter (`info`, `debug`, or a `RUST_LOG`-style directive).
    pub log_level: String,
    /// The file this was loaded from, if any.
    pub source: Option<PathBuf>,
    /// Tokens and rights (`[auth]`); off by default.
    pub auth: auth::AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            monitor_interval: Duration::from_secs(1),
            max_body: DEFAULT_MAX_BODY,
            fsync: FsyncPolicy::default(),
            index_entries: crate::log::DEFAULT_INDEX_ENTRIES,
            defaults: Settings {
                segment_age: Duration::from_secs(30 * 86400),
                segment_size: 1 << 30,
                batch_num_messages: 100,
                batch_interval: Duration::from_millis(200),
                compression_type: SET_NONE,
                validation: None,
                retention: None,
                codecs: BTreeMap::new(),
            },
            plugins: Vec::new(),
            topics: BTreeMap::new(),
            log_level: "info".to_string(),
            source: None,
            auth: auth::AuthConfig::default(),
        }
    }
}

impl Config {
    /// The names of declared plugins (for resolving codec names).
    pub fn plugin_names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name.clone()).collect()
    }

    /// Turns netlog's `:7200` into an address tokio can bind.
    pub fn listen_addr(&self) -> String {
        if self.listen.starts_with(':') {
            format!("0.0.0.0{}", self.listen)
        } else {
            self.listen.clone()
        }
    }

    /// Loads a TOML file on top of the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: toml_file::File = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        file.resolve(path)
    }

    /// Parses an fsync setting: `always`, `never`, or an interval duration.
    pub fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" | "os" => Ok(FsyncPolicy::Never),
            other => parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| format!("expected always, never or a duration: {e}")),
        }
    }
}

pub mod auth;
mod toml_file;
