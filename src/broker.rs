//! The broker: every topic of a data directory, and the segment monitor.
//!
//! On start it opens each topic directory (skipping names that are not valid
//! topic names, such as the broker's own `_`-prefixed folders), loads its
//! `settings.json` (netlog's defaults where a netlog directory has none),
//! recovers its log and restores its persistent scanners, then creates the
//! topics the config declares. Topics are shared as `Arc<Topic>`; the map is
//! locked only to look up, add or remove one, never across I/O.
//!
//! The monitor runs every `monitor_interval`: for each topic it rolls the
//! active segment once its data passes `segment_size`, deletes the oldest
//! segment once it is older than `segment_age` (never the active one), and
//! saves moved persistent scanners. Interval fsyncs have a task of their own
//! (`sync_topics`), so a slow disk never delays the monitor or the writers.
//! Its decisions are logged. The work runs on the blocking pool.
//!
//! Plugins: every `[plugins.<name>]` of the config is compiled (or loaded from
//! the compiled cache under `<data_dir>/_cache/wasm`) and pre-linked once at
//! start-up; each topic then gets its own instances of the plugins its
//! settings name, with their `init` called on the topic's config (a codec's
//! comes from its `[plugins.<name>]` table instead). A topic whose
//! retention hook is set lets the plugin decide deletions instead of
//! `segment_age` (size-based rolling still applies); the broker clamps the
//! answer: never the active segment, never more segments than exist, and a
//! plugin failure deletes nothing that tick.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::{Config, HookSetting, OnError, Settings, SettingsError, SettingsInput};
use crate::log::{LogError, LogOptions};
use crate::message::Codecs;
use crate::plugin::{
    HostOptions, Limits, Plugin, PluginError, PluginHost, PluginKind, RetentionState, ScannerState,
    SegmentState,
};
use crate::topic::{self, Hooks, SETTINGS_FILE, Topic};

/// Errors of the broker layer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic not found")]
    TopicNotFound,
    #[error("topic exists")]
    TopicExists,
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("scanner not found")]
    ScannerNotFound,
    #[error("topic has scanners attached")]
    Busy,
    #[error("write failed: {0}")]
    WriteFailed(String),
    #[error("invalid data directory {}: {reason}", path.display())]
    InvalidDir { path: PathBuf, reason: String },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("message {index} rejected by {plugin}: {reason}")]
    Rejected {
        plugin: String,
        index: usize,
        reason: String,
    },
    #[error("plugin {plugin} failed: {detail}")]
    PluginFailed { plugin: String, detail: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("topic {topic}: {message}")]
    Hook { topic: String, message: String },
}

impl BrokerError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
        move |source| BrokerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Every topic of one data directory. See the module docs.
pub struct Broker {
    config: Config,
    data_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    plugins: Plugins,
    /// Keeps the engine (and its epoch ticker) alive.
    _host: Option<PluginHost>,
}

/// Declared plugins by name, compiled and pre-linked.
type Plugins = HashMap<String, Arc<Plugin>>;

/// Where compiled plugin code is cached, inside the data directory.
pub const PLUGIN_CACHE_DIR: &str = "_cache/wasm";

impl Broker {
    /// Opens the data directory and every topic in it, then creates the
    /// topics the config declares.
    pub fn open(config: Config) -> Result<Broker, BrokerError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(BrokerError::io(&data_dir))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(BrokerError::io(&data_dir))?;
        let (host, plugins) = load_plugins(&config, &data_dir)?;
        let broker = Broker {
            config,
            data_dir,
            topics: RwLock::new(HashMap::new()),
            plugins,
            _host: host,
        };
        broker.load_topics()?;
        for (name, input) in broker.config.topics.clone() {
            if broker.topic(&name).is_err() {
                broker.create_topic(&name, input)?;
            }
        }
        Ok(broker)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn plugin(
        &self,
        topic: &str,
        hook: &str,
        name: &str,
        kind: PluginKind,
    ) -> Result<&Arc<Plugin>, BrokerError> {
        let plugin = self.plugins.get(name).ok_or_else(|| BrokerError::Hook {
            topic: topic.to_string(),
            message: format!("{hook} plugin {name:?} is not declared in the config's [plugins]"),
        })?;
        if plugin.kind() != kind {
            return Err(BrokerError::Hook {
                topic: topic.to_string(),
                message: format!(
                    "{hook} needs a {kind} plugin, but {name:?} is a {}",
                    plugin.kind()
                ),
            });
        }
        Ok(plugin)
    }

    /// Instantiates the plugins `settings` name for topic `name`.
    fn build_hooks(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<(Hooks, LogOptions), BrokerError> {
        let mut hooks = Hooks::default();
        if let Some(HookSetting {
            plugin,
            config,
            on_error,
        }) = &settings.validation
        {
            let p = self.plugin(name, "validation", plugin, PluginKind::Validator)?;
            hooks.validator = Some(Arc::new(p.validator(name, &config.to_string())?));
            hooks.on_error = on_error.unwrap_or(OnError::Reject);
        }
        if let Some(HookSetting { plugin, config, .. }) = &settings.retention {
            let p = self.plugin(name, "retention", plugin, PluginKind::Retention)?;
            hooks.retention = Some(p.retention(name, &config.to_string())?);
        }
        let mut codecs = Codecs::default();
        for (value, plugin) in &settings.codecs {
            let p = self.plugin(
                name,
                &format!("compression value {value}"),
                plugin,
                PluginKind::Codec,
            )?;
            let config = self
                .config
                .plugins
                .iter()
                .find(|d| d.name == *plugin)
                .map_or_else(|| "{}".to_string(), |d| d.config.to_string());
            codecs.bind(*value, Arc::new(p.codec(name, &config)?));
        }
        let opts = LogOptions {
            index_entries: self.config.index_entries,
            fsync: self.config.fsync,
            codecs,
        };
        Ok((hooks, opts))
    }

    fn load_topics(&self) -> Result<(), BrokerError> {
        let dir = &self.data_dir;
        for entry in std::fs::read_dir(dir).map_err(BrokerError::io(dir))? {
            let entry = entry.map_err(BrokerError::io(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !path.is_dir() || topic::check_name(&name).is_err() {
                continue;
            }
            let settings = self.read_settings(&path)?;
            let (hooks, opts) = self.build_hooks(&name, &settings)?;
            let topic = Topic::open(&name, &path, settings, opts, hooks, false)?;
            tracing::info!(topic = %name, next_offset = topic.log().next_offset(), "topic loaded");
            self.topics_mut().insert(name, topic);
        }
        Ok(())
    }

    fn read_settings(&self, dir: &Path) -> Result<Settings, BrokerError> {
        let path = dir.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                // netlog's files hold only its five fields; ours may add more.
                let input: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| BrokerError::InvalidDir {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let mut merged = serde_json::to_value(&self.config.defaults).expect("serializable");
                if let (Some(m), Some(i)) = (merged.as_object_mut(), input.as_object()) {
                    for (k, v) in i {
                        m.insert(k.clone(), v.clone());
                    }
                }
                let mut settings: Settings =
                    serde_json::from_value(merged).map_err(|e| BrokerError::InvalidDir {
                        path,
                        reason: e.to_string(),
                    })?;
                settings.fill_zeros(&self.config.defaults);
                Ok(settings)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self.config.defaults.clone()),
            Err(e) => Err(BrokerError::io(&path)(e)),
        }
    }

    fn topics_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Sorted topic names.
    pub fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        topic::check_name(name).map_err(BrokerError::InvalidName)?;
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or(BrokerError::TopicNotFound)
    }

    /// Creates a topic with `input` resolved against the server defaults.
    pub fn create_topic(
        &self,
        name: &str,
        input: SettingsInput,
    ) -> Result<Arc<Topic>, BrokerError> {
        topic::check_name(name).map_err(BrokerError::InvalidName)?;
        let settings =
            Settings::resolve(input, &self.config.defaults, &self.config.plugin_names())?;
        if self.topic(name).is_ok() {
            return Err(BrokerError::TopicExists);
        }
        let dir = self.data_dir.join(name);
        if dir.exists() {
            return Err(BrokerError::TopicExists);
        }
        let (hooks, opts) = self.build_hooks(name, &settings)?;
        let topic = Topic::open(name, &dir, settings.clone(), opts, hooks, true)?;
        let mut topics = self.topics_mut();
        if topics.contains_key(name) {
            return Err(BrokerError::TopicExists);
        }
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        tracing::info!(
            topic = name,
            compression = settings.compression_name(),
            "topic created"
        );
        Ok(topic)
    }

    /// Deletes a topic; with scanners attached only when `force`.
    pub fn delete_topic(&self, name: &str, force: bool) -> Result<(), BrokerError> {
        let topic = self.topic(name)?;
        if !force && !topic.scanners().is_empty() {
            return Err(BrokerError::Busy);
        }
        self.topics_mut().remove(name);
        topic.close()?;
        std::fs::remove_dir_all(topic.dir()).map_err(BrokerError::io(topic.dir()))?;
        tracing::info!(topic = name, force, "topic deleted");
        Ok(())
    }

    /// Every topic.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One pass of the segment monitor over every topic (blocking I/O).
    pub fn monitor_tick(&self) {
        for topic in self.topics() {
            if let Err(e) = self.maintain(&topic) {
                tracing::error!(topic = topic.name(), error = %e, "segment monitor failed");
            }
        }
    }

    fn maintain(&self, topic: &Topic) -> Result<(), BrokerError> {
        let log = topic.log();
        let settings = topic.settings();
        let segments = log.segments();
        let active = segments.last().expect("a log has an active segment");
        if active.data_size > settings.segment_size && active.next_offset > active.first_offset {
            log.roll()?;
            tracing::info!(
                topic = topic.name(),
                base = active.first_offset,
                data_size = active.data_size,
                segment_size = settings.segment_size,
                "segment rolled: over segment_size"
            );
        }
        match &topic.hooks().retention {
            Some(_) => self.apply_retention_plugin(topic)?,
            None => {
                let now = SystemTime::now();
                for seg in log.segments().iter().rev().skip(1).rev() {
                    let age = now.duration_since(seg.mod_time).unwrap_or_default();
                    if age <= settings.segment_age {
                        break;
                    }
                    if let Some(base) = log.trim_oldest()? {
                        tracing::info!(
                            topic = topic.name(),
                            base,
                            age_secs = age.as_secs(),
                            "segment deleted: older than segment_age"
                        );
                    }
                }
            }
        }
        topic.save_scanners()?;
        Ok(())
    }

    /// Asks the topic's retention plugin, clamps its answer and applies it.
    fn apply_retention_plugin(&self, topic: &Topic) -> Result<(), BrokerError> {
        let Some(retention) = &topic.hooks().retention else {
            return Ok(());
        };
        let log = topic.log();
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let segments = log.segments();
        let state = RetentionState {
            topic: topic.name().to_string(),
            segments: segments
                .iter()
                .map(|s| SegmentState {
                    base_offset: s.first_offset,
                    next_offset: s.next_offset,
                    bytes: s.disk_size,
                    created_ms: u64::from(s.created) * 1000,
                    modified_ms: ms(s.mod_time),
                })
                .collect(),
            scanners: topic
                .scanners()
                .iter()
                .map(|s| ScannerState {
                    id: s.id.to_string(),
                    next_offset: s.next(),
                    persistent: s.persistent,
                })
                .collect(),
            now_ms: ms(SystemTime::now()),
        };
        let decision = match retention.evaluate(&state) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(topic = topic.name(), error = %e, "retention plugin failed: nothing deleted this tick");
                return Ok(());
            }
        };
        // Never the active segment (the last one the plugin saw), never more
        // than exist.
        let delete = (decision.delete_oldest as usize).min(segments.len() - 1);
        let active = segments.last().expect("a log has an active segment");
        if decision.roll_active && active.next_offset > active.first_offset {
            log.roll()?;
            tracing::info!(
                topic = topic.name(),
                base = active.first_offset,
                "segment rolled: asked by retention plugin"
            );
        }
        for _ in 0..delete {
            if let Some(base) = log.trim_oldest()? {
                tracing::info!(
                    topic = topic.name(),
                    base,
                    plugin = retention.plugin().name(),
                    asked = decision.delete_oldest,
                    "segment deleted: retention plugin"
                );
            }
        }
        Ok(())
    }

    /// fsyncs what every topic flushed since its last sync (interval policy).
    pub fn sync_topics(&self) {
        for topic in self.topics() {
            if let Err(e) = topic.log().sync_if_due() {
                tracing::error!(topic = topic.name(), error = %e, "interval fsync failed");
            }
        }
    }

    /// Writes everything queued, saves scanner positions and fsyncs every
    /// topic. Called once at shutdown.
    pub fn close(&self) -> Result<(), BrokerError> {
        let mut first_err = None;
        for topic in self.topics() {
            if let Err(e) = topic.close() {
                tracing::error!(topic = topic.name(), error = %e, "closing topic failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Compiles (or loads from the cache) and pre-links every declared plugin.
fn load_plugins(
    config: &Config,
    data_dir: &Path,
) -> Result<(Option<PluginHost>, Plugins), BrokerError> {
    if config.plugins.is_empty() {
        return Ok((None, HashMap::new()));
    }
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(data_dir.join(PLUGIN_CACHE_DIR)),
    })?;
    let mut plugins = HashMap::new();
    for decl in &config.plugins {
        let limits = Limits {
            memory_bytes: decl.memory_limit,
            time_per_call: decl.time_limit,
            fuel: decl.fuel,
        };
        let started = std::time::Instant::now();
        let plugin = host.load(&decl.name, &decl.path, limits)?;
        tracing::info!(
            plugin = %decl.name,
            kind = %plugin.kind(),
            wit = plugin.wit_version(),
            from_cache = plugin.from_cache(),
            ms = started.elapsed().as_millis() as u64,
            "plugin loaded"
        );
        plugins.insert(decl.name.clone(), plugin);
    }
    Ok((Some(host), plugins))
}
