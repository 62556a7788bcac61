//! The schema of the operator's TOML file, as written, before resolution.
//!
//! Every table denies unknown keys, so a typo is an error that names the key
//! and its line. Values are checked in `resolve`, whose errors name the file,
//! the table and the key (`netlog.toml: [topics.orders] segment_size: ...`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Config, ConfigError, DEFAULT_PLUGIN_MEMORY, DEFAULT_PLUGIN_TIME, HookSetting,
    MAX_PLUGIN_FILE_BYTES, MessageFormat, OnError, PluginDecl, RawValue, SettingsInput, Strictness,
    check_regular_file, check_topic_name, plugin_memory, plugin_time, resolve_settings,
};

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
    #[serde(default)]
    engine: super::engine::EngineFile,
    #[serde(default)]
    groups: super::GroupLimits,
    #[serde(default)]
    console: Console,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Console {
    enabled: Option<bool>,
    hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Server {
    listen: Option<RawValue>,
    data_dir: Option<RawValue>,
    monitor_interval: Option<RawValue>,
    max_body: Option<RawValue>,
    fsync: Option<RawValue>,
    log_level: Option<RawValue>,
    index_entries: Option<RawValue>,
    scanner_idle_ttl: Option<RawValue>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_timeout: Option<String>,
    body_min_rate: Option<RawValue>,
    max_connections: Option<usize>,
    body_budget: Option<RawValue>,
    body_budget_wait: Option<String>,
    answer_budget: Option<RawValue>,
    answer_budget_wait: Option<String>,
    shutdown_timeout: Option<String>,
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tail_cache: Option<RawValue>,
    tail_cache_total: Option<RawValue>,
    idle_spin: Option<String>,
    admin_listen: Option<RawValue>,
    log_format: Option<RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Topic {
    segment_size: Option<RawValue>,
    segment_age: Option<RawValue>,
    batch_num_messages: Option<RawValue>,
    batch_interval: Option<RawValue>,
    compression: Option<String>,
    validation: Option<Hook>,
    retention: Option<Hook>,
    min_segment_bytes: Option<RawValue>,
    min_segment_age: Option<RawValue>,
    message_format: Option<MessageFormat>,
    dedup_window: Option<RawValue>,
    dedup_max_keys: Option<RawValue>,
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
    memory_limit: Option<RawValue>,
    time_limit: Option<RawValue>,
    fuel: Option<u64>,
    #[serde(default)]
    config: toml::Table,
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
        let mut cfg = Config::default();
        let s = self.server;
        let data_dir = s.data_dir.map(|d| match d {
            // An empty path stays empty, to be refused, not made the folder.
            RawValue::Text(t) if t.trim().is_empty() => RawValue::Text(t),
            RawValue::Text(t) => RawValue::Text(base.join(t).display().to_string()),
            other => other,
        });
        for (key, value) in [
            ("listen", s.listen),
            ("data_dir", data_dir),
            ("monitor_interval", s.monitor_interval),
            ("max_body", s.max_body),
            ("fsync", s.fsync),
            ("log_level", s.log_level),
            ("index_entries", s.index_entries),
            ("scanner_idle_ttl", s.scanner_idle_ttl),
            ("admin_listen", s.admin_listen),
            ("log_format", s.log_format),
        ] {
            if let Some(v) = value {
                cfg.set_server(key, &v)
                    .map_err(|e| at.err("server", key, e))?;
            }
        }
        let size = |v: Option<RawValue>, key| {
            v.map(|b| super::size(&b).map_err(|e| at.err("server", key, e)))
                .transpose()
        };
        cfg.server = super::server::ServerKeys {
            header_timeout: s.header_timeout,
            idle_timeout: s.idle_timeout,
            body_timeout: s.body_timeout,
            body_min_rate: size(s.body_min_rate, "body_min_rate")?,
            max_connections: s.max_connections,
            body_budget: size(s.body_budget, "body_budget")?,
            body_budget_wait: s.body_budget_wait,
            answer_budget: size(s.answer_budget, "answer_budget")?,
            answer_budget_wait: s.answer_budget_wait,
            shutdown_timeout: s.shutdown_timeout,
            allowed_origins: s.allowed_origins,
            allowed_hosts: s.allowed_hosts,
            tls_cert: s.tls_cert,
            tls_key: s.tls_key,
            tail_cache: size(s.tail_cache, "tail_cache")?,
            tail_cache_total: size(s.tail_cache_total, "tail_cache_total")?,
            idle_spin: s.idle_spin,
        }
        .resolve(base, cfg.max_body)
        .map_err(|(key, message)| at.err("server", key, message))?;

        for (name, p) in self.plugins {
            let table = format!("plugins.{name}");
            let file = base.join(&p.path);
            // Refused here, on the metadata, so the host never reads a
            // FIFO, a device or a 2 GiB "plugin".
            check_regular_file(&file, MAX_PLUGIN_FILE_BYTES).map_err(|e| match e {
                ConfigError::Read { path, source }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    at.err(&table, "path", format!("no such file: {}", path.display()))
                }
                e => at.err(&table, "path", e),
            })?;
            let memory_limit = match p.memory_limit {
                Some(m) => plugin_memory(&m).map_err(|e| at.err(&table, "memory_limit", e))?,
                None => DEFAULT_PLUGIN_MEMORY,
            };
            let time_limit = match p.time_limit {
                Some(t) => plugin_time(&t).map_err(|e| at.err(&table, "time_limit", e))?,
                None => DEFAULT_PLUGIN_TIME,
            };
            if p.fuel == Some(0) {
                return Err(at.err(&table, "fuel", "must be above zero (or left out)"));
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
        cfg.defaults = resolve_settings(defaults, &cfg.defaults, &plugin_names, Strictness::Refuse)
            .map_err(|e| at.err("defaults", e.key, e.message))?;

        for (name, t) in self.topics {
            let table = format!("topics.{name}");
            if let Err(why) = check_topic_name(&name) {
                return Err(at.err(&table, "", why));
            }
            let input = t.input(&at, &table, &plugin_names)?;
            resolve_settings(
                input.clone(),
                &cfg.defaults,
                &plugin_names,
                Strictness::Refuse,
            )
            .map_err(|e| at.err(&table, e.key, e.message))?;
            cfg.topics.insert(name, input);
        }
        cfg.auth = self.auth.resolve(path)?;
        cfg.engine = self.engine.resolve(path)?;
        self.groups
            .check()
            .map_err(|why| at.err("groups", "", why))?;
        cfg.groups = self.groups;
        if let Some(enabled) = self.console.enabled {
            cfg.console.enabled = enabled;
        }
        if let Some(hosts) = self.console.hosts {
            cfg.console.hosts = hosts
                .iter()
                .map(|h| super::normalize_host(h))
                .collect::<Result<_, _>>()
                .map_err(|e| at.err("console", "hosts", e))?;
        }
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
            segment_age: self.segment_age,
            segment_size: self.segment_size,
            batch_num_messages: self.batch_num_messages,
            batch_interval: self.batch_interval,
            compression_type: None,
            compression: self.compression,
            validation: hook(self.validation, "validation")?,
            retention: hook(self.retention, "retention")?,
            codecs: None,
            min_segment_bytes: self.min_segment_bytes,
            min_segment_age: self.min_segment_age,
            message_format: self.message_format,
            dedup_window: self.dedup_window,
            dedup_max_keys: self.dedup_max_keys,
        })
    }
}
