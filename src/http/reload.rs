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
    crate::topic::blocking(move || {
        let new = broker.source_config()?;
        // MERGE(auth): build the new token set from `new` here, before the
        // broker applies anything; on failure return
        // `BrokerError::ReloadRefused { errors }` naming the token or rule.
        // MERGE(serve-limits): re-read the TLS certificate and key named by
        // `new` here the same way (a bad PEM refuses the whole reload).
        let report = broker.reload(new)?;
        // MERGE(auth): swap the token set built above (http/auth.rs's swap)
        // and push "tokens" to `report.changed` if it differs.
        // MERGE(serve-limits): swap in the certificates read above and push
        // "tls certificates" to `report.changed`.
        Ok(report)
    })
    .await
}
