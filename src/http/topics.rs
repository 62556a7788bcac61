//! Topics: list, create (with settings JSON), info, delete.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState, Body, Params, Path, ok_message, rfc3339};
use crate::topic::HookInfo;

/// Most scanners listed by topic info (`scanner_count` gives them all):
/// 1,000.
pub const INFO_MAX_SCANNERS: usize = 1000;

/// `GET /`: the topic names, sorted; with authentication on, only those
/// the caller may produce to or consume from (the front's `ListFilter`).
pub async fn topics_list(
    State(state): State<AppState>,
    filter: Option<axum::Extension<super::auth::ListFilter>>,
) -> Response {
    let mut names = state.broker.topic_names();
    if let Some(axum::Extension(filter)) = filter {
        names.retain(|name| filter.allows(name));
    }
    axum::Json(names).into_response()
}

/// `POST /{topic}`: creates a topic; the optional body is its settings JSON.
pub async fn topic_create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    state.broker.create(&name, body).await?;
    Ok(ok_message(StatusCode::CREATED, "topic created"))
}

/// `GET /{topic}`: netlog's topic info, plus the topic's settings and hooks.
/// At most [`INFO_MAX_SCANNERS`] scanners are listed; `scanner_count` counts
/// them all.
pub async fn topic_info(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let info = topic.info(INFO_MAX_SCANNERS).await?;
    let segments: Vec<Value> = info
        .segments
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
    let scanners: BTreeMap<String, Value> = info
        .scanners
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                json!({"id": s.id.to_string(), "next": s.next, "from": s.from, "persistent": s.persistent}),
            )
        })
        .collect();
    let stats = |h: &HookInfo| {
        let s = &h.stats;
        json!({"calls": s.calls, "errors": s.errors, "traps": s.traps, "timeouts": s.timeouts,
               "rejected": s.rejected, "instances": s.instances,
               "mean_call_us": s.mean_call_time().map(|d| d.as_micros() as u64)})
    };
    let hook = |h: &HookInfo| {
        let mut v = json!({"plugin": h.plugin, "stats": stats(h)});
        if let Some(on_error) = h.on_error {
            v["on_error"] = json!(on_error);
        }
        v
    };
    let settings = &info.settings;
    let mut hooks = serde_json::Map::new();
    if let Some(v) = &info.validation {
        hooks.insert("validation".into(), hook(v));
    }
    if let Some(r) = &info.retention {
        hooks.insert("retention".into(), hook(r));
    }
    if let Some(codec) = settings.codecs.get(&settings.compression_type) {
        hooks.insert(
            "compression".into(),
            json!({"plugin": codec, "value": settings.compression_type}),
        );
        // Sets whose codec output failed the write check (issue 10).
        hooks.insert(
            "compression_refused_sets".into(),
            json!(info.compression_refused_sets),
        );
    }
    let mut answer = json!({
        "name": info.name,
        "path": info.dir,
        "disk_size": info.segments.iter().map(|s| s.disk_size).sum::<u64>(),
        "first_offset": info.oldest_offset,
        "latest_offset": info.latest_offset,
        "segments": segments,
        "mod_time": info.segments.last().map(|s| rfc3339(s.mod_time)),
        "scanners": scanners,
        "scanner_count": info.scanner_count,
        "settings": settings,
        "compression": settings.compression_name(),
        "hooks": hooks,
    });
    // Only a topic with consumer groups gains the field: others answer as
    // they always have.
    let groups: BTreeMap<String, Value> = state
        .broker
        .groups()
        .names(&name)
        .into_iter()
        .filter_map(|g| state.broker.groups().get(&name, &g).ok())
        .map(|g| {
            let i = g.info();
            let summary = json!({"ack_floor": i.ack_floor, "next": i.next, "backlog": i.backlog,
                "pending": i.pending, "unacked": i.unacked});
            (i.name, summary)
        })
        .collect();
    if !groups.is_empty() {
        answer["groups"] = json!(groups);
    }
    Ok(axum::Json(answer).into_response())
}

/// `DELETE /{topic}?force=true`: deletes a topic; 409 with scanners attached
/// unless forced.
pub async fn topic_delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let force = params.get("force").is_some_and(truthy);
    state.broker.delete(&name, force).await?;
    Ok(ok_message(StatusCode::OK, "topic deleted"))
}

/// netlog's booleans in query strings: 1, true, yes.
pub(super) fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")
}
