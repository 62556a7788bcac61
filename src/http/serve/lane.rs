//! The lane: a lean HTTP/1.1 path for the hot routes on plain connections,
//! in front of hyper.
//!
//! A single publish, scan or read does little work of its own: hyper's
//! machinery around it (its dispatcher's state machine, its body channel,
//! its parse into a head it then converts, its write buffer) was about a
//! quarter of the broker's instructions per publish (callgrind,
//! `docs/BENCHMARKS.md`). The lane serves the requests that need none of
//! that itself and leaves every other one to hyper.
//!
//! **What it takes.** A connection without TLS on the main listener starts
//! in the lane (the admin listener has no hot routes). The lane
//! reads into one buffer and parses each request head with `httparse` (the
//! parser hyper uses). It serves a request only when all of this holds:
//! - `GET` or `POST` with HTTP/1.1, and a path of the hot routes' shape
//!   (`/{topic}/payload` for `POST`; `/{topic}/scan` or
//!   `/{topic}/payload/{offset}` for `GET`);
//! - at most [`MOST_FIELDS`] header fields, none of `Transfer-Encoding`,
//!   `Expect`, `Upgrade`, `TE`, nor `Connection` other than `keep-alive`;
//!   one `Content-Length` of plain digits, none on a `GET`;
//! - the whole body already read with the head, and head and body at most
//!   [`MOST_BYTES`] together.
//!
//! The request then goes to the same per-connection service as hyper's
//! requests (front, rights, metrics, body budget, the watchdog's request
//! count), with its body already whole, and the answer is written with the
//! head hyper would write: the answer's own fields in order, then
//! `content-length` (or `transfer-encoding: chunked` for a body of unknown
//! size), `connection: close` while the server drains, and `date`. Answers
//! to pipelined requests go out in order, one at a time.
//!
//! **What it leaves.** At the first request it does not take (another
//! route or method, a head it cannot parse, a body still on its way, a
//! partial head at the end of the stream, more than [`MOST_BYTES`]), the
//! lane hands the connection with the bytes it has read to hyper, for good:
//! hyper answers that request and every later one exactly as before,
//! including its errors, the body rate rule and `Expect: 100-continue`. So a
//! request is answered by the lane only when its answer cannot differ from
//! hyper's; the integration tests run against both.
//!
//! **Bounds.** One read buffer per connection: reads stop once it holds
//! [`MOST_BYTES`], and a buffer at most doubles as it grows, so it never
//! passes 32 KiB. The answer is gathered in one buffer per connection:
//! the head and body frames up to [`COPY_AT_MOST`] (a larger frame is
//! written from where it is, not copied), so it stays under 32 KiB too.
//! Between requests a connection keeps at most [`KEPT_BETWEEN`] of each;
//! larger buffers are let go. Like hyper with `half_close`, the lane does
//! not read while a request is in flight (`serve/departure.rs` watches for
//! clients that leave).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::Source;
use super::io::Tracked;
use super::{Answering, ConnService, TrackedBody};

/// Most bytes of one request, head and body, that the lane serves; a
/// larger one goes to hyper.
pub(super) const MOST_BYTES: usize = 16 << 10;
/// Most header fields of a request the lane serves.
pub(super) const MOST_FIELDS: usize = 32;
/// Room made in the read buffer before each read.
pub(super) const READ_ROOM: usize = 4 << 10;
/// Most capacity a buffer keeps between requests.
pub(super) const KEPT_BETWEEN: usize = 8 << 10;
/// Largest body frame copied into the answer's buffer (one write for head
/// and body); larger ones are written from their own bytes.
pub(super) const COPY_AT_MOST: usize = 8 << 10;

/// How the lane stopped.
pub(super) enum Exit {
    /// The connection is done: the client closed it, an answer closes it,
    /// or it failed.
    Done(io::Result<()>),
    /// hyper takes the connection from here, with the bytes in
    /// [`Lane::into_parts`].
    ToHyper,
}

/// One connection in the lane (see the module docs).
pub(super) struct Lane<S> {
    io: Tracked<S>,
    buf: BytesMut,
    service: ConnService,
    /// The answer in the making; boxed once per connection.
    in_flight: Pin<Box<Option<Answering>>>,
    /// The answer being written.
    sending: Option<Sending>,
    /// Bytes of the answer to write, and how many are written.
    out: Vec<u8>,
    written: usize,
    /// The server is draining: the connection closes after its answer.
    draining: bool,
    /// The answer being written closes the connection.
    closing: bool,
}

struct Sending {
    /// The answer's body until its last frame is taken: dropping it ends
    /// the request's tracking, so a client that does not read its answers
    /// holds no request in flight and the idle timeout applies, as with
    /// hyper.
    body: Option<TrackedBody>,
    chunked: bool,
    /// A large frame, written after `out`.
    large: Option<Bytes>,
}

/// What the buffer holds.
// Returned by value once per request: a box would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(Request<Source>),
    /// Not a whole head yet.
    More,
    /// A request the lane leaves to hyper.
    NotOurs,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lane<S> {
    pub(super) fn new(io: Tracked<S>, service: ConnService) -> Self {
        Lane {
            io,
            buf: BytesMut::new(),
            service,
            in_flight: Box::pin(None),
            sending: None,
            out: Vec::new(),
            written: 0,
            draining: false,
            closing: false,
        }
    }

    /// The server drains: close when idle, or after the answer in flight.
    pub(super) fn graceful_shutdown(&mut self) {
        self.draining = true;
    }

    /// The stream, what was read from it but not served, the service, and
    /// whether the server drains.
    pub(super) fn into_parts(self) -> (Tracked<S>, Bytes, ConnService, bool) {
        (self.io, self.buf.freeze(), self.service, self.draining)
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        loop {
            if self.sending.is_some() {
                match self.poll_send(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Exit::Done(Err(e))),
                    Poll::Pending => return Poll::Pending,
                }
                if self.closing {
                    return Poll::Ready(Exit::Done(Ok(())));
                }
                continue;
            }
            if let Some(answering) = self.in_flight.as_mut().as_pin_mut() {
                let answer = match std::task::ready!(answering.poll(cx)) {
                    Ok(answer) => answer,
                    Err(never) => match never {},
                };
                self.in_flight.set(None);
                self.begin_answer(answer);
                continue;
            }
            if self.draining && self.buf.is_empty() {
                return Poll::Ready(Exit::Done(Ok(())));
            }
            match self.parse() {
                Parsed::Request(req) => {
                    let answering = self.service.answer(req);
                    self.in_flight.set(Some(answering));
                }
                Parsed::NotOurs => return Poll::Ready(Exit::ToHyper),
                Parsed::More => {
                    if self.buf.len() >= MOST_BYTES {
                        return Poll::Ready(Exit::ToHyper);
                    }
                    match std::task::ready!(self.poll_fill(cx)) {
                        Ok(0) if self.buf.is_empty() => return Poll::Ready(Exit::Done(Ok(()))),
                        // A partial head at the end: hyper says what it says.
                        Ok(0) => return Poll::Ready(Exit::ToHyper),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Exit::Done(Err(e))),
                    }
                }
            }
        }
    }

    /// Reads what the socket has into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() && self.buf.capacity() > KEPT_BETWEEN {
            self.buf = BytesMut::new();
        }
        self.buf.reserve(READ_ROOM);
        let spare = self.buf.spare_capacity_mut();
        let mut read = ReadBuf::uninit(spare);
        std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare
        // capacity (`ReadBuf::filled`).
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Poll::Ready(Ok(n))
    }

    /// The next request in the buffer, if the lane serves it (see the
    /// module docs).
    fn parse(&mut self) -> Parsed {
        if self.buf.is_empty() {
            return Parsed::More;
        }
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MOST_FIELDS];
        let mut head = httparse::Request::new(&mut []);
        let head_len = match head.parse_with_uninit_headers(&self.buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::More,
            Err(_) => return Parsed::NotOurs,
        };
        let method = match (head.method, head.version) {
            (Some("GET"), Some(1)) => Method::GET,
            (Some("POST"), Some(1)) => Method::POST,
            _ => return Parsed::NotOurs,
        };
        let Some(target) = head.path.filter(|t| hot_shape(&method, t.as_bytes())) else {
            return Parsed::NotOurs;
        };
        // Where the target and each field are in the buffer: the request is
        // built from the same bytes, without copies, once they are split off.
        let base = self.buf.as_ptr() as usize;
        let span = |part: &[u8]| (part.as_ptr() as usize - base, part.len());
        let target = span(target.as_bytes());
        let mut spans = [((0, 0), (0, 0)); MOST_FIELDS];
        let count = head.headers.len();
        let mut length: Option<usize> = None;
        for (field, at) in head.headers.iter().zip(spans.iter_mut()) {
            let name = field.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                match (length, plain_length(field.value)) {
                    (None, Some(n)) => length = Some(n),
                    _ => return Parsed::NotOurs,
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                if !field.value.eq_ignore_ascii_case(b"keep-alive") {
                    return Parsed::NotOurs;
                }
            } else if [&b"transfer-encoding"[..], b"expect", b"upgrade", b"te"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                return Parsed::NotOurs;
            }
            *at = (span(name), span(field.value));
        }
        let length = length.unwrap_or(0);
        if method == Method::GET && length > 0 {
            return Parsed::NotOurs;
        }
        let total = head_len + length;
        // A body still on its way is read by hyper, under the rate rule.
        if total > MOST_BYTES || self.buf.len() < total {
            return Parsed::NotOurs;
        }
        let whole = self.buf.split_to(total).freeze();
        let Some(req) = request(&whole, method, target, &spans[..count], head_len) else {
            // httparse checked what `http` checks again; should they ever
            // disagree, the bytes go back for hyper.
            let mut back = BytesMut::with_capacity(whole.len() + self.buf.len());
            back.extend_from_slice(&whole);
            back.extend_from_slice(&self.buf);
            self.buf = back;
            return Parsed::NotOurs;
        };
        Parsed::Request(req)
    }

    /// Writes the head of `answer` into `out` and starts on its body.
    fn begin_answer(&mut self, answer: Response<TrackedBody>) {
        let (parts, body) = answer.into_parts();
        let status = parts.status;
        let out = &mut self.out;
        out.clear();
        self.written = 0;
        if status == StatusCode::OK {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let bodyless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let (mut has_length, mut has_date, mut has_connection) = (false, false, false);
        let mut close = self.draining;
        for (name, value) in &parts.headers {
            if *name == header::CONTENT_LENGTH {
                if bodyless {
                    continue;
                }
                has_length = true;
            } else if *name == header::DATE {
                has_date = true;
            } else if *name == header::CONNECTION {
                has_connection = true;
                close |= value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut chunked = false;
        if !bodyless && !has_length {
            match body.size_hint().exact() {
                Some(n) => {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                None => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    chunked = true;
                }
            }
        }
        if self.draining && !has_connection {
            out.extend_from_slice(b"connection: close\r\n");
        }
        if !has_date {
            out.extend_from_slice(b"date: ");
            date::render(out);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.closing = close;
        self.sending = Some(Sending {
            body: (!bodyless).then_some(body),
            chunked,
            large: None,
        });
    }

    /// Writes the answer in `sending`: its head and every frame of its
    /// body, gathering what is ready into one write. Ready when it is all
    /// written; the body (and with it the request's tracking) is dropped
    /// then.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(sending) = &mut self.sending else {
                return Poll::Ready(Ok(()));
            };
            let mut body_waits = false;
            if let Some(body) = &mut sending.body
                && sending.large.is_none()
                && self.out.len() < COPY_AT_MOST
            {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            if sending.chunked {
                                self.out
                                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                            }
                            if data.len() <= COPY_AT_MOST {
                                self.out.extend_from_slice(&data);
                                if sending.chunked {
                                    self.out.extend_from_slice(b"\r\n");
                                }
                            } else {
                                sending.large = Some(data);
                            }
                        }
                        if body.is_end_stream() {
                            sending.body = None;
                            if sending.chunked && sending.large.is_none() {
                                self.out.extend_from_slice(b"0\r\n\r\n");
                            }
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                    Poll::Ready(None) => {
                        sending.body = None;
                        if sending.chunked {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                        }
                        continue;
                    }
                    Poll::Pending => body_waits = true,
                }
            }
            let head = &self.out[self.written..];
            let large = sending.large.as_deref().unwrap_or_default();
            if head.is_empty() && large.is_empty() {
                if sending.body.is_none() {
                    self.sending = None;
                    self.out.clear();
                    self.written = 0;
                    if self.out.capacity() > KEPT_BETWEEN {
                        self.out = Vec::new();
                    }
                    return Poll::Ready(Ok(()));
                }
                if body_waits {
                    return Poll::Pending;
                }
                continue;
            }
            let bufs = [IoSlice::new(head), IoSlice::new(large)];
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(head.len());
            self.written += from_head;
            if n > from_head
                && let Some(large) = &mut sending.large
            {
                large.advance(n - from_head);
                if large.is_empty() {
                    sending.large = None;
                    if sending.chunked {
                        self.out.extend_from_slice(b"\r\n");
                        if sending.body.is_none() {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                        }
                    }
                }
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
            }
        }
    }
}

/// Where a part of a request is in its bytes: start and length.
type Span = (usize, usize);

/// The request in `whole` (its head `head_len` bytes long), with its
/// target and fields at the spans given; `None` if `http` refuses one.
fn request(
    whole: &Bytes,
    method: Method,
    (at, len): Span,
    fields: &[(Span, Span)],
    head_len: usize,
) -> Option<Request<Source>> {
    let uri = Uri::from_maybe_shared(whole.slice(at..at + len)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for &((n, n_len), (v, v_len)) in fields {
        let name = HeaderName::from_bytes(&whole[n..n + n_len]).ok()?;
        let value = HeaderValue::from_maybe_shared(whole.slice(v..v + v_len)).ok()?;
        headers.append(name, value);
    }
    // Copied, so that the read buffer is free again at the next read.
    let body = Bytes::copy_from_slice(&whole[head_len..]);
    let mut req = Request::new(Source::Whole(Some(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

/// Whether `target` has the shape of a hot route for `method` (see the
/// module docs); the front still names the route itself. A plain scan of
/// a few bytes: `str::split` costs more on paths this short.
fn hot_shape(method: &Method, target: &[u8]) -> bool {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(end) => &target[..end],
        None => target,
    };
    let Some((b'/', rest)) = path.split_first() else {
        return false;
    };
    // Up to three segments, each not empty.
    let mut cuts = [0usize; 2];
    let mut segments = 1;
    for (i, &b) in rest.iter().enumerate() {
        if b == b'/' {
            if segments == 3 {
                return false;
            }
            cuts[segments - 1] = i;
            segments += 1;
        }
    }
    let topic_end = if segments > 1 { cuts[0] } else { rest.len() };
    if topic_end == 0 {
        return false;
    }
    match (method, segments) {
        (&Method::POST, 2) => &rest[cuts[0] + 1..] == b"payload",
        (&Method::GET, 2) => &rest[cuts[0] + 1..] == b"scan",
        (&Method::GET, 3) => &rest[cuts[0] + 1..cuts[1]] == b"payload" && cuts[1] + 1 < rest.len(),
        _ => false,
    }
}

/// A `Content-Length` of plain digits, as hyper reads it (short enough not
/// to overflow; anything longer is over [`MOST_BYTES`] anyway).
fn plain_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0usize, |n, d| Some(n * 10 + usize::from(d - b'0')))
}

/// The `Date` of answers, rendered once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
    const LEN: usize = 29;

    thread_local! {
        static CACHED: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
    }

    /// Appends the current date to `out`.
    pub(super) fn render(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != secs {
                let fresh = httpdate::fmt_http_date(now);
                if fresh.len() == LEN {
                    text.copy_from_slice(fresh.as_bytes());
                    *at = secs;
                } else {
                    out.extend_from_slice(fresh.as_bytes());
                    return;
                }
            }
            out.extend_from_slice(&text[..]);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the hot routes' shapes are taken.
    #[test]
    fn hot_shapes() {
        assert!(hot_shape(&Method::POST, b"/t/payload"));
        assert!(hot_shape(&Method::GET, b"/t/scan?id=x&wait=1s"));
        assert!(hot_shape(&Method::GET, b"/t/payload/12"));
        assert!(!hot_shape(&Method::GET, b"/t/payload"));
        assert!(!hot_shape(&Method::POST, b"/t/scan"));
        assert!(!hot_shape(&Method::POST, b"//payload"));
        assert!(!hot_shape(&Method::GET, b"/t/payload/"));
        assert!(!hot_shape(&Method::GET, b"/t/payload/1/x"));
        assert!(!hot_shape(&Method::POST, b"http://h/t/payload"));
        assert!(!hot_shape(&Method::GET, b"/t/stream"));
        assert!(!hot_shape(&Method::POST, b"/t/messages"));
    }

    /// Lengths are plain digits, short; anything else goes to hyper.
    #[test]
    fn lengths() {
        assert_eq!(plain_length(b"0"), Some(0));
        assert_eq!(plain_length(b"100"), Some(100));
        assert_eq!(plain_length(b"007"), Some(7));
        assert_eq!(plain_length(b""), None);
        assert_eq!(plain_length(b"+5"), None);
        assert_eq!(plain_length(b"5 "), None);
        assert_eq!(plain_length(b"1234567890"), None);
    }

    /// The date has the IMF-fixdate shape, and the cached one reads the same.
    #[test]
    fn dates() {
        let mut a = Vec::new();
        date::render(&mut a);
        let mut b = Vec::new();
        date::render(&mut b);
        assert_eq!(a.len(), 29);
        assert!(a.ends_with(b" GMT"));
        assert!(a == b || a[..20] == b[..20]);
    }
}
