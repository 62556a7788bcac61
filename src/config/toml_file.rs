//! The schema of the operator's TOML file, as written, before resolution.
//!
//! Every table denies unknown keys, so a typo is an error that names the key
//! and its line. Values are checked in `resolve`, whose errors name the file,
//! the table and the key (`netlog.toml: [topics.orders] segment_size: ...`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Config, ConfigError, DEFAULT_PLUGIN_MEMORY, DEFAULT_PLUGIN_TIME, HookSetting, OnError,
    PluginDecl, Settings, SettingsInput,
};
use crate::duration::{parse_duration, parse_size};

/// Most entries an index file may be given (256 MiB of index per segment).
const MAX_INDEX_ENTRIES: u32 = 16 << 20;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    server: Server,
    #[serde(default)]
    defaults: Topic,
    #[serde(default)]
    plugins: BTreeMap<String, Plugin>,
    #[serde(default)]
    topics: BTreeMap<String, Topic>,
    #[serde(default)]
    auth: super::auth::AuthFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Server {
    listen: Option<String>,
    data_dir: Option<String>,
    monitor_interval: Option<String>,
    max_body: Option<SizeValue>,
    fsync: Option<String>,
    log_level: Option<String>,
    index_entries: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Topic {
    segment_size: Option<SizeValue>,
    segment_age: Option<String>,
    batch_num_messages: Option<usize>,
    batch_interval: Option<String>,
    compression: Option<String>,
    validation: Option<Hook>,
    retention: Option<Hook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hook {
    plugin: String,
    #[serde(default)]
    config: toml::Table,
    on_error: Option<OnError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plugin {
    path: String,
    memory_limit: Option<SizeValue>,
    time_limit: Option<String>,
    fuel: Option<u64>,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SizeValue {
    Int(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Int(n) => Ok(*n),
            SizeValue::Text(t) => parse_size(t).map_err(|e| e.to_string()),
        }
    }
}

struct Place<'a> {
    file: &'a Path,
}

impl Place<'_> {
    fn err(&self, table: &str, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            place: format!("{}: [{table}] {key}", self.file.display()),
            message: message.to_string(),
        }
    }
}

impl File {
    pub(super) fn resolve(self, path: &Path) -> Result<Config, ConfigError> {
        let at = Place { file: path };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Config {
            source: Some(path.to_path_buf()),
            ..Config::default()
        };
        let s = self.server;
        if let Some(l) = s.listen {
            cfg.listen = l;
        }
        if let Some(d) = s.data_dir {
            cfg.data_dir = base.join(d);
        }
        if let Some(m) = s.monitor_interval {
            cfg.monitor_interval =
                parse_duration(&m).map_err(|e| at.err("server", "monitor_interval", e))?;
        }
        if let Some(b) = s.max_body {
            cfg.max_body = b.bytes().map_err(|e| at.err("server", "max_body", e))?;
        }
        if let Some(f) = s.fsync {
            cfg.fsync = Config::parse_fsync(&f).map_err(|e| at.err("server", "fsync", e))?;
        }
        if let Some(l) = s.log_level {
            cfg.log_level = l;
        }
        if let Some(n) = s.index_entries {
            if !(2..=MAX_INDEX_ENTRIES).contains(&n) {
                return Err(at.err(
                    "server",
                    "index_entries",
                    format!("must be 2 to {MAX_INDEX_ENTRIES}"),
                ));
            }
            cfg.index_entries = n;
        }

        for (name, p) in self.plugins {
            let table = format!("plugins.{name}");
            let file = base.join(&p.path);
            if !file.is_file() {
                return Err(at.err(&table, "path", format!("no such file: {}", file.display())));
            }
            let memory_limit = match p.memory_limit {
                Some(m) => m.bytes().map_err(|e| at.err(&table, "memory_limit", e))?,
                None => DEFAULT_PLUGIN_MEMORY,
            };
            if memory_limit < (1 << 20) {
                return Err(at.err(&table, "memory_limit", "must be at least 1MiB"));
            }
            let time_limit = match p.time_limit {
                Some(t) => parse_duration(&t).map_err(|e| at.err(&table, "time_limit", e))?,
                None => DEFAULT_PLUGIN_TIME,
            };
            if time_limit.is_zero() {
                return Err(at.err(&table, "time_limit", "must be above zero"));
            }
            cfg.plugins.push(PluginDecl {
                name,
                path: file,
                memory_limit,
                time_limit,
                fuel: p.fuel,
                config: serde_json::to_value(&p.config).map_err(|e| at.err(&table, "config", e))?,
            });
        }
        let plugin_names = cfg.plugin_names();

        let defaults = self.defaults.input(&at, "defaults", &plugin_names)?;
        cfg.defaults = Settings::resolve(defaults, &cfg.defaults, &plugin_names)
            .map_err(|e| at.err("defaults", "compression", e))?;

        for (name, t) in self.topics {
            let table = format!("topics.{name}");
            if let Err(why) = crate::topic::check_name(&name) {
                return Err(at.err(&table, "", why));
            }
            let input = t.input(&at, &table, &plugin_names)?;
            Settings::resolve(input.clone(), &cfg.defaults, &plugin_names)
                .map_err(|e| at.err(&table, "compression", e))?;
            cfg.topics.insert(name, input);
        }
        cfg.auth = self.auth.resolve(path)?;
        Ok(cfg)
    }
}

impl Topic {
    fn input(
        self,
        at: &Place,
        table: &str,
        plugins: &[String],
    ) -> Result<SettingsInput, ConfigError> {
        let dur = |v: Option<String>, key: &str| -> Result<_, ConfigError> {
            v.map(|t| parse_duration(&t).map_err(|e| at.err(table, key, e)))
                .transpose()
        };
        let hook = |h: Option<Hook>, key: &str| -> Result<_, ConfigError> {
            let Some(h) = h else { return Ok(None) };
            if !plugins.contains(&h.plugin) {
                return Err(at.err(
                    table,
                    &format!("{key}.plugin"),
                    format!("no plugin {:?} is declared in [plugins]", h.plugin),
                ));
            }
            if key != "validation" && h.on_error.is_some() {
                return Err(at.err(
                    table,
                    &format!("{key}.on_error"),
                    "only validation hooks take on_error",
                ));
            }
            let config = serde_json::to_value(&h.config)
                .map_err(|e| at.err(table, &format!("{key}.config"), e))?;
            Ok(Some(HookSetting {
                plugin: h.plugin,
                config,
                on_error: h.on_error,
            }))
        };
        Ok(SettingsInput {
            segment_age: dur(self.segment_age, "segment_age")?,
            segment_size: self
                .segment_size
                .map(|s| s.bytes().map_err(|e| at.err(table, "segment_size", e)))
                .transpose()?,
            batch_num_messages: self.batch_num_messages,
            batch_interval: dur(self.batch_interval, "batch_interval")?,
            compression_type: None,
            compression: self.compression,
            validation: hook(self.validation, "validation")?,
            retention: hook(self.retention, "retention")?,
        })
    }
}
