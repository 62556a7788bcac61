//! The HTTP API: netlog's routes, codes and JSON, and this broker's extensions
//! (batch publish and consume, streaming).
//!
//! One file per resource: `topics.rs` (list, create, info, delete),
//! `messages.rs` (payload write and read, batch publish, sync), `scanners.rs`
//! (scanner create and delete, scan; batch scans hold room in the answer
//! budget of `answers.rs`), `stream.rs` (Server-Sent Events), `groups.rs`
//! (consumer groups), `check.rs` (`GET /{topic}/check`), `health.rs` (health
//! and readiness), `reload.rs` (`POST /_reload`); for the web console,
//! `console.rs` (its files, compiled in), `whoami.rs`, `stats.rs`
//! (`GET /_stats`) and `browse.rs` (`GET /{topic}/messages`, a read that
//! creates no scanner). `routes.rs` is the table of every route; `admin.rs`
//! starts the admin listener. `front.rs` runs before and after the router on
//! every request: the host check (`hosts.rs`), the origin guard
//! (`origin.rs`), rights (`auth.rs`) and request counters (`metrics.rs`); it
//! serves the hot routes itself (`hot.rs`). Handlers are named
//! `<resource>_<verb>`.
//!
//! Every failure is an [`ApiError`], and `error.rs` alone turns errors into
//! answers, in netlog's shape. The extractors here ([`Path`], [`Params`],
//! [`Body`]) reject with `ApiError`
//! too, so malformed input gets the same shape as everything else.

pub mod admin;
mod answers;
pub mod auth;
mod browse;
mod budget;
mod check;
mod console;
mod envelope;
mod error;
pub(crate) mod front;
mod groups;
pub mod health;
pub(crate) mod hosts;
mod hot;
mod messages;
pub mod metrics;
pub(crate) mod origin;
mod reload;
pub mod routes;
mod scanners;
pub mod serve;
mod stats;
mod stream;
pub mod tls;
mod topics;
mod whoami;

pub use error::ApiError;
pub(crate) use reload::reload_all;
pub use routes::Listener;
use routes::Route;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::topic::Topic;

/// What every handler can reach: one pointer, so the per-request clone
/// axum makes for each `State` extractor is one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<AppServices>);

/// What an [`AppState`] points to.
pub struct AppServices {
    /// The topics.
    pub broker: Arc<Broker>,
    /// Becomes `true` when the server shuts down; long waits end early.
    pub shutdown: watch::Receiver<bool>,
    /// The listener's certificates, when it speaks TLS (re-read on reload).
    pub tls: Option<Arc<tls::Tls>>,
    /// Tokens and rights in force; `swap` on reload.
    pub auth: auth::Gate,
    /// Request counters and open long polls and streams, for `/_metrics`.
    pub metrics: Arc<metrics::HttpMetrics>,
    /// Room for batch-scan answers in flight (`[server] answer_budget`).
    pub(crate) answers: Arc<answers::AnswerBudget>,
}

impl AppState {
    /// The state of a server of `broker`, with fresh request counters.
    pub fn new(
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
        tls: Option<Arc<tls::Tls>>,
        auth: auth::Gate,
    ) -> AppState {
        let server = &broker.config().server;
        let answers = answers::AnswerBudget::new(server.answer_budget, server.answer_budget_wait);
        AppState(Arc::new(AppServices {
            answers: Arc::new(answers),
            broker,
            shutdown,
            tls,
            auth,
            metrics: Default::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The main listener's service: [`router`] behind its [`front::Front`]
/// (origin guard, rights, request counters).
pub type App = front::Front<Router>;

/// The main listener's service for `state`, letting browsers from
/// `allowed_origins` in (see `origin.rs`), and the console's own pages from
/// the hosts the broker answers as (`hosts.rs`).
pub fn app(state: AppState, allowed_origins: &[String]) -> App {
    let (gate, metrics) = (state.auth.clone(), state.metrics.clone());
    let config = state.broker.config();
    let hosts = hosts::Hosts::new(&config.server, &config.console, state.tls.is_some());
    front::Front::new(
        router(state.clone(), Listener::Main),
        Listener::Main,
        Some(origin::Origins::new(allowed_origins)),
        gate,
        metrics,
        Some(state),
    )
    .with_hosts(hosts)
}

/// The router of `listener`: every route of the table (`routes.rs`) that
/// it serves, with its handlers. What every route shares (rights, counters,
/// the origin guard) is in `front.rs`.
pub(crate) fn router(state: AppState, listener: Listener) -> Router {
    let mut router = Router::new();
    for route in Route::ALL.into_iter().filter(|r| r.listener() == listener) {
        router = router.route(route.pattern(), handlers(route));
    }
    router
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The handlers of `route`, one per method of the table.
fn handlers(route: Route) -> MethodRouter<AppState> {
    match route {
        Route::TopicList => get(topics::topics_list),
        Route::Topic => get(topics::topic_info)
            .post(topics::topic_create)
            .delete(topics::topic_delete),
        Route::PayloadWrite => post(messages::payload_write),
        Route::PayloadRead => get(messages::payload_read),
        Route::Messages => get(browse::messages_browse).post(messages::messages_publish),
        Route::Sync => get(messages::topic_sync),
        Route::Scanner => post(scanners::scanner_create).delete(scanners::scanner_delete),
        Route::Scan => get(scanners::scan),
        Route::Stream => get(stream::stream),
        Route::Check => get(check::check),
        Route::GroupList => get(groups::groups_list),
        Route::Group => get(groups::group_info)
            .post(groups::group_create)
            .delete(groups::group_delete)
            .patch(groups::group_patch),
        Route::GroupPending => get(groups::group_pending),
        Route::GroupReceive => post(groups::group_receive),
        Route::GroupAck => post(groups::group_ack),
        Route::GroupNack => post(groups::group_nack),
        Route::GroupExtend => post(groups::group_extend),
        Route::GroupReject => post(groups::group_reject),
        Route::GroupSeek => post(groups::group_seek),
        Route::Metrics | Route::AdminMetrics => get(metrics::metrics_get),
        Route::Health | Route::AdminHealth => get(health::health_get),
        Route::Ready | Route::AdminReady => get(health::ready_get),
        Route::Reload | Route::AdminReload => post(reload::reload_post),
        Route::Console => get(console::console_redirect),
        Route::ConsoleIndex => get(console::console_index),
        Route::ConsoleFile => get(console::console_file),
        Route::Whoami => get(whoami::whoami_get),
        Route::Stats => get(stats::stats_get),
    }
}

/// The path parameters; a path that does not decode (a topic name that is
/// not UTF-8, say) is a 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The query string's pairs; a malformed one is a 400. A handful of pairs
/// at most, so a list searched from the end (the last of a repeated key
/// wins, as in a map filled in order) costs less than hashing each key.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Params::of_uri(&parts.uri)
    }
}

impl Params {
    /// The query string of `uri`, decoded as a form is (`+` is a space,
    /// `%XX` a byte, bytes that are not UTF-8 replaced), as axum's `Query`
    /// decodes it, which it replaced: going through serde cost a scan a
    /// seventh of its instructions (callgrind). Every string decodes, so
    /// this never fails; it keeps the extractor's signature.
    fn of_uri(uri: &axum::http::Uri) -> Result<Params, ApiError> {
        let query = uri.query().unwrap_or_default();
        Ok(Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request body, up to the configured limit (413 beyond).
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        Body::read(&parts.headers, body, state).await
    }
}

impl Body {
    /// The body of a request whose head is `headers`: 413 at once when its
    /// declared length is over `max_body`, and when its bytes pass it.
    pub(crate) async fn read(
        headers: &HeaderMap,
        body: axum::body::Body,
        state: &AppState,
    ) -> Result<Body, ApiError> {
        let limit = state.broker.config().max_body;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::TooLarge { limit });
        }
        read_body(body, limit).await.map(Body)
    }
}

/// The whole of `body`, at most `limit` bytes (413 beyond). A body that
/// came in one frame (most do) is handed on as it is, without a copy.
async fn read_body(mut body: axum::body::Body, limit: u64) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            return Err(ApiError::TooLarge { limit });
        }
        match (&mut first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let mut all = bytes::BytesMut::with_capacity(head.len() + data.len());
                all.extend_from_slice(head);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            (Some(_), Some(all)) => all.extend_from_slice(&data),
        }
        // A body of known length ends with its last byte: no poll (through
        // every layer of the body) just to hear that it has.
        if hyper::body::Body::is_end_stream(&body) {
            break;
        }
    }
    Ok(match (first, joined) {
        (_, Some(all)) => all.freeze(),
        (Some(one), None) => one,
        (None, None) => Bytes::new(),
    })
}

/// The offset `text` names (netlog's grammar), resolved against `topic`.
async fn resolve_offset(topic: &Topic, text: &str) -> Result<u64, ApiError> {
    let spec =
        crate::duration::parse_offset(text).map_err(|e| ApiError::InvalidOffset(e.to_string()))?;
    Ok(topic.resolve(spec).await?)
}

/// `{"ok":true,"message":...}` with a status.
fn ok_message(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "ok": true, "message": message })),
    )
        .into_response()
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, as netlog (Go) does.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings decode as axum's `Query` decoded them, tricky ones
    /// included.
    #[test]
    fn params_decode_as_axum_did() {
        for query in [
            "",
            "id=abc",
            "a=1&b=%20x+y&&c&=d&a=2",
            "wait=1s&id=%E2%82%AC&max=%zz&x=%",
            "k=%FF%FE&==&&&",
            "v=a%2Bb+c%26d",
        ] {
            let uri: axum::http::Uri = format!("/t/scan?{query}").parse().unwrap();
            let ours = Params::of_uri(&uri).unwrap().0;
            let axum = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
                .unwrap()
                .0;
            assert_eq!(ours, axum, "{query}");
        }
    }

    /// Times print as Go's RFC 3339 with nanoseconds in UTC.
    #[test]
    fn formats_rfc3339_like_go() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_556_797, 44_244_919);
        assert_eq!(rfc3339(t), "2026-11-24T21:46:37.044244919Z");
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }
}
