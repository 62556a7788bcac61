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
//! http -> broker -> { topic, token } -> config -> { log, plugin }
//!      -> { durable, rate_limit } -> { message, duration, histogram, lock, fault, encode, bounded, idle_spin }
//! ```
//!
//! A module uses only modules to its right; `tests/it/layers.rs` checks this,
//! and that no two files of one directory use each other, even around a
//! cycle.
//!
//! - [`http`]: the HTTP API (axum), one file per resource. It talks to the
//!   [`broker`] to find, create and delete topics, and to a [`topic::Topic`]
//!   for everything else; it never reaches the log or a plugin. It alone
//!   turns errors into answers, in one `match`. `http::front` runs around
//!   the router on every request (browser origin guard, rights, request
//!   counters); `http::serve` is the listener that serves it: connection
//!   limits, body budget and TLS.
//! - [`broker`]: the registry of topics of one data directory (its lock,
//!   create and delete serialised per name), plugin loading, hot reload of
//!   the config all or nothing (`broker/reload.rs`), and the monitor and
//!   interval-fsync loops over every topic. On the JetStream engine the
//!   registry is a cache of the cluster's topics (`broker/jetstream.rs`).
//! - [`topic`]: one topic behind the [`topic::Topic`] facade, over one of
//!   two storage engines (`engine.rs`): the embedded log, or a NATS
//!   JetStream stream (`jetstream/`, see `docs/engines.md`). Group commit
//!   and validation (`writer.rs`), scanners and their files (`scanners.rs`),
//!   rolling and deletion (`retention.rs`), `TopicError` (`error.rs`). It
//!   holds the one rule for blocking work ([`topic`]'s docs): file reads,
//!   fsyncs, wasm calls and deletions never run on an async worker; what is
//!   in memory (the log's tail cache, a reader's chunk) is served there.
//! - [`config`]: the one home for settings: defaults as named constants, the
//!   TOML file, netlog's flags, and the one resolver of topic settings used
//!   by flags, TOML, `settings.json` and the HTTP body alike.
//! - [`log`]: the segmented log: segments, index, readers, waiting
//!   scanners, recovery after a crash and the integrity check.
//! - [`plugin`]: the WebAssembly plugin host: loads, sandboxes and calls the
//!   components that validate, compress and retain a topic's messages.
//! - [`message`]: the message format (compver, CRC-32, length, payload),
//!   message sets and the codecs that compress them.
//! - [`record`]: the v1 record inside a `0x10` message: timestamp, key,
//!   headers, idempotency section and value.
//! - `durable`: atomic, fsynced file replacement and directory fsync, the
//!   one way a change a restart depends on reaches the disk.
//! - `fault`: the fault seam of the write path, for tests (compiled to
//!   nothing without the `fault-injection` feature).
//! - [`duration`]: netlog's grammar for durations, sizes and offsets.
//! - `bounded`: reading a file an operator names, within a bound.
//! - `encode`: hex and base64, one copy each.
//! - `lock`: the one way a std lock is taken, poisoned or not.
//! - `rate_limit`: one line per kind per interval for failures that repeat
//!   per request (a full disk, a refused write), with a count of the rest.
//! - [`token`]: `netlog token new` and `netlog token hash`, for `[[auth.tokens]]`.
//! - [`histogram`]: the lock-free latency histogram behind the publish and
//!   plugin-call metrics.
//! - [`idle_spin`]: the runtime the binary serves on, whose workers watch
//!   briefly for new work before they sleep (`[server] idle_spin`).
//!
//! **Adding a per-topic feature:** its state and logic go in `topic/` (a new
//! file if it is a new concept), reached through a method of
//! [`topic::Topic`]; blocking work goes through `topic::blocking`; its
//! settings are a field of [`config::Settings`] resolved in
//! `config/settings.rs`, so flags, TOML, `settings.json` and the HTTP body
//! all accept it; its errors are a `TopicError` variant, mapped to an answer
//! in `http/mod.rs`. The broker changes only if the feature needs a loop over
//! all topics.

pub(crate) mod bounded;
pub mod broker;
pub mod config;
pub(crate) mod durable;
pub mod duration;
pub(crate) mod encode;
pub(crate) mod fault;
pub(crate) mod group;
pub mod histogram;
pub(crate) mod http;
pub mod idle_spin;
pub(crate) mod lock;
pub mod log;
pub mod message;
pub mod plugin;
pub(crate) mod rate_limit;
pub mod record;
pub mod token;
pub mod topic;

/// Every HTTP route: pattern, methods and listener (the table the routers
/// are built from), for tools and tests that compare it with the docs.
pub use http::routes::{Listener, table as route_table};

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
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] http::tls::TlsError),
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (waking long polls and ending
/// streams), writes what is queued, saves scanner positions and fsyncs.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_reloads(listener, config, shutdown, futures_util::stream::pending()).await
}

/// [`run`], also reloading the config file (see [`Broker::reload`]) each
/// time `reloads` yields: the binary feeds it `SIGHUP`.
pub async fn run_with_reloads(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: impl futures_util::Stream<Item = ()> + Send + 'static,
) -> Result<(), RunError> {
    // Before the topics open: each pins a descriptor.
    raise_fd_limit();
    let monitor_interval = config.monitor_interval;
    let mut server = config.server.clone();
    // A body as large as max_body must always fit in the budget.
    server.body_budget = server.body_budget.max(config.max_body);
    crate::topic::set_scanner_idle_ttl(config.scanner_idle_ttl);
    crate::log::set_tail_cache_limits(
        usize::try_from(server.tail_cache).unwrap_or(usize::MAX),
        usize::try_from(server.tail_cache_total).unwrap_or(usize::MAX),
    );
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(http::tls::Tls::load(cert, key)?)),
        _ => None,
    };
    let broker = crate::idle_spin::spawn_blocking(move || Broker::open(config))
        .await
        .expect("broker open task")?;
    let broker = Arc::new(broker);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = http::AppState::new(
        broker.clone(),
        stop_rx.clone(),
        tls.clone(),
        http::auth::Gate::new(&broker.config().auth),
    );
    let admin = match broker.config().admin_listen_addr() {
        Some(addr) => Some(
            http::admin::spawn_admin(&addr, state.clone(), server.clone())
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
            stop_rx.clone(),
            Broker::sync_topics,
        ))),
        _ => None,
    };
    let reloader = tokio::spawn(reload_on(state.clone(), reloads, stop_rx.clone()));
    // Lease expiry and dead letters need no request: one pass every tick.
    let grouper = {
        let (broker, mut stop) = (broker.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let resolve = broker.resolver();
            loop {
                if *stop.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(group::TICK) => broker.groups().tick(&resolve).await,
                }
            }
        })
    };
    // JetStream groups: dead letters of messages past max_deliveries.
    let dead_letters = broker.jetstream_client().map(|client| {
        let resolve: Arc<group::Resolver> = Arc::new(broker.resolver());
        tokio::spawn(group::jetstream::follow_max_deliveries(
            client,
            resolve,
            stop_rx.clone(),
        ))
    });
    if let Ok(addr) = listener.local_addr() {
        http::auth::warn_if_exposed(addr, &broker.config().auth);
        log_startup(
            &broker,
            addr,
            broker.config().auth.enabled(),
            state.tls.is_some(),
        );
    }
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let app = http::app(state, &server.allowed_origins);
    let served = http::serve::serve(listener, app, server, tls, stop).await;
    let _ = monitor.await;
    let _ = reloader.await;
    let _ = grouper.await;
    if let Some(dead_letters) = dead_letters {
        let _ = dead_letters.await;
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Some(syncer) = syncer {
        let _ = syncer.await;
    }
    let closed = crate::idle_spin::spawn_blocking(move || broker.close())
        .await
        .expect("broker close task");
    served.map_err(RunError::Serve)?;
    closed?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Reloads the config each time `reloads` yields, until `stop` turns true.
/// A refused reload is logged (by the broker) and changes nothing.
async fn reload_on(
    state: http::AppState,
    reloads: impl futures_util::Stream<Item = ()> + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    let mut reloads = std::pin::pin!(reloads);
    loop {
        tokio::select! {
            next = reloads.next() => if next.is_none() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        tracing::info!("reload asked (SIGHUP)");
        let _ = http::reload_all(&state).await;
    }
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
        if let Err(e) = crate::idle_spin::spawn_blocking(move || work(&b)).await {
            tracing::error!(error = %e, "periodic broker task failed");
        }
    }
}

/// Raises the soft descriptor limit (see
/// [`log::raise_open_file_limit`]) and logs it, once per process: first
/// at start, before the topics open, and the server's connection cap asks
/// again. Returns the soft limit in force, if known (`None` also when it
/// could not be read).
pub(crate) fn raise_fd_limit() -> Option<u64> {
    static RAISED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *RAISED.get_or_init(|| match log::raise_open_file_limit() {
        Ok((before, now)) => {
            tracing::info!(soft_before = before, soft = now, "descriptor limit raised");
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
            None
        }
    })
}
