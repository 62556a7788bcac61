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
//! segment once it is older than `segment_age` (never the active one), fsyncs
//! what the interval policy leaves unsynced, and saves moved persistent
//! scanners. Its decisions are logged. The work runs on the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::{Config, Settings, SettingsError, SettingsInput};
use crate::log::{LogError, LogOptions};
use crate::topic::{self, SETTINGS_FILE, Topic};

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
}

impl Broker {
    /// Opens the data directory and every topic in it, then creates the
    /// topics the config declares.
    pub fn open(config: Config) -> Result<Broker, BrokerError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(BrokerError::io(&data_dir))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(BrokerError::io(&data_dir))?;
        let broker = Broker {
            config,
            data_dir,
            topics: RwLock::new(HashMap::new()),
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

    fn log_options(&self, settings: &Settings) -> LogOptions {
        let _ = settings;
        LogOptions {
            index_entries: self.config.index_entries,
            fsync: self.config.fsync,
            codecs: Default::default(),
        }
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
            let topic = Topic::open(
                &name,
                &path,
                settings.clone(),
                self.log_options(&settings),
                false,
            )?;
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
                serde_json::from_value(merged).map_err(|e| BrokerError::InvalidDir {
                    path,
                    reason: e.to_string(),
                })
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
        let topic = Topic::open(
            name,
            &dir,
            settings.clone(),
            self.log_options(&settings),
            true,
        )?;
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
        log.sync_if_due()?;
        topic.save_scanners()?;
        Ok(())
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
