//! The web console's files: a fixed table compiled into the binary, served
//! at `/_console/` on the main listener (never on `admin_listen`).
//!
//! The files live in `console/` at the crate's root (plain ES modules, one
//! stylesheet, the vendored uPlot in `console/vendor/`) and are read by
//! `include_bytes!` at build time: a request names an entry of [`FILES`]
//! or gets 404, so no path ever reaches the file system and `..`, encoded
//! slashes or absolute paths have nothing to traverse. They need no token
//! (they hold no data; every data call of the console carries the
//! caller's token), and `[console] enabled = false` turns them off.
//!
//! Every file is answered with a strict `Content-Security-Policy`
//! ([`CSP`]: scripts, styles, images and fetches from this origin only,
//! no framing, Trusted Types required so no string can become markup),
//! `Referrer-Policy: no-referrer`, `Cache-Control: no-cache` and a strong
//! `ETag` (a digest of the bytes, computed once), which turns a repeated
//! request with `If-None-Match` into a 304 without a body. `nosniff` is
//! added to every answer of the broker by `front.rs`.
//!
//! Size budget: every file is at most [`MAX_FILE_BYTES`], checked when the
//! binary is built (and by a test on the `console/` folder).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::routes::Route;
use super::{ApiError, AppState, Path};

/// The `Content-Security-Policy` of every console file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'; require-trusted-types-for 'script'";

/// Largest console file, uncompressed: 150 KiB.
pub const MAX_FILE_BYTES: usize = 150 << 10;

/// Every console file: its name under `/_console/`, its type and bytes.
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../console/icon.svg"),
    ),
    js("app.js", include_bytes!("../../console/app.js")),
    js("api.js", include_bytes!("../../console/api.js")),
    js("dom.js", include_bytes!("../../console/dom.js")),
    js("chart.js", include_bytes!("../../console/chart.js")),
    js("format.js", include_bytes!("../../console/format.js")),
    js("samples.js", include_bytes!("../../console/samples.js")),
    js("topics.js", include_bytes!("../../console/topics.js")),
    js("topic.js", include_bytes!("../../console/topic.js")),
    js("messages.js", include_bytes!("../../console/messages.js")),
    js("tail.js", include_bytes!("../../console/tail.js")),
    js("publish.js", include_bytes!("../../console/publish.js")),
    js("scanners.js", include_bytes!("../../console/scanners.js")),
    js("groups.js", include_bytes!("../../console/groups.js")),
    js("plugins.js", include_bytes!("../../console/plugins.js")),
    js("segments.js", include_bytes!("../../console/segments.js")),
    js("broker.js", include_bytes!("../../console/broker.js")),
    js(
        "uplot.min.js",
        include_bytes!("../../console/vendor/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/vendor/uplot.min.css"),
    ),
    (
        "uplot-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../console/vendor/uplot-LICENSE"),
    ),
];

// The size budget, checked when the binary is built.
const _: () = {
    let mut i = 0;
    while i < FILES.len() {
        assert!(
            FILES[i].2.len() <= MAX_FILE_BYTES,
            "a console file is over 150 KiB"
        );
        i += 1;
    }
};

/// A JavaScript file's entry.
const fn js(
    name: &'static str,
    bytes: &'static [u8],
) -> (&'static str, &'static str, &'static [u8]) {
    (name, "text/javascript; charset=utf-8", bytes)
}

/// The `ETag` of each entry of [`FILES`], in the same order.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, bytes)| {
            let digest = Sha256::digest(bytes);
            let tag = format!("\"{}\"", crate::encode::hex(&digest[..12]));
            HeaderValue::from_str(&tag).expect("hex is a header value")
        })
        .collect()
});

/// `GET /_console`: to the console's page.
pub async fn console_redirect(State(state): State<AppState>) -> Result<Response, ApiError> {
    enabled(&state)?;
    let to = HeaderValue::from_static(Route::ConsoleIndex.pattern());
    Ok((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response())
}

/// `GET /_console/`: the page.
pub async fn console_index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    enabled(&state)?;
    serve("index.html", &headers)
}

/// `GET /_console/{file}`: one of [`FILES`], or 404.
pub async fn console_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    enabled(&state)?;
    serve(&file, &headers)
}

/// 404 unless `[console] enabled`.
fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.broker.config().console.enabled {
        Ok(())
    } else {
        Err(ApiError::NoRoute)
    }
}

/// The answer for file `name`: 200 with its bytes, 304 when `If-None-Match`
/// names its tag, 404 when there is no such file.
fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let i = FILES
        .iter()
        .position(|(n, _, _)| *n == name)
        .ok_or(ApiError::NoRoute)?;
    let (_, kind, bytes) = FILES[i];
    let etag = ETAGS[i].clone();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::ETAG, etag),
    ];
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The uPlot release vendored in `console/vendor/` (MIT).
    const UPLOT_VERSION: &str = "1.6.32";

    /// Every file keeps to the size budget, has a tag of its own, and the
    /// vendored uPlot's version is the one recorded beside it.
    #[test]
    fn files_keep_their_budget_and_the_vendor_version() {
        for (name, _, bytes) in FILES {
            assert!(
                bytes.len() <= MAX_FILE_BYTES,
                "{name}: {} bytes",
                bytes.len()
            );
            assert!(!bytes.is_empty(), "{name} is empty");
        }
        let mut tags: Vec<_> = ETAGS.iter().collect();
        tags.sort_by_key(|t| t.as_bytes());
        tags.dedup();
        assert_eq!(tags.len(), FILES.len());
        let readme = include_str!("../../console/vendor/README.md");
        assert!(
            readme.contains(UPLOT_VERSION),
            "vendor/README.md names {UPLOT_VERSION}"
        );
    }
}
