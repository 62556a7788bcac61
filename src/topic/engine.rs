//! The engine seam: [`Topic`], the facade every caller above the topic
//! layer uses, over the engine that stores the topic.
//!
//! Two engines exist. The *embedded* engine is the log in the topic's
//! directory ([`Embedded`], the rest of this module's siblings: writer,
//! scanners, retention); it is the default and needs nothing else. The
//! *JetStream* engine (`jetstream/`) keeps the topic in a replicated NATS
//! JetStream stream, so any number of netlog processes can serve the same
//! topics; everything it holds in memory is a cache.
//!
//! The seam is an enum, [`Engine`], with one arm per engine, and every
//! facade method is one `match`: the operations are publish (single and
//! batch, all or nothing), resolve an offset, read at an offset, scanners
//! (create, look up, delete, scan with a wait), subscribe (streams), sync,
//! check, info, maintain and delete. Engine-level work (list, create, open,
//! ready, close) is done by the broker through each engine's own type. An
//! enum rather than a trait object: both engines are known here, calls
//! need no boxed futures on the publish path, and an operation one engine
//! lacks is visible in the `match` rather than hidden behind a default
//! method. `http/` sees none of it: its types ([`Topic`], [`Subscription`],
//! [`ScannerEntry`], [`TopicInfo`]) are the same for both engines.
//!
//! Validation plugins run in front of the engine for both: the embedded
//! writer runs them once per group commit, the JetStream engine before it
//! publishes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::jetstream::{JsSubscription, JsTopic};
use super::{
    Batch, Embedded, Hooks, Keyed, LogSubscription, PluginStats, ReadLimits, ScannerEntry,
    TopicError, TopicGauges, TopicInfo, TopicStats,
};
use crate::config::Settings;
use crate::duration::OffsetSpec;
use crate::log::{CheckError, LogOptions};
use crate::message::Message;

/// The engine a topic lives on. See the module docs.
pub(crate) enum Engine {
    /// The log in the topic's directory.
    Embedded(Arc<Embedded>),
    /// A JetStream stream.
    JetStream(Arc<JsTopic>),
}

/// A topic, on whichever engine stores it: the only thing the HTTP layer
/// talks to for a topic. See the module docs.
pub struct Topic {
    engine: Engine,
}

/// Calls `$call` on the topic's engine, whichever it is.
macro_rules! on_engine {
    ($self:expr, $t:ident => $call:expr) => {
        match &$self.engine {
            Engine::Embedded($t) => $call,
            Engine::JetStream($t) => $call,
        }
    };
}

/// Awaits the future `$call` on the topic's engine. The JetStream one is
/// boxed: its futures (a NATS request and its retries) are kilobytes, and
/// unboxed they would size every embedded call's future, which the hot
/// routes move into a box of their own on each request (callgrind: a 6.4 KB
/// copy per publish). On JetStream the extra allocation is nothing beside
/// the network round trip.
macro_rules! on_engine_async {
    ($self:expr, $t:ident => $call:expr) => {
        match &$self.engine {
            Engine::Embedded($t) => $call.await,
            Engine::JetStream($t) => Box::pin($call).await,
        }
    };
}

impl Topic {
    /// Opens (or, with `create`, creates) the embedded topic in `dir`; see
    /// [`Embedded::open`]. Blocking.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        settings: Settings,
        log_opts: LogOptions,
        hooks: Hooks,
        create: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let topic = Embedded::open(name, dir, settings, log_opts, hooks, create)?;
        Ok(Arc::new(Topic {
            engine: Engine::Embedded(topic),
        }))
    }

    /// A topic on the JetStream engine.
    pub(crate) fn on_jetstream(topic: Arc<JsTopic>) -> Arc<Topic> {
        Arc::new(Topic {
            engine: Engine::JetStream(topic),
        })
    }

    /// Whether another front end deleted it (JetStream): the broker then
    /// drops it from its registry and looks again.
    pub(crate) fn gone_elsewhere(&self) -> bool {
        match &self.engine {
            Engine::Embedded(_) => false,
            Engine::JetStream(t) => t.is_gone(),
        }
    }

    /// The embedded engine's topic, for what only it has yet: consumer
    /// groups (`crate::group`) keep their files in its directory and wait
    /// on its log. `None` on JetStream.
    pub(crate) fn embedded(&self) -> Option<&Arc<Embedded>> {
        match &self.engine {
            Engine::Embedded(t) => Some(t),
            Engine::JetStream(_) => None,
        }
    }

    /// The JetStream engine's topic, for what it keeps beside the stream:
    /// consumer groups (`crate::group::jetstream`). `None` on the embedded
    /// engine.
    pub(crate) fn jetstream(&self) -> Option<&Arc<JsTopic>> {
        match &self.engine {
            Engine::Embedded(_) => None,
            Engine::JetStream(t) => Some(t),
        }
    }

    /// The name of the engine storing the topic: `embedded` or `jetstream`.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Embedded(_) => "embedded",
            Engine::JetStream(_) => "jetstream",
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        on_engine!(self, t => t.name())
    }

    /// The topic's directory; empty on the JetStream engine, which has none.
    pub fn dir(&self) -> &Path {
        on_engine!(self, t => t.dir())
    }

    /// The topic's settings, as of now.
    pub fn settings(&self) -> Settings {
        on_engine!(self, t => t.settings())
    }

    /// The topic's plugins, as of now.
    pub fn hooks(&self) -> Arc<Hooks> {
        on_engine!(self, t => t.hooks())
    }

    /// Replaces the topic's hooks and the settings naming them (reload).
    pub(crate) fn replace_hooks(&self, settings: Settings, hooks: Hooks) {
        on_engine!(self, t => t.replace_hooks(settings, hooks))
    }

    /// Stores `settings` where the engine keeps them. Blocking.
    pub(crate) fn store_settings(&self, settings: &Settings) -> Result<(), TopicError> {
        on_engine!(self, t => t.store_settings(settings))
    }

    /// The offset the next message will get, as this process last saw it.
    pub fn next_offset(&self) -> u64 {
        on_engine!(self, t => t.next_offset())
    }

    /// Messages handed to consumers by this process since start.
    pub fn messages_out(&self) -> u64 {
        on_engine!(self, t => t.messages_out())
    }

    /// Stores `batch` (all or nothing); its first offset once stored.
    pub async fn publish(&self, batch: Batch) -> Result<u64, TopicError> {
        on_engine_async!(self, t => t.publish(batch))
    }

    /// Stores `batch` past the validator: what the broker writes itself
    /// (dead letters).
    pub(crate) async fn publish_trusted(&self, batch: Batch) -> Result<u64, TopicError> {
        match &self.engine {
            Engine::Embedded(t) => t.publish_trusted(batch).await,
            Engine::JetStream(t) => Box::pin(t.publish(batch)).await,
        }
    }

    /// Lets v1 messages into the topic: refuses a `v0` topic and records
    /// `"message_format":"v1"` before the first (see [`Embedded::allow_v1`];
    /// JetStream records it in the stream's settings).
    pub async fn allow_v1(&self) -> Result<(), TopicError> {
        on_engine_async!(self, t => t.allow_v1())
    }

    /// Stores `batch`, whose first message carries the request's
    /// idempotency section, at most once per key, where the engine keeps
    /// the keys itself: JetStream's duplicate window. The embedded engine
    /// keeps them in [`Topic::dedup`] above the write, so here it only
    /// stores.
    pub async fn publish_keyed(&self, batch: Batch) -> Result<Keyed, TopicError> {
        match &self.engine {
            Engine::Embedded(t) => t.publish(batch).await.map(Keyed::Stored),
            Engine::JetStream(t) => Box::pin(t.publish_keyed(batch)).await,
        }
    }

    /// The topic's idempotency-key table; `None` on JetStream, whose
    /// stream keeps the keys ([`Topic::publish_keyed`]).
    pub fn dedup(&self) -> Option<&Arc<super::Dedup>> {
        match &self.engine {
            Engine::Embedded(t) => Some(t.dedup()),
            Engine::JetStream(_) => None,
        }
    }

    /// The messages from `from` on, at most `max` and about `max_bytes`
    /// (see [`Embedded::read_run`]); on JetStream one read per offset.
    pub async fn read_run(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, TopicError> {
        match &self.engine {
            Engine::Embedded(t) => t.read_run(from, max, max_bytes).await,
            Engine::JetStream(t) => {
                let (mut run, mut bytes) = (Vec::new(), 0usize);
                for offset in from..from.saturating_add(max as u64) {
                    if !run.is_empty() && bytes >= max_bytes {
                        break;
                    }
                    if let Some(m) = Box::pin(t.read(offset)).await? {
                        bytes += m.payload.len();
                        run.push(m);
                    }
                }
                Ok(run)
            }
        }
    }

    /// When each of `offsets` was written, where the engine knows (the
    /// embedded index; `None` on JetStream).
    pub async fn write_times(
        &self,
        offsets: Vec<u64>,
    ) -> Result<Vec<Option<std::time::SystemTime>>, TopicError> {
        match &self.engine {
            Engine::Embedded(t) => t.write_times(offsets).await,
            Engine::JetStream(_) => Ok(vec![None; offsets.len()]),
        }
    }

    /// Resolves an offset spec against the topic.
    pub async fn resolve(&self, spec: OffsetSpec) -> Result<u64, TopicError> {
        on_engine_async!(self, t => t.resolve(spec))
    }

    /// The message at exactly `offset`, or `None` if none is stored there.
    pub async fn read(&self, offset: u64) -> Result<Option<Message>, TopicError> {
        on_engine_async!(self, t => t.read(offset))
    }

    /// Opens a scanner at `from`.
    pub async fn create_scanner(
        &self,
        from: u64,
        persistent: bool,
    ) -> Result<Arc<ScannerEntry>, TopicError> {
        on_engine_async!(self, t => t.create_scanner(from, persistent))
    }

    /// Looks up a scanner (on JetStream: in the cursor bucket).
    pub fn scanner(&self, id: &str) -> Result<Arc<ScannerEntry>, TopicError> {
        match &self.engine {
            Engine::Embedded(t) => t.scanner(id),
            Engine::JetStream(t) => t.scanner_now(id),
        }
    }

    /// How many scanners this process knows of.
    pub fn scanner_count(&self) -> usize {
        on_engine!(self, t => t.scanner_count())
    }

    /// Every scanner this process knows of, sorted by id.
    pub fn scanners(&self) -> Vec<Arc<ScannerEntry>> {
        on_engine!(self, t => t.scanners())
    }

    /// Removes a scanner.
    pub async fn delete_scanner(&self, id: &str) -> Result<(), TopicError> {
        on_engine_async!(self, t => t.delete_scanner(id))
    }

    /// Up to `limits` messages from scanner `entry`, waiting up to `wait`
    /// for the first; each message is handed out once.
    pub async fn scan(
        &self,
        entry: &Arc<ScannerEntry>,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        on_engine_async!(self, t => t.scan(entry, limits, wait, stop))
    }

    /// Waits up to `wait` until `entry` has a message to read.
    pub async fn wait_readable(
        &self,
        entry: &Arc<ScannerEntry>,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TopicError> {
        on_engine_async!(self, t => t.wait_readable(entry, wait, stop))
    }

    /// A subscription from `from`, for streams.
    pub async fn subscribe(&self, from: u64) -> Result<Subscription, TopicError> {
        Ok(match &self.engine {
            Engine::Embedded(t) => Subscription::Embedded(t.subscribe(from).await?),
            Engine::JetStream(t) => Subscription::JetStream(t.subscribe(from)),
        })
    }

    /// Makes what was published durable (embedded: fsync; JetStream: the
    /// servers' own `sync_interval` decides, so this returns at once).
    pub async fn sync(&self) -> Result<(), TopicError> {
        on_engine_async!(self, t => t.sync())
    }

    /// The integrity check from `from` (JetStream: the servers check their
    /// own files; nothing to report here).
    pub async fn check(&self, from: u64) -> Result<Vec<CheckError>, TopicError> {
        on_engine_async!(self, t => t.check(from))
    }

    /// Facts for topic info, listing at most `max_scanners` scanners.
    pub async fn info(&self, max_scanners: usize) -> Result<TopicInfo, TopicError> {
        on_engine_async!(self, t => t.info(max_scanners))
    }

    /// One monitor pass (retention, idle scanners). Blocking.
    pub(crate) fn maintain(&self) -> Result<(), TopicError> {
        on_engine!(self, t => t.maintain())
    }

    /// The interval fsync's visit. Blocking.
    pub(crate) fn sync_if_due(&self) -> Result<(), TopicError> {
        on_engine!(self, t => t.sync_if_due())
    }

    /// Ends every consumer and refuses new publishes before a delete.
    pub(crate) fn mark_deleted(&self) {
        on_engine!(self, t => t.mark_deleted())
    }

    /// Writes what is queued and releases the topic. Blocking.
    pub(crate) fn close(&self) -> Result<(), TopicError> {
        on_engine!(self, t => t.close())
    }

    /// The publish counters of this process.
    pub fn stats(&self) -> &TopicStats {
        on_engine!(self, t => t.stats())
    }

    /// Latest offset, segment count and disk use.
    pub fn gauges(&self) -> TopicGauges {
        on_engine!(self, t => t.gauges())
    }

    /// Each persistent scanner and its lag.
    pub fn scanner_lags(&self) -> Vec<(Uuid, u64)> {
        on_engine!(self, t => t.scanner_lags())
    }

    /// Every plugin bound to the topic, with its counters.
    pub fn plugin_stats(&self) -> Vec<PluginStats> {
        on_engine!(self, t => t.plugin_stats())
    }
}

/// A stream's position, on either engine. See [`Topic::subscribe`].
pub enum Subscription {
    /// On the embedded log.
    Embedded(LogSubscription),
    /// On a JetStream stream.
    JetStream(JsSubscription),
}

impl Subscription {
    /// The next messages within `limits`, waiting up to `wait`; empty when
    /// the wait ended with nothing new.
    pub async fn next(
        &mut self,
        topic: &Topic,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        match (self, &topic.engine) {
            (Subscription::Embedded(s), Engine::Embedded(t)) => s.next(t, limits, wait, stop).await,
            (Subscription::JetStream(s), Engine::JetStream(t)) => {
                s.next(t, limits, wait, stop).await
            }
            // A subscription is only ever used with the topic it came from.
            _ => Err(TopicError::Deleted),
        }
    }
}
