//! The broker: the registry of every topic of one data directory, the
//! plugins they may use, and the loops that visit them.
//!
//! It sits above [`crate::topic`]: everything about one topic (writing,
//! reading, scanners, retention) lives there; the broker finds topics by
//! name, creates and deletes them, loads plugins and runs the monitor and
//! the interval fsync over all of them.
//!
//! **Opening.** The data directory is locked first (`flock` on the
//! directory itself), so a second broker on the same directory stops at
//! once, naming the first one's pid. Then each subdirectory
//! that is a valid topic name *and* holds netlog's files (`settings.json` or
//! a segment file) is opened: its settings resolved, its log recovered, its
//! persistent scanners restored. Any other directory is left alone and
//! logged. Then the topics the config declares are created.
//!
//! **Create and delete** are serialised per name: a name being created or
//! deleted is reserved, so of concurrent creates exactly one wins and the
//! others get `TopicExists` without touching its files. Deleting removes only
//! files of netlog's layout, never an unknown file. Topics are shared as
//! `Arc<Topic>`; the map is locked only to look up, add or remove one, never
//! across I/O.
//!
//! **Plugins.** Every `[plugins.<name>]` of the config is compiled (or loaded
//! from the compiled cache under `<data_dir>/_cache/wasm`) and pre-linked once
//! at start-up; each topic then gets its own instances of the plugins its
//! settings name, with their `init` called on the topic's config (a codec's
//! comes from its `[plugins.<name>]` table instead). A stored topic whose
//! validation or retention plugin is missing still opens: reads work and its
//! publishes fail naming the plugin.
//!
//! The host (one wasmtime engine) stays in the broker for its lifetime, so
//! a reload (`broker/reload.rs`) compiles changed plugins with the same engine.
//! The declared plugins and the config sit behind pointer swaps: a reload
//! replaces them whole, and every create reads one consistent snapshot.
//!
//! **Loops.** [`Broker::monitor_tick`] runs each topic's retention
//! ([`Topic`]'s `retention.rs`); [`Broker::sync_topics`] runs the interval
//! fsync, apart so that a slow disk never delays the monitor or the writers.
//! Both are blocking and run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arc_swap::ArcSwap;

use crate::config::{
    Config, HookSetting, OnError, PluginDecl, Settings, SettingsError, SettingsInput, Strictness,
    check_topic_name, resolve_settings,
};
use crate::lock::Recover;
use crate::log::LogOptions;
use crate::message::Codecs;
use crate::plugin::{HostOptions, Limits, Plugin, PluginError, PluginHost, PluginKind};
use crate::rate_limit::LineLimit;
use crate::topic::{Hooks, READERS_DIR, SETTINGS_FILE, Topic, TopicError};

mod jetstream;
mod reload;
pub use reload::ReloadReport;

/// Errors of the broker layer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No topic of that name.
    #[error("topic not found")]
    TopicNotFound,
    /// A topic of that name exists, or is being created or deleted.
    #[error("topic exists")]
    TopicExists,
    /// The name is not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    /// The settings were refused.
    #[error("settings: {0}")]
    Settings(#[from] SettingsError),
    /// The settings JSON does not parse.
    #[error("settings JSON: {0}")]
    SettingsJson(#[source] serde_json::Error),
    /// A topic operation failed.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The data directory is not usable.
    #[error("invalid data directory {}: {reason}", path.display())]
    InvalidDir { path: PathBuf, reason: String },
    /// Another broker holds the data directory.
    #[error("data directory {} is in use by another netlog (pid {pid})", path.display())]
    DirLocked { path: PathBuf, pid: String },
    /// A file operation of the broker failed.
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plugin failed to load or instantiate.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A topic's settings name a plugin that cannot serve that hook.
    #[error("topic {topic}: {message}")]
    Hook { topic: String, message: String },
    /// The topic has consumer groups, or is one's dead-letter topic.
    #[error("resource busy: {0}")]
    GroupsBusy(String),
    /// Blocking work panicked or was cancelled.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// A reload was refused and nothing of it applied; every reason listed.
    #[error("reload refused: {}", errors.join("; "))]
    ReloadRefused { errors: Vec<String> },
}

impl From<crate::log::LogError> for BrokerError {
    fn from(e: crate::log::LogError) -> Self {
        BrokerError::Topic(TopicError::Log(e))
    }
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
    /// Swapped whole by a reload.
    config: ArcSwap<Config>,
    data_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Names being created or deleted: one such operation per name at once.
    busy: Mutex<HashSet<String>>,
    /// Swapped whole by a reload.
    plugins: ArcSwap<Plugins>,
    /// The plugin host (engine, linker, epoch ticker), made when the first
    /// plugin is loaded and kept for reloads.
    host: OnceLock<PluginHost>,
    /// Written by a reload for its whole run (one reload at a time), read by
    /// a topic create for its whole run: a topic created while a reload
    /// runs waits for it, then takes its settings and hooks from what the
    /// reload put in force. Otherwise a create could resolve against the old
    /// config, miss the reload's list of topics to swap, and keep an old
    /// plugin instance until the next reload.
    reloading: RwLock<()>,
    /// Rate limit of the monitor's and the fsync loop's failure lines, per
    /// topic and kind (they repeat every tick while a topic fails).
    failures: LineLimit<(String, &'static str)>,
    /// The JetStream engine, when `[engine] kind = "jetstream"`
    /// (`broker/jetstream.rs`); topics then live in the cluster.
    js: Option<Arc<crate::topic::jetstream::JsEngine>>,
    /// The consumer groups of every topic (embedded engine only).
    groups: crate::group::Registry,
    /// Held while the broker runs: the `flock` on the data directory.
    _lock: std::fs::File,
}

/// Declared plugins by name, compiled and pre-linked.
pub(crate) type Plugins = HashMap<String, Loaded>;

/// One declared plugin as loaded: what a reload compares to see whether it
/// changed.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) plugin: Arc<Plugin>,
    /// Its `[plugins.<name>]` table as resolved.
    pub(crate) decl: PluginDecl,
    /// SHA-256 of the component file when it was loaded.
    pub(crate) digest: [u8; 32],
}

/// What hooks are built from: one config and one plugin set, seen together.
pub(crate) struct View<'a> {
    pub(crate) config: &'a Config,
    pub(crate) plugins: &'a Plugins,
}

/// Where compiled plugin code is cached, inside the data directory.
pub const PLUGIN_CACHE_DIR: &str = "_cache/wasm";
/// Most threads opening topics at start-up (one per 64 topics, up to 8).
pub const LOAD_THREADS: usize = 8;
/// A topic's `segment monitor failed` and `interval fsync failed` lines are
/// logged at most once per this long each (10 s), with a count of the rest.
pub const FAILURE_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Releases a name reserved in `Broker::busy` when dropped.
struct Reserved<'a> {
    busy: &'a Mutex<HashSet<String>>,
    name: String,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.busy.lock().recover().remove(&self.name);
    }
}

impl Broker {
    /// Opens the data directory (locking it) and every topic in it, then
    /// creates the topics the config declares. Blocking.
    pub fn open(config: Config) -> Result<Broker, BrokerError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(BrokerError::io(&data_dir))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(BrokerError::io(&data_dir))?;
        let lock_file = lock_dir(&data_dir)?;
        let js = match &config.engine {
            crate::config::EngineConfig::Embedded => None,
            crate::config::EngineConfig::JetStream(c) => {
                Some(Broker::connect_jetstream(c, config.scanner_idle_ttl)?)
            }
        };
        let broker = Broker {
            config: ArcSwap::from_pointee(config),
            data_dir,
            topics: RwLock::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            plugins: ArcSwap::from_pointee(HashMap::new()),
            host: OnceLock::new(),
            reloading: RwLock::new(()),
            failures: LineLimit::new(FAILURE_LOG_INTERVAL),
            js,
            groups: crate::group::Registry::default(),
            _lock: lock_file,
        };
        let config = broker.config();
        let mut plugins = HashMap::new();
        for decl in &config.plugins {
            plugins.insert(decl.name.clone(), broker.load_plugin(decl)?);
        }
        broker.plugins.store(Arc::new(plugins));
        broker.groups.set_limits(config.groups);
        match &broker.js {
            // No consumer groups on this engine yet: the group routes
            // answer 501 for its topics, so there is nothing to load.
            Some(js) => broker.load_js_topics(js)?,
            None => {
                broker.load_topics()?;
                let sync = matches!(config.fsync, crate::log::FsyncPolicy::Always);
                for topic in broker.topics() {
                    broker.groups.load(&topic, sync);
                }
            }
        }
        if !broker.groups.all().is_empty() {
            // Reading and compacting the journals peaks at several times
            // their final state; give the freed part back to the system.
            crate::log::files::release_free_memory();
        }
        for (name, input) in config.topics.clone() {
            if broker.topic(&name).is_err() {
                broker.create_topic(&name, input)?;
            }
        }
        Ok(broker)
    }

    /// The configuration it runs with (the latest reload's).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The plugin host, made on first use with the compiled-code cache in
    /// the data directory.
    fn host(&self) -> Result<&PluginHost, PluginError> {
        if let Some(host) = self.host.get() {
            return Ok(host);
        }
        let host = PluginHost::new(HostOptions {
            cache_dir: Some(self.data_dir.join(PLUGIN_CACHE_DIR)),
        })?;
        // Two first uses at once: one host wins, the other is dropped.
        Ok(self.host.get_or_init(|| host))
    }

    /// Compiles (or loads from the cache) and pre-links one declared plugin.
    /// Blocking.
    pub(crate) fn load_plugin(&self, decl: &PluginDecl) -> Result<Loaded, PluginError> {
        let digest = file_digest(decl)?;
        let limits = Limits {
            memory_bytes: decl.memory_limit,
            time_per_call: decl.time_limit,
            fuel: decl.fuel,
        };
        let plugin = self.host()?.load(&decl.name, &decl.path, limits)?;
        Ok(Loaded {
            plugin,
            decl: decl.clone(),
            digest,
        })
    }

    /// The current config and plugins, for building hooks.
    fn with_view<T>(&self, f: impl FnOnce(&View<'_>) -> T) -> T {
        let (config, plugins) = (self.config.load(), self.plugins.load());
        f(&View {
            config: &config,
            plugins: &plugins,
        })
    }
}

impl View<'_> {
    fn plugin(
        &self,
        topic: &str,
        hook: &str,
        name: &str,
        kind: PluginKind,
    ) -> Result<&Arc<Plugin>, BrokerError> {
        let plugin = self.plugins.get(name).map(|l| &l.plugin).ok_or_else(|| {
            BrokerError::Hook {
                topic: topic.to_string(),
                message: format!(
                    "{hook} plugin {name:?} is not declared: add a [plugins.{name}] table with its \
                 path to the config file"
                ),
            }
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
    pub(crate) fn build_hooks(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<(Hooks, LogOptions), BrokerError> {
        Ok((
            self.build_swappable(name, settings)?,
            self.log_options(name, settings)?,
        ))
    }

    /// Instantiates the validation and retention plugins `settings` name:
    /// the hooks a reload swaps (codecs stay with the log).
    pub(crate) fn build_swappable(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<Hooks, BrokerError> {
        let mut hooks = Hooks::default();
        if let Some(h) = &settings.validation {
            self.add_validator(&mut hooks, name, h)?;
        }
        if let Some(h) = &settings.retention {
            self.add_retention(&mut hooks, name, h)?;
        }
        Ok(hooks)
    }

    fn add_validator(
        &self,
        hooks: &mut Hooks,
        topic: &str,
        h: &HookSetting,
    ) -> Result<(), BrokerError> {
        let p = self.plugin(topic, "validation", &h.plugin, PluginKind::Validator)?;
        hooks.validator = Some(Arc::new(p.validator(topic, &h.config.to_string())?));
        hooks.on_error = h.on_error.unwrap_or(OnError::Reject);
        Ok(())
    }

    fn add_retention(
        &self,
        hooks: &mut Hooks,
        topic: &str,
        h: &HookSetting,
    ) -> Result<(), BrokerError> {
        let p = self.plugin(topic, "retention", &h.plugin, PluginKind::Retention)?;
        hooks.retention = Some(p.retention(topic, &h.config.to_string())?);
        Ok(())
    }

    /// The log options of topic `name`, with its codec plugins bound.
    fn log_options(&self, name: &str, settings: &Settings) -> Result<LogOptions, BrokerError> {
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
        Ok(LogOptions {
            index_entries: self.config.index_entries,
            fsync: self.config.fsync,
            codecs,
        })
    }

    /// Hooks for a stored topic: a validation or retention plugin that cannot
    /// be had leaves the topic serving reads, its publishes failing with the
    /// reason. Codecs are needed to read, so their failure stays an error.
    fn build_stored_hooks(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<(Hooks, LogOptions), BrokerError> {
        let mut hooks = Hooks::default();
        let added = [
            settings
                .validation
                .as_ref()
                .map(|h| (h, self.add_validator(&mut hooks, name, h))),
            settings
                .retention
                .as_ref()
                .map(|h| (h, self.add_retention(&mut hooks, name, h))),
        ];
        for (h, result) in added.into_iter().flatten() {
            if let Err(e) = result {
                let reason = e.to_string();
                tracing::error!(topic = name, plugin = %h.plugin, %reason, "topic serves reads only: its publishes fail until the plugin is available");
                hooks.unavailable.get_or_insert((h.plugin.clone(), reason));
            }
        }
        Ok((hooks, self.log_options(name, settings)?))
    }
}

impl Broker {
    /// Opens every netlog topic of the data directory. A directory that is
    /// not one (no `settings.json`, no segment file) is left alone and logged.
    /// Opens every topic of the data directory, on up to
    /// [`LOAD_THREADS`] threads: opening is mostly waiting for a few small
    /// reads per topic, which a disk serves in parallel. The first error
    /// stops the others at their next topic and is returned.
    fn load_topics(&self) -> Result<(), BrokerError> {
        let dirs = self.topic_dirs()?;
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let threads = LOAD_THREADS.min(dirs.len() / 64 + 1);
        let load = || -> Result<(), BrokerError> {
            while !failed.load(Ordering::Relaxed) {
                let Some((name, path)) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                self.load_topic(name, path).inspect_err(|_| {
                    failed.store(true, Ordering::Relaxed);
                })?;
            }
            Ok(())
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (1..threads).map(|_| s.spawn(load)).collect();
            let mut result = load();
            for w in workers {
                let done = w.join().expect("topic load thread panicked");
                result = result.and(done);
            }
            result
        })
    }

    /// The topic directories of the data directory (others are skipped,
    /// and those that hold something else are logged and left alone).
    fn topic_dirs(&self) -> Result<Vec<(String, PathBuf)>, BrokerError> {
        let dir = &self.data_dir;
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(BrokerError::io(dir))? {
            let entry = entry.map_err(BrokerError::io(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !path.is_dir() || check_topic_name(&name).is_err() {
                continue;
            }
            if !is_topic_dir(&path) {
                tracing::warn!(dir = %path.display(), "not a netlog topic (no settings.json or segment files): left alone");
                continue;
            }
            dirs.push((name, path));
        }
        Ok(dirs)
    }

    fn load_topic(&self, name: &str, path: &Path) -> Result<(), BrokerError> {
        let settings = self.read_settings(path)?;
        let (hooks, opts) = self.with_view(|v| v.build_stored_hooks(name, &settings))?;
        let topic = Topic::open(name, path, settings, opts, hooks, false)?;
        tracing::info!(topic = %name, next_offset = topic.next_offset(), "topic loaded");
        self.topics_mut().insert(name.to_string(), topic);
        Ok(())
    }

    /// A stored `settings.json`, through the one resolver (netlog's files
    /// hold only its five fields, with nanosecond durations; ours may add
    /// more). No file: the defaults, as netlog does.
    fn read_settings(&self, dir: &Path) -> Result<Settings, BrokerError> {
        let path = dir.join(SETTINGS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.config().defaults.clone());
            }
            Err(e) => return Err(BrokerError::io(&path)(e)),
        };
        let invalid = |reason: String| BrokerError::InvalidDir {
            path: path.clone(),
            reason,
        };
        let input: SettingsInput =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let config = self.config();
        resolve_settings(
            input,
            &config.defaults,
            &config.plugin_names(),
            Strictness::Stored,
        )
        .map_err(|e| invalid(e.to_string()))
    }

    fn topics_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.write().recover()
    }

    /// Sorted topic names.
    pub fn topic_names(&self) -> Vec<String> {
        if let Some(names) = self.js.as_ref().and_then(|js| self.js_topic_names(js)) {
            return names;
        }
        let mut names: Vec<_> = self.topics.read().recover().keys().cloned().collect();
        names.sort();
        names
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        let mut found = self.topics.read().recover().get(name).cloned();
        found = found.filter(|t| !t.gone_elsewhere());
        if found.is_none()
            && let Some(js) = &self.js
            && check_topic_name(name).is_ok()
        {
            found = self.find_js_topic(js, name)?;
        }
        // Every topic held has a valid name: only a miss needs the check,
        // to say which of the two errors it is.
        found.ok_or_else(|| match check_topic_name(name) {
            Err(why) => BrokerError::InvalidName(why),
            Ok(()) => BrokerError::TopicNotFound,
        })
    }

    /// Reserves `name` for a create or delete; `TopicExists` while another
    /// one runs.
    fn reserve(&self, name: &str) -> Result<Reserved<'_>, BrokerError> {
        if !self.busy.lock().recover().insert(name.to_string()) {
            return Err(BrokerError::TopicExists);
        }
        Ok(Reserved {
            busy: &self.busy,
            name: name.to_string(),
        })
    }

    /// Creates a topic from a settings JSON body (empty: the defaults), off
    /// the async workers.
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        body: bytes::Bytes,
    ) -> Result<(), BrokerError> {
        let (broker, name) = (self.clone(), name.to_string());
        crate::topic::blocking(move || broker.create_topic_json(&name, &body).map(drop)).await
    }

    /// Deletes a topic (see [`Broker::delete_topic`]), off the async workers.
    pub async fn delete(self: &Arc<Self>, name: &str, force: bool) -> Result<(), BrokerError> {
        let (broker, name) = (self.clone(), name.to_string());
        crate::topic::blocking(move || broker.delete_topic(&name, force)).await
    }

    /// Creates a topic from a settings JSON body (empty: the defaults).
    /// Blocking.
    pub fn create_topic_json(&self, name: &str, body: &[u8]) -> Result<Arc<Topic>, BrokerError> {
        // As netlog: an existing topic is the answer, whatever the body.
        check_topic_name(name).map_err(BrokerError::InvalidName)?;
        if self.topic(name).is_ok() {
            return Err(BrokerError::TopicExists);
        }
        let input = if body.iter().all(u8::is_ascii_whitespace) {
            SettingsInput::default()
        } else {
            serde_json::from_slice(body).map_err(BrokerError::SettingsJson)?
        };
        if input.codecs.is_some() {
            return Err(BrokerError::Settings(SettingsError {
                key: "codecs",
                message: "is set by the broker; name a codec with \"compression\"".into(),
            }));
        }
        self.create_topic(name, input)
    }

    /// Creates a topic with `input` resolved against the server defaults.
    /// Creates of one name are serialised: exactly one wins, the others get
    /// `TopicExists`, and nothing of the winner's is touched. A create waits
    /// for a reload in progress (see `reloading`). Blocking.
    pub fn create_topic(
        &self,
        name: &str,
        input: SettingsInput,
    ) -> Result<Arc<Topic>, BrokerError> {
        check_topic_name(name).map_err(BrokerError::InvalidName)?;
        let _no_reload = self.reloading.read().recover();
        let config = self.config();
        let settings = resolve_settings(
            input,
            &config.defaults,
            &config.plugin_names(),
            Strictness::Refuse,
        )?;
        let _reserved = self.reserve(name)?;
        if self.topic(name).is_ok() {
            return Err(BrokerError::TopicExists);
        }
        let (hooks, opts) = self.with_view(|v| v.build_hooks(name, &settings))?;
        let topic = self.open_new_topic(name, settings, hooks, opts)?;
        self.topics_mut().insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Makes the directory of a new topic and opens it there (not yet
    /// registered); leaves nothing behind on failure. The caller holds the
    /// name's reservation. Blocking.
    pub(crate) fn open_new_topic(
        &self,
        name: &str,
        settings: Settings,
        hooks: Hooks,
        opts: LogOptions,
    ) -> Result<Arc<Topic>, BrokerError> {
        if let Some(js) = &self.js {
            return self.create_js_topic(js, name, settings, hooks);
        }
        let dir = self.data_dir.join(name);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BrokerError::TopicExists);
            }
            r => r.map_err(BrokerError::io(&dir))?,
        }
        let topic = match Topic::open(name, &dir, settings.clone(), opts, hooks, true) {
            Ok(t) => t,
            Err(e) => {
                // Leave no orphan: remove what this create made.
                remove_topic_files(&dir);
                return Err(e.into());
            }
        };
        tracing::info!(
            topic = name,
            compression = settings.compression_name(),
            "topic created"
        );
        Ok(topic)
    }

    /// Deletes a topic; with scanners attached only when `force`. Its
    /// consumers end at once; only files of netlog's layout are removed.
    /// Blocking.
    pub fn delete_topic(&self, name: &str, force: bool) -> Result<(), BrokerError> {
        let topic = self.topic(name)?;
        let scanners = topic.scanner_count();
        if !force && scanners > 0 {
            return Err(TopicError::Busy { scanners }.into());
        }
        if !force {
            // A JetStream topic's groups are its stream's consumers (a
            // cluster that does not answer lists none).
            let groups = match topic.jetstream() {
                Some(js) => crate::topic::jetstream::block(js.group_names())
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                None => self.groups.names(name),
            };
            if !groups.is_empty() {
                return Err(BrokerError::GroupsBusy(format!(
                    "the topic has consumer groups ({}); delete them first or use force=true",
                    groups.join(", ")
                )));
            }
            if let Some(user) = self.groups.dead_letter_of(name) {
                return Err(BrokerError::GroupsBusy(format!(
                    "the topic is the dead_letter topic of group {user}; use force=true"
                )));
            }
        }
        let _reserved = self.reserve(name)?;
        self.groups.drop_topic(name);
        self.topics_mut().remove(name);
        topic.mark_deleted();
        topic.close()?;
        match &self.js {
            Some(js) => self.delete_js_topic(js, name)?,
            None => remove_topic_files(topic.dir()),
        }
        tracing::info!(topic = name, force, "topic deleted");
        Ok(())
    }

    /// Creates consumer group `name` on `topic` from its JSON settings.
    pub(crate) async fn create_group(
        self: &Arc<Self>,
        topic: Arc<Topic>,
        name: String,
        body: bytes::Bytes,
    ) -> Result<(), crate::group::GroupError> {
        let broker = self.clone();
        let sync = matches!(self.config().fsync, crate::log::FsyncPolicy::Always);
        crate::idle_spin::spawn_blocking(move || {
            let resolve = broker.resolver();
            broker
                .groups
                .create(&topic, &name, &body, sync, &resolve)
                .map(|_| ())
        })
        .await
        .map_err(|e| crate::group::GroupError::Io(std::io::Error::other(e)))?
    }

    /// Changes the settings of consumer group `name` of `topic`.
    pub(crate) async fn update_group(
        self: &Arc<Self>,
        topic: String,
        name: String,
        body: bytes::Bytes,
    ) -> Result<(), crate::group::GroupError> {
        let broker = self.clone();
        crate::idle_spin::spawn_blocking(move || {
            let resolve = broker.resolver();
            broker.groups.update(&topic, &name, &body, &resolve)
        })
        .await
        .map_err(|e| crate::group::GroupError::Io(std::io::Error::other(e)))?
    }

    /// Deletes consumer group `name` of `topic`.
    pub(crate) async fn delete_group(
        self: &Arc<Self>,
        topic: String,
        name: String,
    ) -> Result<(), crate::group::GroupError> {
        let broker = self.clone();
        crate::idle_spin::spawn_blocking(move || broker.groups.delete(&topic, &name))
            .await
            .map_err(|e| crate::group::GroupError::Io(std::io::Error::other(e)))?
    }

    /// Moves consumer group `name` of `topic` to offset `to`.
    pub(crate) async fn seek_group(
        &self,
        group: Arc<crate::group::Group>,
        to: u64,
    ) -> Result<(), crate::group::GroupError> {
        crate::idle_spin::spawn_blocking(move || group.seek(to))
            .await
            .map_err(|e| crate::group::GroupError::Io(std::io::Error::other(e)))?
    }

    /// The JetStream engine's connection; `None` on the embedded engine.
    pub(crate) fn jetstream_client(&self) -> Option<async_nats::Client> {
        self.js.as_ref().map(|js| js.client().clone())
    }

    /// The consumer groups.
    pub(crate) fn groups(&self) -> &crate::group::Registry {
        &self.groups
    }

    /// Finds a topic by name for the groups (their dead-letter topics).
    pub(crate) fn resolver(
        self: &Arc<Self>,
    ) -> impl Fn(&str) -> Option<Arc<Topic>> + Send + Sync + use<> {
        let broker = Arc::downgrade(self);
        move |name: &str| broker.upgrade().and_then(|b| b.topic(name).ok())
    }

    /// Every topic.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().recover().values().cloned().collect()
    }

    /// One pass of the segment monitor over every topic. Blocking.
    pub fn monitor_tick(&self) {
        for topic in self.topics() {
            if let Err(e) = topic.maintain()
                && let Some(suppressed) = self.failures.allow((topic.name().to_string(), "monitor"))
            {
                tracing::error!(topic = topic.name(), error = %crate::topic::ErrorChain(&e), suppressed, "segment monitor failed");
            }
        }
    }

    /// fsyncs what every topic flushed since its last sync (interval
    /// policy). Blocking.
    pub fn sync_topics(&self) {
        self.groups.sync();
        for topic in self.topics() {
            if let Err(e) = topic.sync_if_due()
                && let Some(suppressed) = self.failures.allow((topic.name().to_string(), "fsync"))
            {
                tracing::error!(topic = topic.name(), error = %crate::topic::ErrorChain(&e), suppressed, "interval fsync failed");
            }
        }
    }

    /// Writes everything queued, saves scanner positions and fsyncs every
    /// topic. Called once at shutdown. Blocking.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.groups.close();
        let mut first_err = None;
        for topic in self.topics() {
            if let Err(e) = topic.close() {
                tracing::error!(topic = topic.name(), error = %crate::topic::ErrorChain(&e), "closing topic failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// Whether `dir` holds netlog's files: a `settings.json` or a segment file.
fn is_topic_dir(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name == SETTINGS_FILE || is_segment_file(&name)
    })
}

/// `%020d.data` or `%020d.index`.
fn is_segment_file(name: &str) -> bool {
    let stem = name
        .strip_suffix(".data")
        .or_else(|| name.strip_suffix(".index"));
    stem.is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a temporary file of `write_atomic` for `stem`.
fn is_temp_of(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .and_then(|r| r.strip_prefix(".tmp"))
        .is_some()
}

/// Removes the files of netlog's layout from a topic directory, then the
/// directory if that left it empty. Unknown files are kept and logged.
fn remove_topic_files(dir: &Path) {
    // A topic on the JetStream engine has no directory.
    if dir.as_os_str().is_empty() {
        return;
    }
    let readers = dir.join(READERS_DIR);
    if let Ok(entries) = std::fs::read_dir(&readers) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let known = name.ends_with(".scanner")
                || name.contains(".tmp.")
                    && name
                        .split('.')
                        .next()
                        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
            if known {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&readers);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == SETTINGS_FILE || is_segment_file(&name) || is_temp_of(&name, "settings") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "topic directory kept: it holds files netlog did not write");
    }
}

/// Takes the data directory's lock: an exclusive `flock` on the directory
/// itself, so nothing is written into it. When another process holds it, its
/// pid is read from `/proc/locks` (Linux) to name it.
fn lock_dir(data_dir: &Path) -> Result<std::fs::File, BrokerError> {
    let file = std::fs::File::open(data_dir).map_err(BrokerError::io(data_dir))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BrokerError::DirLocked {
            path: data_dir.to_path_buf(),
            pid: lock_holder(data_dir).unwrap_or_else(|| "unknown".into()),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(BrokerError::io(data_dir)(e)),
    }
}

/// The pid holding a `flock` on `path`, from `/proc/locks`.
fn lock_holder(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(path).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, dev_ino) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let inode = dev_ino.rsplit(':').next()?.parse::<u64>().ok()?;
        (*kind == "FLOCK" && inode == ino).then(|| pid.to_string())
    })
}

/// SHA-256 of a declared plugin's component file: how a reload tells a
/// changed file.
fn file_digest(decl: &PluginDecl) -> Result<[u8; 32], PluginError> {
    use sha2::Digest;
    let wasm = crate::plugin::read_component(&decl.name, &decl.path)?;
    Ok(sha2::Sha256::digest(&wasm).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only netlog's segment names count as segment files.
    #[test]
    fn segment_file_names() {
        assert!(is_segment_file("00000000000000000000.data"));
        assert!(is_segment_file("00000000000000000042.index"));
        assert!(!is_segment_file("notes.txt"));
        assert!(!is_segment_file("0000.data"));
    }
}
