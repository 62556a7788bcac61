//! netlog: a lightweight, HTTP-centric, Kafka-style message queue.
//!
//! Producers POST messages to a topic over plain HTTP; consumers open a
//! scanner and read them back by offset, long-polling or streaming. Each topic
//! is a segmented, append-only log in netlog's on-disk layout, so a data
//! directory written by the original netlog opens here unchanged. Operators
//! can assign sandboxed WebAssembly components per topic to validate what is
//! published, compress what is stored and decide what is deleted.
//!
//! The binary is thin: it parses flags and the config file and calls [`run`],
//! which tests call the same way on `127.0.0.1:0`.
//!
//! # Layout
//! Calls and imports flow one way, top to bottom, with no cycle:
//!
//! ```text
//! http  ->  broker  ->  topic  ->  { config, log, plugin }  ->  { message, duration }
//! ```
//!
//! - [`http`]: the HTTP API (axum), one file per resource. It talks to the
//!   [`broker`] to find, create and delete topics, and to a [`topic::Topic`]
//!   for everything else; it never reaches the log or a plugin. It alone
//!   turns errors into answers, in one `match`.
//! - [`broker`]: the registry of topics of one data directory (its lock,
//!   create and delete serialised per name), plugin loading, and the monitor
//!   and interval-fsync loops over every topic.
//! - [`topic`]: one topic behind the [`topic::Topic`] facade: group commit
//!   and validation (`writer.rs`), scanners and their files (`scanners.rs`),
//!   rolling and deletion (`retention.rs`), `TopicError` (`error.rs`). It
//!   holds the one rule for blocking work ([`topic`]'s docs): disk reads,
//!   fsyncs, wasm calls and deletions never run on an async worker.
//! - [`config`]: the one home for settings: defaults as named constants, the
//!   TOML file, netlog's flags, and the one resolver of topic settings used
//!   by flags, TOML, `settings.json` and the HTTP body alike.
//! - [`log`]: the segmented log: segments, index, readers, waiting
//!   scanners, recovery after a crash and the integrity check.
//! - [`plugin`]: the WebAssembly plugin host: loads, sandboxes and calls the
//!   components that validate, compress and retain a topic's messages.
//! - [`message`]: the message format (compver, CRC-32, length, payload),
//!   message sets and the codecs that compress them.
//! - [`duration`]: netlog's grammar for durations, sizes and offsets.
//! - [`histogram`]: the lock-free latency histogram behind the publish and
//!   plugin-call metrics.
//!
//! **Adding a per-topic feature:** its state and logic go in `topic/` (a new
//! file if it is a new concept), reached through a method of
//! [`topic::Topic`]; blocking work goes through `topic::blocking`; its
//! settings are a field of [`config::Settings`] resolved in
//! `config/settings.rs`, so flags, TOML, `settings.json` and the HTTP body
//! all accept it; its errors are a `TopicError` variant, mapped to an answer
//! in `http/mod.rs`. The broker changes only if the feature needs a loop over
//! all topics.

pub mod broker;
pub mod config;
pub mod duration;
pub mod histogram;
pub(crate) mod http;
pub mod log;
pub mod message;
pub mod plugin;
pub mod topic;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::{Broker, BrokerError};
use crate::config::Config;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Opening or closing the data directory failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (waking long polls and ending
/// streams), writes what is queued, saves scanner positions and fsyncs.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let monitor_interval = config.monitor_interval;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .expect("broker open task")?;
    let broker = Arc::new(broker);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = http::AppState {
        broker: broker.clone(),
        shutdown: stop_rx.clone(),
        metrics: Default::default(),
    };
    let admin = match broker.config().admin_listen_addr() {
        Some(addr) => Some(
            http::health::spawn_admin(&addr, state.clone())
                .await
                .map_err(RunError::Serve)?,
        ),
        None => None,
    };
    let monitor = tokio::spawn(periodic(
        broker.clone(),
        monitor_interval,
        stop_rx.clone(),
        Broker::monitor_tick,
    ));
    // Interval fsyncs get a task of their own, so writers never wait for them.
    let syncer = match broker.config().fsync {
        log::FsyncPolicy::Interval(every) => Some(tokio::spawn(periodic(
            broker.clone(),
            every,
            stop_rx,
            Broker::sync_topics,
        ))),
        _ => None,
    };
    if let Ok(addr) = listener.local_addr() {
        // Auth and TLS are not built yet: both off.
        log_startup(&broker, addr, false, false);
    }
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let served = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(stop)
        .await;
    let _ = monitor.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Some(syncer) = syncer {
        let _ = syncer.await;
    }
    let closed = tokio::task::spawn_blocking(move || broker.close())
        .await
        .expect("broker close task");
    served.map_err(RunError::Serve)?;
    closed?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The start-up line: version, addresses, data dir, fsync policy, config
/// file, whether authentication and TLS are on, topics and plugins.
fn log_startup(broker: &Broker, addr: std::net::SocketAddr, auth: bool, tls: bool) {
    let config = broker.config();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        admin = config.admin_listen.as_deref().unwrap_or("none"),
        data_dir = %config.data_dir.display(),
        fsync = ?config.fsync,
        config = %config.config_file.as_deref().map_or("none".into(), |p| p.display().to_string()),
        auth,
        tls,
        topics = broker.topic_names().len(),
        plugins = config.plugins.len(),
        "netlog listening"
    );
}

/// Calls `work` on the broker every `every`, on the blocking pool, until
/// `stop` turns true: the segment monitor and the interval fsync.
async fn periodic(
    broker: Arc<Broker>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    work: fn(&Broker),
) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || work(&b)).await {
            tracing::error!(error = %e, "periodic broker task failed");
        }
    }
}
