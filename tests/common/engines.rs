//! One harness for the HTTP tests on both storage engines: a test written
//! as `async fn name(on: Engine)` runs once on the embedded log and once on
//! JetStream (a one-node nats-server of its own, so tests never share
//! topics) through [`on_both_engines!`]. What the engines are expected to do
//! differently is the one table [`DIFFERENCES`]; a test asks
//! [`Engine::has`] and nothing else about the engine it runs on.

use std::path::Path;

use netlog::config::{Config, EngineConfig, JetStreamConfig};

use super::{Api, Broker, NatsCluster, skip, spawn_broker_with, test_config};

/// The engine a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Embedded,
    JetStream,
}

/// A behaviour that depends on the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aspect {
    /// A topic is a directory of the data directory, with `settings.json`
    /// and persistent scanners' files in `readers/`.
    TopicDirectory,
    /// Topic info lists the log's segments (a new topic has one).
    Segments,
    /// Topic names may be 255 characters long (else 252).
    LongNames,
    /// A consumer group's settings change (`PATCH`), its pending entries
    /// are listed and it seeks; else those routes answer 501 not
    /// implemented (receive, settle, info, create, delete work on both).
    GroupAdministration,
    /// netlog's own table of idempotency keys: `dedup_max_keys` evicts, the
    /// `netlog_dedup_*` metrics count, a key in flight is `409 in use`.
    /// Else the stream's duplicate window keeps every key of the window
    /// (no cap, no metrics) and a concurrent retry replays the original.
    DedupTable,
}

/// The expected differences: `(aspect, embedded, jetstream, why)`.
pub const DIFFERENCES: &[(Aspect, bool, bool, &str)] = &[
    (
        Aspect::TopicDirectory,
        true,
        false,
        "JetStream topics are streams in the cluster; the data directory holds the plugin cache only",
    ),
    (
        Aspect::Segments,
        true,
        false,
        "a stream has no segments to list",
    ),
    (
        Aspect::LongNames,
        true,
        false,
        "a stream name is at most 255 bytes, 3 of them netlog's prefix",
    ),
    (
        Aspect::GroupAdministration,
        true,
        false,
        "a group is a durable pull consumer, whose pending deliveries JetStream does not list and whose position it does not move",
    ),
    (
        Aspect::DedupTable,
        true,
        false,
        "JetStream's duplicate window keeps the Nats-Msg-Id of every publish within it, unbounded, and counts nothing netlog could export",
    ),
];

impl Engine {
    /// Whether this engine has `aspect` (see [`DIFFERENCES`]).
    pub fn has(self, aspect: Aspect) -> bool {
        let (_, embedded, jetstream, _) = DIFFERENCES
            .iter()
            .find(|d| d.0 == aspect)
            .expect("every aspect is in the table");
        match self {
            Engine::Embedded => *embedded,
            Engine::JetStream => *jetstream,
        }
    }

    /// A broker on this engine with the test defaults and data directory
    /// `dir`; `None` (the test skipped) when JetStream has no server here.
    pub async fn broker(self, dir: &Path) -> Option<Served> {
        self.broker_with(test_config(dir)).await
    }

    /// The same with `config` (its engine replaced).
    pub async fn broker_with(self, mut config: Config) -> Option<Served> {
        let cluster = match self {
            Engine::Embedded => None,
            Engine::JetStream => {
                let Some(c) = NatsCluster::start(1).await else {
                    skip("no nats-server binary: run ./test.sh, or set NETLOG_NATS_SERVER");
                    return None;
                };
                config.engine = EngineConfig::JetStream(Box::new(JetStreamConfig {
                    servers: c.urls(),
                    replicas: 1,
                    ..JetStreamConfig::default()
                }));
                Some(c)
            }
        };
        Some(Served {
            broker: spawn_broker_with(config),
            _cluster: cluster,
        })
    }
}

/// A broker and, on JetStream, the server under it (dropped after it).
pub struct Served {
    broker: Broker,
    _cluster: Option<NatsCluster>,
}

impl Served {
    /// A client for the broker.
    pub fn api(&self) -> Api {
        self.broker.api()
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.broker.addr()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.broker.base_url()
    }

    /// Graceful stop, which must succeed.
    pub async fn stop(self) {
        self.broker.stop().await;
    }
}

/// Runs each named `async fn name(on: Engine)` of the calling module on
/// both engines, as `name::embedded` and `name::jetstream`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::common::Engine;

            /// The test on the embedded log.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(Engine::Embedded).await;
            }

            /// The test on JetStream.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn jetstream() {
                super::$name(Engine::JetStream).await;
            }
        }
    )*};
}
