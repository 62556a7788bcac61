//! Health and readiness.
//!
//! `GET /_health` answers 200 while the process serves. `GET /_ready`
//! answers 200 once every topic is open (the server starts accepting only
//! after the broker has opened them all, so that is from the first request
//! on) and 503 from the moment shutdown begins, so a load balancer stops
//! sending work while in-flight requests finish. On the JetStream engine it
//! also asks the cluster (one account request, bounded by the engine's
//! `request_timeout`) and answers 503 while the connection is down or
//! JetStream does not answer, so a load balancer skips a front end that
//! could only answer 503s.
//!
//! The admin listener (`admin.rs`) serves both at `/health` and `/ready`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{ApiError, AppState};

/// `GET /_health`.
pub async fn health_get() -> Response {
    super::ok_message(StatusCode::OK, "alive")
}

/// `GET /_ready`.
pub async fn ready_get(State(state): State<AppState>) -> Result<Response, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    if !state.broker.engine_ready().await {
        return Err(ApiError::NotReady(
            "the storage engine is not connected or does not answer".into(),
        ));
    }
    Ok(super::ok_message(StatusCode::OK, "ready"))
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
