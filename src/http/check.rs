//! Administration: the integrity check.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Params, Path};

/// `GET /{topic}/check?from=X`: `topic healthy`, or netlog's list of problems.
pub async fn check(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let from = super::resolve_offset(&topic, params.get("from").unwrap_or("")).await?;
    let problems = topic.check(from).await?;
    if problems.is_empty() {
        return Ok(super::ok_message(StatusCode::OK, "topic healthy"));
    }
    Ok(axum::Json(problems).into_response())
}
