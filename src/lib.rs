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
//! - [`message`]: the message format (compver, CRC-32, length, payload),
//!   message sets and the codecs that compress them.
//! - [`log`]: the segmented log: segments, memory-mapped index, readers,
//!   waiting scanners, recovery after a crash and the integrity check.
//! - [`plugin`]: the WebAssembly plugin host: loads, sandboxes and calls the
//!   components that validate, compress and retain a topic's messages.
//! - [`topic`]: a topic: log, settings, scanners and the group-commit writer.
//! - [`broker`]: all topics of a data directory and the segment monitor.
//! - [`http`]: the HTTP API (axum), one file per resource.
//! - [`config`]: defaults, the TOML file, netlog's flags, topic settings.
//! - [`duration`]: netlog's grammar for durations, sizes and offsets.
//! - [`token`]: `netlog token new` and `netlog token hash`, for `[[auth.tokens]]`.

pub mod broker;
pub mod config;
pub mod duration;
pub mod http;
pub mod log;
pub mod message;
pub mod plugin;
pub mod token;
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
        auth: http::auth::Gate::new(&broker.config().auth),
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
        tracing::info!(%addr, "netlog listening");
        http::auth::warn_if_exposed(addr, &broker.config().auth);
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
