//! The admin listener.
//!
//! `[server] admin_listen` starts a second listener with the same handlers
//! at the conventional paths, `/metrics`, `/health`, `/ready` and
//! `/reload`, for scrapers and probes with fixed paths. The same rights
//! apply as on the main listener (`/metrics` and `/reload` need `admin`
//! when authentication is on, unless `[auth] public_metrics`), counted in
//! the same request metrics, under the main listener's timeouts and body
//! limits with at most [`ADMIN_MAX_CONNECTIONS`] connections. It speaks
//! plain HTTP and has no origin guard: bind it to a private address.

use tokio::net::TcpListener;

use super::AppState;
use super::routes::Listener;

/// Most connections the admin listener holds at once: scrapers and probes
/// need a handful.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Binds `addr` and serves the admin listener's routes on it, under the main
/// listener's limits `opts` (with at most [`ADMIN_MAX_CONNECTIONS`]
/// connections and without TLS), until the server's shutdown signal; the
/// error is the bind's.
pub async fn spawn_admin(
    addr: &str,
    state: AppState,
    mut opts: crate::config::ServerOptions,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener (/metrics, /health, /ready, /reload)");
    }
    opts.max_connections = opts.max_connections.min(ADMIN_MAX_CONNECTIONS);
    let mut stop = state.shutdown.clone();
    let (gate, metrics) = (state.auth.clone(), state.metrics.clone());
    let app = super::front::Front::new(
        super::router(state, Listener::Admin),
        Listener::Admin,
        None,
        gate,
        metrics,
        None,
    );
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = super::serve::serve(listener, app, opts, None, stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }))
}
