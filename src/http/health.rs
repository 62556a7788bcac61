//! Health and readiness, and the optional admin listener.
//!
//! `GET /_health` answers 200 while the process serves. `GET /_ready`
//! answers 200 once every topic is open (the server starts accepting only
//! after the broker has opened them all, so that is from the first request
//! on) and 503 from the moment shutdown begins, so a load balancer stops
//! sending work while in-flight requests finish.
//!
//! `[server] admin_listen` starts a second listener with the same handlers
//! at the conventional paths, `/metrics`, `/health`, `/ready` and
//! `/reload`, for scrapers and probes with fixed paths. The same rights
//! apply as on the main listener (`/metrics` and `/reload` need `admin`
//! when authentication is on, unless `[auth] public_metrics`), counted in
//! the same request metrics, under the main listener's timeouts and body
//! limits with at most [`ADMIN_MAX_CONNECTIONS`] connections. It speaks
//! plain HTTP and has no origin guard: bind it to a private address.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;

use super::{ApiError, AppState, metrics};

/// `GET /_health`.
pub async fn health_get() -> Response {
    super::ok_message(StatusCode::OK, "alive")
}

/// `GET /_ready`.
pub async fn ready_get(State(state): State<AppState>) -> Result<Response, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    Ok(super::ok_message(StatusCode::OK, "ready"))
}

/// The admin listener's routes (see the module docs).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics_get))
        .route("/health", get(health_get))
        .route("/ready", get(ready_get))
        .route("/reload", axum::routing::post(super::reload::reload_post))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Most connections the admin listener holds at once: scrapers and probes
/// need a handful.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Binds `addr` and serves [`admin_router`] on it, under the main
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
        admin_router(state),
        super::front::Listener::Admin,
        None,
        gate,
        metrics,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;

    use super::*;
    use crate::broker::Broker;
    use crate::config::Config;

    fn state(dir: &std::path::Path, shutting_down: bool) -> AppState {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        AppState::new(
            Arc::new(Broker::open(config).expect("open")),
            tokio::sync::watch::channel(shutting_down).1,
            None,
            crate::http::auth::Gate::new(&Default::default()),
        )
    }

    /// `/_ready` answers 200 while serving and 503 in netlog's error shape
    /// once shutdown has begun.
    #[tokio::test]
    async fn ready_turns_503_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let ok = ready_get(State(state(dir.path(), false))).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        drop(ok);
        let dir = tempfile::tempdir().unwrap();
        let no = ready_get(State(state(dir.path(), true)))
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(no.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(no.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ok": false, "status": 503, "error": "netlog: not ready", "reason": "shutting down"})
        );
    }
}
