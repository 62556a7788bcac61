//! The broker's registry on the JetStream engine: topics are streams in
//! the cluster, so the registry is a cache of the ones this process has
//! met.
//!
//! At start-up every netlog stream is opened; afterwards a name this
//! process does not know is looked up in the cluster before it is a 404
//! (another front end may have made it a moment ago), and a topic listing
//! asks the cluster. Create and delete go to the cluster first and then to
//! the cache. Every call here waits for the servers, bounded by the
//! engine's `request_timeout`; the broker's synchronous API runs them
//! through [`jetstream::block`].

use std::sync::Arc;

use super::{Broker, BrokerError};
use crate::config::{JetStreamConfig, Settings, SettingsInput, Strictness, resolve_settings};
use crate::topic::jetstream::{self, JsEngine};
use crate::topic::{Hooks, Topic, TopicError};

/// An engine failure as a broker error.
fn engine(what: &'static str) -> impl FnOnce(jetstream::EngineError) -> BrokerError {
    move |source| BrokerError::Topic(TopicError::Engine { what, source })
}

/// Runs `work` from the broker's synchronous API.
fn block<T>(
    work: impl std::future::Future<Output = Result<T, jetstream::EngineError>>,
) -> Result<T, jetstream::EngineError> {
    jetstream::block(work)
        .unwrap_or_else(|| Err("the JetStream engine needs netlog's multi-threaded runtime".into()))
}

impl Broker {
    /// Connects to the cluster (refusing a server below JetStream API
    /// level 2). Blocking.
    pub(crate) fn connect_jetstream(
        cfg: &JetStreamConfig,
        scanner_idle_ttl: std::time::Duration,
    ) -> Result<Arc<JsEngine>, BrokerError> {
        block(JsEngine::connect(cfg, scanner_idle_ttl)).map_err(engine("connecting to JetStream"))
    }

    /// Opens every netlog topic of the cluster. Blocking.
    pub(crate) fn load_js_topics(&self, js: &Arc<JsEngine>) -> Result<(), BrokerError> {
        let listed = block(js.list()).map_err(engine("listing streams"))?;
        for (name, stored) in listed {
            let topic = self.open_js_topic(js, &name, stored)?;
            self.topics_mut().insert(name, topic);
        }
        Ok(())
    }

    /// Opens topic `name` from its stored settings JSON. Blocking.
    fn open_js_topic(
        &self,
        js: &Arc<JsEngine>,
        name: &str,
        stored: Option<String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        let settings = self.stored_js_settings(name, stored.as_deref())?;
        let hooks = self.with_view(|v| v.build_stored_hooks(name, &settings))?.0;
        let topic = block(js.open(name, settings, hooks)).map_err(engine("opening a topic"))?;
        tracing::info!(topic = name, engine = "jetstream", "topic loaded");
        Ok(Topic::on_jetstream(topic))
    }

    /// Settings from a stream's metadata, through the one resolver.
    fn stored_js_settings(&self, name: &str, json: Option<&str>) -> Result<Settings, BrokerError> {
        let config = self.config();
        let input: SettingsInput = match json {
            None | Some("") => SettingsInput::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| BrokerError::InvalidDir {
                path: name.into(),
                reason: format!("stream metadata settings: {e}"),
            })?,
        };
        resolve_settings(
            input,
            &config.defaults,
            &config.plugin_names(),
            Strictness::Stored,
        )
        .map_err(|e| BrokerError::InvalidDir {
            path: name.into(),
            reason: e.to_string(),
        })
    }

    /// A topic this process has not met: looked up in the cluster.
    pub(crate) fn find_js_topic(
        &self,
        js: &Arc<JsEngine>,
        name: &str,
    ) -> Result<Option<Arc<Topic>>, BrokerError> {
        let Some(stored) = block(js.settings_of(name)).map_err(engine("looking up a stream"))?
        else {
            // Deleted by another front end: forget it here too.
            self.topics_mut().remove(name);
            return Ok(None);
        };
        let topic = match self.open_js_topic(js, name, Some(stored)) {
            Ok(topic) => topic,
            // Deleted between the lookup and the open: a 404 as well.
            Err(BrokerError::Topic(TopicError::Engine { source, .. }))
                if jetstream::stream_gone(&*source) =>
            {
                self.topics_mut().remove(name);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut topics = self.topics_mut();
        match topics.get(name) {
            Some(held) if !held.gone_elsewhere() => Ok(Some(held.clone())),
            _ => {
                topics.insert(name.to_string(), topic.clone());
                Ok(Some(topic))
            }
        }
    }

    /// Makes a new topic's stream and opens it. Blocking.
    pub(crate) fn create_js_topic(
        &self,
        js: &Arc<JsEngine>,
        name: &str,
        settings: Settings,
        hooks: Hooks,
    ) -> Result<Arc<Topic>, BrokerError> {
        if name.len() > jetstream::MAX_NAME {
            return Err(BrokerError::InvalidName(format!(
                "topic names are at most {} characters on the JetStream engine",
                jetstream::MAX_NAME
            )));
        }
        if !block(js.create(name, &settings)).map_err(engine("creating a stream"))? {
            return Err(BrokerError::TopicExists);
        }
        let topic = block(js.open(name, settings, hooks)).map_err(engine("opening a topic"))?;
        tracing::info!(topic = name, engine = "jetstream", "topic created");
        Ok(Topic::on_jetstream(topic))
    }

    /// Deletes a topic's stream and cursors. Blocking.
    pub(crate) fn delete_js_topic(
        &self,
        js: &Arc<JsEngine>,
        name: &str,
    ) -> Result<(), BrokerError> {
        block(js.delete(name)).map_err(engine("deleting a stream"))
    }

    /// Whether the storage engine serves: always on the embedded one; on
    /// JetStream, connected and answering (one account request).
    pub async fn engine_ready(&self) -> bool {
        match &self.js {
            Some(js) => js.ready().await,
            None => true,
        }
    }

    /// The names of every netlog topic in the cluster (the cache's on
    /// failure).
    pub(crate) fn js_topic_names(&self, js: &Arc<JsEngine>) -> Option<Vec<String>> {
        let mut names: Vec<String> = block(js.list()).ok()?.into_iter().map(|(n, _)| n).collect();
        names.sort();
        Some(names)
    }
}
