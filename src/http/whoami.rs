//! `GET /_whoami`: who the caller is and what they may do, for the web
//! console's header and for deciding which forms it shows.
//!
//! The answer is `{"auth":bool,"token":name|null,"admin":bool,
//! "produce":[pattern...],"consume":[pattern...]}`: the token's name and
//! its topic patterns (its own and the anonymous ones), never a secret or a
//! hash. It needs no right, so the console can tell "no token given" from
//! "authentication is off"; a token the broker does not know is a 401, as
//! on every route, which is the console's cue to show its login.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};

/// `GET /_whoami`.
pub async fn whoami_get(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let me = state.auth.identity(&headers)?;
    Ok(axum::Json(json!({
        "auth": me.auth,
        "token": me.token,
        "admin": me.admin,
        "produce": me.produce,
        "consume": me.consume,
    }))
    .into_response())
}
