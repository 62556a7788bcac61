//! The JetStream engine: topics kept in NATS JetStream streams, so that any
//! number of netlog processes serve the same topics (`docs/engines.md`).
//!
//! **Mapping.** Topic `orders.eu-1` is stream `nl_orders=eu-1` with the one
//! subject `nl.t.orders=eu-1` (a `.` would split a subject, so it becomes
//! `=`, which topic names cannot hold). Offset = stream sequence - 1: the
//! stream never renumbers, and a purge only moves its first sequence. The
//! stream is made with `num_replicas` = `replicas`, file storage, direct
//! get, atomic batch publish, `deny_delete`, the topic's `dedup_window` as
//! duplicate window (at most `max_age`, which JetStream requires) and
//! `max_msg_size` = the server's `max_payload`; the topic's settings
//! JSON is kept in the stream's metadata (`netlog.settings`), and
//! `segment_age` becomes `max_age` when no retention plugin is named. A
//! headers-only RePublish of every stored message to `nl.w.<topic>`, sent
//! by the stream leader after the commit, wakes waiting consumers.
//!
//! **Scanners** are cursors in two KV buckets, `nl_scanners` (persistent,
//! kept) and `nl_scanners_idle` (expiring after `scanner_idle_ttl` without a
//! write), key `<topic>.<uuid>`, value `{"next":N,"from":F,"persistent":b}`.
//! A scan moves its cursor by compare-and-set on the entry's revision, so
//! one offset is handed out once even when two front ends scan one scanner.
//!
//! **v1 messages** carry their key, headers, timestamp and idempotency
//! section as NATS headers (`headers.rs`); an `Idempotency-Key` is the
//! first message's `Nats-Msg-Id` (`publish.rs`, `topic.rs`).
//!
//! **Retention plugins** decide over virtual segments kept in a ledger
//! (`ledger.rs`); their deletions are purges of the stream.
//!
//! **Nothing here is state.** The engine holds a connection, the topics it
//! has seen (a cache refilled from the server on a miss) and their wake-up
//! subscriptions; killing the process loses only requests in flight.
//!
//! **Bounds.** Every request to the servers has `request_timeout`; a publish
//! is retried until `publish_timeout`; a scan reads at most
//! [`MAX_SCAN_MESSAGES`] messages, with at most [`READS_IN_FLIGHT`] direct
//! gets in flight; waits re-read every [`SAFETY_REREAD`] whatever wakes
//! them. Batches hold at most [`MAX_BATCH`] messages (the server's limit).

mod cursors;
pub(crate) mod groups;
mod headers;
mod ledger;
mod publish;
mod topic;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::TopicError;
use crate::config::{JetStreamConfig, Settings};
pub(crate) use cursors::Cursors;
pub(crate) use topic::{JsSubscription, JsTopic, stream_gone};

/// Prefix of every netlog stream's name.
pub const STREAM_PREFIX: &str = "nl_";
/// Prefix of every netlog topic's subject.
pub const SUBJECT_PREFIX: &str = "nl.t.";
/// Prefix of the headers-only RePublish subject that wakes waiting consumers.
pub const WAKE_PREFIX: &str = "nl.w.";
/// Stream metadata key holding the topic's settings JSON.
pub const SETTINGS_KEY: &str = "netlog.settings";
/// Stream metadata key holding the topic's name as given.
pub const NAME_KEY: &str = "netlog.topic";
/// Lowest JetStream API level the engine runs on: 2 (nats-server 2.12),
/// the first with atomic batch publish. Older servers ignore the batch
/// headers and would store part of a failed batch.
pub const MIN_API_LEVEL: usize = 2;
/// Most messages in one batch publish: the server's default limit (1,000).
pub const MAX_BATCH: usize = 1000;
/// Most messages one scan or stream read returns (whatever `limits` ask).
pub const MAX_SCAN_MESSAGES: usize = 1000;
/// Most direct gets in flight for one read.
pub const READS_IN_FLIGHT: usize = 64;
/// A waiting consumer re-reads at least this often, woken or not (1 s): a
/// lost wake-up costs at most this much latency.
pub const SAFETY_REREAD: Duration = Duration::from_secs(1);
/// Bytes a message's headers may take (the `Nats-Msg-Id` and batch
/// headers), kept free under `max_payload` when checking a payload's size.
pub const HEADER_ROOM: usize = 512;
/// How long start-up waits for JetStream to answer and its buckets to be
/// made (30 s): a cluster that just started may still be electing.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two start-up tries (250 ms).
pub const SETUP_PAUSE: Duration = Duration::from_millis(250);
/// Longest topic name this engine takes: a stream name is at most 255
/// bytes, and the prefix takes 3.
pub const MAX_NAME: usize = 252;

/// Errors of the JetStream engine, wrapped into [`TopicError::Engine`].
pub(crate) type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// The stream name of a topic.
pub(crate) fn stream_name(topic: &str) -> String {
    format!("{STREAM_PREFIX}{}", topic.replace('.', "="))
}

/// The topic of a stream name, if it is one of netlog's.
pub(crate) fn topic_name(stream: &str) -> Option<String> {
    stream
        .strip_prefix(STREAM_PREFIX)
        .map(|t| t.replace('=', "."))
}

/// The subject a topic's messages are published on.
pub(crate) fn subject(topic: &str) -> String {
    format!("{SUBJECT_PREFIX}{}", topic.replace('.', "="))
}

/// The subject its stored messages' headers are republished on.
pub(crate) fn wake_subject(topic: &str) -> String {
    format!("{WAKE_PREFIX}{}", topic.replace('.', "="))
}

/// Runs `work` to completion from synchronous code: on a blocking-pool
/// thread directly, on a multi-threaded runtime's worker through
/// `block_in_place`. `None` outside a runtime, or on a single-threaded one
/// (where blocking the only worker would hang it).
pub(crate) fn block<F: Future>(work: F) -> Option<F::Output> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => {
            Some(tokio::task::block_in_place(|| handle.block_on(work)))
        }
        _ => None,
    }
}

/// A connection to a JetStream cluster. See the module docs.
pub(crate) struct JsEngine {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: JetStreamConfig,
    cursors: Cursors,
    ledgers: ledger::Ledgers,
    /// The servers' `max_payload`, read at connect.
    max_payload: usize,
}

impl JsEngine {
    /// Connects, checks the server's JetStream API level (refusing one
    /// below [`MIN_API_LEVEL`], naming its version) and makes the scanner
    /// buckets.
    pub(crate) async fn connect(
        cfg: &JetStreamConfig,
        scanner_idle_ttl: Duration,
    ) -> Result<Arc<JsEngine>, EngineError> {
        let client = connect_options(cfg)
            .await?
            .connect(cfg.servers.clone())
            .await?;
        let info = client.server_info();
        if info.max_payload == 0 {
            return Err(format!("nats-server {} sent no max_payload", info.version).into());
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.request_timeout);
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let account = loop {
            match js.query_account().await {
                Ok(a) => break a,
                // A cluster still electing its meta leader: ask again.
                Err(e)
                    if e.kind() == jetstream::context::AccountErrorKind::TimedOut
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(SETUP_PAUSE).await;
                }
                Err(e) => {
                    return Err(format!(
                        "nats-server {}: JetStream unavailable: {e}; is JetStream enabled?",
                        info.version
                    )
                    .into());
                }
            }
        };
        let level = account.requests.level;
        if level < MIN_API_LEVEL {
            return Err(format!(
                "nats-server {} has JetStream API level {level}; netlog's JetStream engine \
                 needs level {MIN_API_LEVEL} or later (nats-server 2.12+), for atomic batch \
                 publish",
                info.version
            )
            .into());
        }
        let (cursors, ledgers) = loop {
            let made = async {
                let cursors = Cursors::open(&js, cfg.replicas, scanner_idle_ttl).await?;
                let ledgers = ledger::Ledgers::open(&js, cfg.replicas).await?;
                Ok::<_, EngineError>((cursors, ledgers))
            };
            match made.await {
                Ok(made) => break made,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "JetStream buckets not made yet: trying again");
                    tokio::time::sleep(SETUP_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(
            version = %info.version,
            api_level = level,
            max_payload = info.max_payload,
            "connected to JetStream"
        );
        Ok(Arc::new(JsEngine {
            client,
            js,
            cfg: cfg.clone(),
            cursors,
            ledgers,
            max_payload: info.max_payload,
        }))
    }

    /// Every netlog topic in the cluster, with its stored settings (`None`
    /// when its metadata holds none).
    pub(crate) async fn list(&self) -> Result<Vec<(String, Option<String>)>, EngineError> {
        use futures_util::StreamExt;
        let mut streams = self.js.streams();
        let mut out = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info?;
            if let Some(name) = topic_name(&info.config.name) {
                out.push((name, info.config.metadata.get(SETTINGS_KEY).cloned()));
            }
        }
        Ok(out)
    }

    /// The stored settings JSON of one topic; `None` if it has no stream.
    pub(crate) async fn settings_of(&self, topic: &str) -> Result<Option<String>, EngineError> {
        // `get_stream` fetched the stream's info; asking again would be a
        // second round trip, and a 500 when a delete came in between.
        match self.js.get_stream(stream_name(topic)).await {
            Ok(s) => Ok(Some(
                s.cached_info()
                    .config
                    .metadata
                    .get(SETTINGS_KEY)
                    .cloned()
                    .unwrap_or_default(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The stream config of a topic with `settings`.
    fn stream_config(&self, topic: &str, settings: &Settings) -> stream::Config {
        let json = serde_json::to_string(settings).unwrap_or_default();
        let max_age = match settings.retention {
            None => settings.segment_age,
            // The plugin decides deletions (through the ledger).
            Some(_) => Duration::ZERO,
        };
        stream::Config {
            name: stream_name(topic),
            subjects: vec![subject(topic)],
            num_replicas: self.cfg.replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            allow_atomic_publish: true,
            deny_delete: true,
            duplicate_window: duplicate_window(settings.dedup_window, max_age),
            max_message_size: i32::try_from(self.max_payload).unwrap_or(i32::MAX),
            max_age,
            compression: (settings.compression_type != crate::message::SET_NONE)
                .then_some(stream::Compression::S2),
            republish: Some(stream::Republish {
                source: subject(topic),
                destination: wake_subject(topic),
                headers_only: true,
            }),
            metadata: HashMap::from([
                (SETTINGS_KEY.to_string(), json),
                (NAME_KEY.to_string(), topic.to_string()),
            ]),
            ..Default::default()
        }
    }

    /// The connection.
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the connection is up and JetStream answers within
    /// `request_timeout` (for `/_ready`).
    pub(crate) async fn ready(&self) -> bool {
        let connected = matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        );
        connected
            && matches!(
                tokio::time::timeout(self.cfg.request_timeout, self.js.query_account()).await,
                Ok(Ok(_))
            )
    }

    /// Creates a topic's stream; `Ok(false)` if it exists already.
    pub(crate) async fn create(
        &self,
        topic: &str,
        settings: &Settings,
    ) -> Result<bool, EngineError> {
        if topic.len() > MAX_NAME {
            return Err(format!(
                "topic names on the JetStream engine are at most {MAX_NAME} characters"
            )
            .into());
        }
        match self
            .js
            .create_stream(self.stream_config(topic, settings))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                stream_exists
                    if matches!(&stream_exists, jetstream::context::CreateStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST) =>
                {
                    Ok(false)
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Stores new settings in a topic's stream.
    pub(crate) async fn update(&self, topic: &str, settings: &Settings) -> Result<(), EngineError> {
        self.js
            .update_stream(self.stream_config(topic, settings))
            .await?;
        Ok(())
    }

    /// Deletes a topic's stream and its scanners' cursors.
    pub(crate) async fn delete(&self, topic: &str) -> Result<(), EngineError> {
        match self.js.delete_stream(stream_name(topic)).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(e.into()),
        }
        self.ledgers.delete(topic).await?;
        self.cursors.delete_topic(topic).await
    }

    /// Opens the topic whose stream holds `settings` (as resolved).
    pub(crate) async fn open(
        self: &Arc<Self>,
        topic: &str,
        settings: Settings,
        hooks: super::Hooks,
    ) -> Result<Arc<JsTopic>, EngineError> {
        JsTopic::open(self.clone(), topic, settings, hooks).await
    }
}

/// A stream's duplicate window: the topic's `dedup_window` (default 2 min),
/// no longer than a non-zero `max_age` (JetStream refuses a longer one; a
/// message gone by age cannot be replayed anyway).
fn duplicate_window(dedup_window: Duration, max_age: Duration) -> Duration {
    if max_age.is_zero() {
        dedup_window
    } else {
        dedup_window.min(max_age)
    }
}

/// Whether a get-stream error says the stream does not exist.
fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The connect options of `cfg`: credentials, TLS and timeouts. The first
/// connect must succeed (start-up fails, naming the servers); afterwards
/// the client reconnects without end (a front end outlives any server).
async fn connect_options(cfg: &JetStreamConfig) -> Result<async_nats::ConnectOptions, EngineError> {
    let first_line = |path: &std::path::Path| -> Result<String, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text.lines().next().unwrap_or("").trim().to_string())
    };
    let mut o = async_nats::ConnectOptions::new()
        .name("netlog")
        .connection_timeout(cfg.connect_timeout)
        .request_timeout(Some(cfg.request_timeout));
    if let Some(path) = &cfg.credentials {
        o = o
            .credentials_file(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let (Some(user), Some(path)) = (&cfg.user, &cfg.password_file) {
        o = o.user_and_password(user.clone(), first_line(path)?);
    }
    if let Some(path) = &cfg.token_file {
        o = o.token(first_line(path)?);
    }
    if let Some(path) = &cfg.nkey_file {
        o = o.nkey(first_line(path)?);
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.servers.iter().any(|s| s.starts_with("tls://")) {
        o = o.require_tls(true);
    }
    Ok(o)
}

/// An engine failure of `what` as a topic error.
pub(crate) fn engine_error(what: &'static str) -> impl FnOnce(EngineError) -> TopicError {
    move |source| TopicError::Engine { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(stream_name("orders.eu-1"), "nl_orders=eu-1");
        assert_eq!(subject("orders.eu-1"), "nl.t.orders=eu-1");
        assert_eq!(wake_subject("a.b"), "nl.w.a=b");
        assert_eq!(topic_name("nl_orders=eu-1").as_deref(), Some("orders.eu-1"));
        assert_eq!(topic_name("KV_nl_scanners"), None);
    }

    #[test]
    fn duplicate_window_is_the_dedup_window_within_max_age() {
        let (two_min, hour) = (Duration::from_secs(120), Duration::from_secs(3600));
        assert_eq!(duplicate_window(hour, Duration::ZERO), hour);
        assert_eq!(duplicate_window(hour, two_min), two_min);
        assert_eq!(duplicate_window(two_min, hour), two_min);
    }
}
