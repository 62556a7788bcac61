//! The broker's own routes for probes: liveness, readiness, and a stand-in
//! for the metrics exposition until the metrics registry is wired.
//!
//! `/_health` answers 200 while the process serves. `/_ready` answers 200
//! once the topics are open (the router only serves after the broker opened
//! its data directory) and 503 from the moment shutdown begins, so a load
//! balancer stops sending traffic before connections close.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, ok_message};

/// `GET /_health`: `{"ok":true,"message":"alive"}`.
pub async fn health() -> Response {
    ok_message(StatusCode::OK, "alive")
}

/// `GET /_ready`: 200 while serving, 503 once shutting down.
pub async fn ready(State(state): State<AppState>) -> Response {
    readiness(*state.shutdown.borrow())
}

fn readiness(shutting_down: bool) -> Response {
    if shutting_down {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let body =
            json!({"ok": false, "status": status.as_u16(), "error": "netlog: shutting down"});
        return (status, axum::Json(body)).into_response();
    }
    ok_message(StatusCode::OK, "ready")
}

/// `GET /_metrics`: a placeholder in the exposition format's content type,
/// replaced by the metrics registry.
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        "# netlog: metrics are not wired yet\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readiness is 200 while serving and 503 once shutdown has begun.
    #[test]
    fn readiness_follows_shutdown() {
        assert_eq!(readiness(false).status(), StatusCode::OK);
        assert_eq!(readiness(true).status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
