//! Topics: list, create (with settings JSON), info, delete.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState, Body, Params, Path, ok_message, rfc3339};
use crate::config::SettingsInput;

/// `GET /`: the topic names, sorted.
pub async fn topics_list(State(state): State<AppState>) -> Response {
    axum::Json(state.broker.topic_names()).into_response()
}

/// `POST /{topic}`: creates a topic; the optional body is its settings JSON.
pub async fn topic_create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let input: SettingsInput = if body.iter().all(u8::is_ascii_whitespace) {
        SettingsInput::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("settings JSON: {e}")))?
    };
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || broker.create_topic(&name, input))
        .await
        .map_err(|e| ApiError::Unknown(e.to_string()))??;
    Ok(ok_message(StatusCode::CREATED, "topic created"))
}

/// `GET /{topic}`: netlog's topic info, plus the topic's settings.
pub async fn topic_info(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let log = topic.log();
    let segments = log.segments();
    let seg_json: Vec<Value> = segments
        .iter()
        .map(|s| {
            json!({
                "first_offset": s.first_offset,
                "disk_size": s.disk_size,
                "data_size": s.data_size,
                "mod_time": rfc3339(s.mod_time),
            })
        })
        .collect();
    let scanners: BTreeMap<String, Value> = topic
        .scanners()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                json!({"id": s.id.to_string(), "next": s.next(), "from": s.from, "persistent": s.persistent}),
            )
        })
        .collect();
    let settings = topic.settings();
    let stats = |s: crate::plugin::CallStats| {
        json!({"calls": s.calls, "errors": s.errors, "traps": s.traps, "timeouts": s.timeouts,
               "rejected": s.rejected, "instances": s.instances,
               "mean_call_us": s.mean_call_time().map(|d| d.as_micros() as u64)})
    };
    let hooks = topic.hooks();
    let mut hook_json = serde_json::Map::new();
    if let Some(v) = &hooks.validator {
        hook_json.insert(
            "validation".into(),
            json!({"plugin": v.plugin().name(), "on_error": hooks.on_error, "stats": stats(v.stats())}),
        );
    }
    if let Some(r) = &hooks.retention {
        hook_json.insert(
            "retention".into(),
            json!({"plugin": r.plugin().name(), "stats": stats(r.stats())}),
        );
    }
    if let Some(codec) = settings.codecs.get(&settings.compression_type) {
        hook_json.insert(
            "compression".into(),
            json!({"plugin": codec, "value": settings.compression_type}),
        );
        // Sets whose codec output failed the write check (issue 10).
        hook_json.insert(
            "compression_refused_sets".into(),
            json!(log.codecs().refused_sets()),
        );
    }
    Ok(axum::Json(json!({
        "name": topic.name(),
        "path": topic.dir(),
        "disk_size": segments.iter().map(|s| s.disk_size).sum::<u64>(),
        "first_offset": log.oldest_offset(),
        "latest_offset": log.latest_offset(),
        "segments": seg_json,
        "mod_time": segments.last().map(|s| rfc3339(s.mod_time)),
        "scanners": scanners,
        "settings": settings,
        "compression": settings.compression_name(),
        "hooks": hook_json,
    }))
    .into_response())
}

/// `DELETE /{topic}?force=true`: deletes a topic; 409 with scanners attached
/// unless forced.
pub async fn topic_delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let force = params.get("force").is_some_and(truthy);
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || broker.delete_topic(&name, force))
        .await
        .map_err(|e| ApiError::Unknown(e.to_string()))??;
    Ok(ok_message(StatusCode::OK, "topic deleted"))
}

/// netlog's booleans in query strings: 1, true, yes.
pub(super) fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")
}
