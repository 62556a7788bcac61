//! Reload: `POST /_reload` reads the config file again and applies it all
//! or nothing (see the broker's `reload` module).
//!
//! 200 `{"ok":true,"message":"reloaded","changed":[...],"needs_restart":[...]}`;
//! a refused reload answers 400 in netlog's error shape with `"errors"`
//! listing every reason, and nothing of it is applied.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::broker::{BrokerError, ReloadReport};

/// `POST /_reload`: reloads the config file.
pub async fn reload_post(State(state): State<AppState>) -> Result<Response, ApiError> {
    let report = reload_all(&state).await?;
    Ok(Json(json!({
        "ok": true,
        "message": "reloaded",
        "changed": report.changed,
        "needs_restart": report.needs_restart,
    }))
    .into_response())
}

/// Every reload, from `POST /_reload` or `SIGHUP`: reads the config file
/// again and applies it, all or nothing. Off the async workers.
pub(crate) async fn reload_all(state: &AppState) -> Result<ReloadReport, BrokerError> {
    let broker = state.broker.clone();
    let tls = state.tls.clone();
    let gate = state.auth.clone();
    crate::topic::blocking(move || {
        let new = broker.source_config()?;
        // Everything that can fail is read first: a bad certificate refuses
        // the whole reload, like a bad plugin.
        let certificates = match &tls {
            Some(tls) => Some(tls.read().map_err(|e| BrokerError::ReloadRefused {
                errors: vec![e.to_string()],
            })?),
            None => None,
        };
        // Tokens were validated with the file; swapped once the rest applied.
        let auth = new.auth.clone();
        let mut report = broker.reload(new)?;
        if gate.swap(&auth) {
            report.changed.push("tokens and rights".into());
        }
        if let (Some(tls), Some(c)) = (&tls, certificates) {
            tls.install(c);
            report.changed.push("tls certificates: re-read".into());
        }
        Ok(report)
    })
    .await
}
