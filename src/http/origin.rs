//! The browser guard (run by `front.rs`): requests that carry an `Origin` header come from a web
//! page, and only pages from `[server] allowed_origins` may use the API.
//!
//! A browser sends a "simple" cross-site request (a `text/plain` POST, say)
//! without asking first, so refusing to answer is not enough: the request
//! must not run. The guard therefore sits in front of the router and answers
//! 403 in netlog's error shape before any handler is reached, whatever the
//! route. Requests with no `Origin` (curl, services, every client that is
//! not a browser) pass untouched.
//!
//! For an allowed origin the guard speaks CORS: it answers preflights
//! (`OPTIONS` with `Access-Control-Request-Method`) itself with 204, and
//! adds `Access-Control-Allow-Origin` (the origin itself, with
//! `Vary: Origin`) and the headers the API returns to every answer.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Methods the API has.
const ALLOW_METHODS: &str = "GET, POST, DELETE, PATCH";
/// Request headers the API reads.
const ALLOW_HEADERS: &str = "authorization, content-type, last-event-id";
/// Answer headers a page may read.
const EXPOSE_HEADERS: &str = "x-offset, x-crc32, x-count";
/// How long, in seconds, a browser may keep a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// Which origins may call the API. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Origins {
    any: bool,
    allowed: Arc<HashSet<String>>,
}

/// What the guard makes of a request that carries an `Origin`.
pub(crate) enum OriginCheck {
    /// Go on; the answer gets the CORS headers ([`decorate`]).
    Pass,
    /// Answer this instead: a 403, or the 204 to a preflight.
    Answer(Response),
}

impl Origins {
    /// The origins `allowed` (as checked by
    /// [`crate::config::normalize_origin`]; `*` allows any).
    pub(crate) fn new(allowed: &[String]) -> Origins {
        Origins {
            any: allowed.iter().any(|o| o == "*"),
            allowed: Arc::new(allowed.iter().cloned().collect()),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.any || self.allowed.contains(&origin.to_ascii_lowercase())
    }

    /// Judges a request from a page at `origin`.
    pub(crate) fn check(
        &self,
        origin: &HeaderValue,
        method: &Method,
        headers: &HeaderMap,
    ) -> OriginCheck {
        let text = origin.to_str().unwrap_or_default();
        if !self.allows(text) {
            tracing::debug!(origin = text, "request from a web origin not allowed");
            let mut answer = ApiError::Forbidden {
                reason: format!("origin {text:?} is not in [server] allowed_origins"),
            }
            .into_response();
            vary(answer.headers_mut());
            return OriginCheck::Answer(answer);
        }
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return OriginCheck::Pass;
        }
        let mut answer = Response::new(axum::body::Body::empty());
        *answer.status_mut() = StatusCode::NO_CONTENT;
        let h = answer.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        vary(h);
        OriginCheck::Answer(answer)
    }
}

/// Adds the CORS headers to the answer to an allowed `origin`; an answer to
/// a request without one is left as it is.
pub(crate) fn decorate(mut answer: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let h = answer.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        vary(h);
    }
    answer
}

/// Answers depend on the `Origin`: caches must keep them apart.
fn vary(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}
