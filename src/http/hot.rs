//! The hot routes, served without the router: `POST /{topic}/payload`,
//! `GET /{topic}/payload/{offset}` and `GET /{topic}/scan`.
//!
//! By the time a request reaches the router, the front (`front.rs`) has
//! already named its route from the table and checked the caller's rights.
//! Routing it again through axum matched the path a second time, wrote its
//! parameters into a map in the request's extensions, and wrapped the
//! handler in three more futures: on a single publish that was about a
//! sixth of the broker's own instructions (callgrind, `docs/BENCHMARKS.md`).
//! For these three routes the front instead calls the same handlers itself,
//! with the extractors' values taken from the path it has already cut.
//!
//! The answers are the router's, byte for byte: anything the direct call
//! could read differently from the router (a path segment with a `%`, which
//! the router would percent-decode; an empty segment; `HEAD`, whose body the
//! router drops) goes through the router as before, and `Content-Length` is
//! set the way the router sets it.

use std::future::Future;
use std::pin::Pin;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Body as _;

use super::routes::Route;
use super::serve::LongPoll;
use super::{AppState, Body, Params, Path, messages, scanners};

/// A hot route's answer in the making.
pub(crate) type HotFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Whether the front serves `req` on `route` itself (see the module docs);
/// if not, the router does.
pub(crate) fn takes(route: Route, req: &Request) -> bool {
    let path = req.uri().path();
    match route {
        Route::PayloadWrite => req.method() == Method::POST && plain_segment(path, 0).is_some(),
        Route::PayloadRead => {
            req.method() == Method::GET
                && plain_segment(path, 0).is_some()
                && plain_segment(path, 2).is_some()
        }
        Route::Scan => req.method() == Method::GET && plain_segment(path, 0).is_some(),
        _ => false,
    }
}

/// The answer to `req` on `route`, which [`takes`] said yes to.
pub(crate) fn serve(route: Route, req: Request, state: &AppState) -> HotFuture {
    let path = req.uri().path();
    let name = plain_segment(path, 0).unwrap_or_default().to_owned();
    let state = state.clone();
    match route {
        Route::PayloadWrite => {
            // Only the headers are kept: the rest of the head, held across
            // the awaits, would take the future past the allocators' fast
            // path (1 KiB).
            let (parts, body) = req.into_parts();
            let headers = parts.headers;
            Box::pin(async move {
                let answer = match Body::read(&headers, body, &state).await {
                    Ok(body) => messages::payload_write(State(state), Path(name), headers, body)
                        .await
                        .into_response(),
                    Err(e) => e.into_response(),
                };
                finish(answer)
            })
        }
        Route::PayloadRead => {
            let offset = plain_segment(path, 2).unwrap_or_default().to_owned();
            Box::pin(async move {
                finish(
                    messages::payload_read(State(state), Path((name, offset)))
                        .await
                        .into_response(),
                )
            })
        }
        _ => {
            let (mut parts, _) = req.into_parts();
            Box::pin(async move {
                let params = match Params::of_uri(&parts.uri) {
                    Ok(params) => params,
                    Err(e) => return finish(e.into_response()),
                };
                let long_poll = parts.extensions.remove::<LongPoll>().map(Extension);
                let headers = std::mem::take(&mut parts.headers);
                finish(
                    scanners::scan(State(state), Path(name), long_poll, params, headers)
                        .await
                        .into_response(),
                )
            })
        }
    }
}

/// Segment `i` of `path` (after its leading `/`), if it reads the same
/// whether percent-decoded or not and is not empty. A plain scan of the
/// bytes: `str::split` costs more on paths this short.
fn plain_segment(path: &str, i: usize) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let bytes = rest.as_bytes();
    let (mut start, mut index) = (0, 0);
    for at in 0..=bytes.len() {
        if at < bytes.len() && bytes[at] != b'/' {
            continue;
        }
        if index == i {
            let segment = &bytes[start..at];
            let plain = !segment.is_empty() && !segment.contains(&b'%');
            return plain.then(|| &rest[start..at]);
        }
        index += 1;
        start = at + 1;
    }
    None
}

/// `Content-Length` from the body's exact size, as the router adds it.
fn finish(mut answer: Response) -> Response {
    if !answer.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(size) = answer.body().size_hint().exact()
    {
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length_value(size));
    }
    answer
}

/// A `Content-Length` value; the lengths of small answers (a publish's
/// `{"offset":N}`, a short message) are made once and shared, so most
/// answers allocate nothing for it.
fn length_value(size: u64) -> HeaderValue {
    const SHARED: usize = 256;
    static SMALL: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
        (0..SHARED)
            .map(|n| HeaderValue::from_static(String::leak(n.to_string())))
            .collect()
    });
    match usize::try_from(size) {
        Ok(n) if n < SHARED => SMALL[n].clone(),
        _ => HeaderValue::from(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only plain, non-empty segments are taken; the rest go to the router.
    #[test]
    fn takes_only_plain_segments() {
        assert_eq!(plain_segment("/t/payload", 0), Some("t"));
        assert_eq!(plain_segment("/t/payload/12", 2), Some("12"));
        assert_eq!(plain_segment("//payload", 0), None);
        assert_eq!(plain_segment("/a%20b/payload", 0), None);
        assert_eq!(plain_segment("/t/payload/", 2), None);
        assert_eq!(plain_segment("t/payload", 0), None);
    }

    /// Shared and made lengths read the same.
    #[test]
    fn length_values() {
        for n in [0u64, 9, 255, 256, 1 << 40] {
            assert_eq!(length_value(n), HeaderValue::from(n));
        }
    }
}
