//! The connection's byte stream as the server sees it: it tells the
//! connection's watchdog when a request head starts, and it puts hyper's own
//! error answers into netlog's JSON shape.
//!
//! hyper answers a request head it cannot parse by itself (400 for a bad
//! method, header or version, or a `Content-Length` beside
//! `Transfer-Encoding`; 414 for a URI over its limit; 431 for a head over
//! `max_buf_size` or with too many fields) with an empty body, and offers no
//! hook to change it. Those answers are the only ones written while no
//! request is in flight on the connection, and the only ones with no
//! `content-type` (every answer of the API has one), so [`Tracked`]
//! recognises them in the outgoing bytes and writes netlog's error instead.
//! The connection closes after them, as it would have.
//!
//! [`Tracked::put_back`] puts bytes already read back in front of the
//! stream: a connection the lane (`serve/lane.rs`) hands to hyper goes on
//! with the request the lane read but does not serve.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Conn;
use crate::http::ApiError;

/// A stream that reports reads to its [`Conn`] and rewrites hyper's error
/// answers (see the module docs).
pub(crate) struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    /// Bytes read before, to be read again first (see the module docs).
    put_back: Bytes,
    /// netlog's answer in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// After a replacement, what hyper writes is dropped.
    swallow: bool,
}

impl<S> Tracked<S> {
    /// Has `bytes`, read from this stream before (and reported then), read
    /// again before anything else.
    pub(crate) fn put_back(&mut self, bytes: Bytes) {
        self.put_back = bytes;
    }

    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Tracked {
            inner,
            conn,
            put_back: Bytes::new(),
            replacement: None,
            swallow: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Tracked<S> {
    fn flush_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> Tracked<S> {
    /// Before a write whose first bytes are `head` (of `total` bytes): sends
    /// what is left of a replacement, then drops the write if it follows one
    /// or is one of hyper's error answers (replacing it). `Some(total)` when
    /// the write was taken here, `None` when it is to be passed on.
    fn take_over(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        total: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        ready!(self.flush_replacement(cx))?;
        if self.swallow {
            return Poll::Ready(Ok(Some(total)));
        }
        // The byte check first: it is cheap and almost always false, while
        // `is_quiet` takes the connection's lock.
        if let Some(status) = hyper_error_status(head)
            && self.conn.is_quiet()
        {
            tracing::debug!(status = status.as_u16(), "malformed request head");
            self.replacement = Some((replacement_for(status), 0));
            self.swallow = true;
            // What hyper wrote is taken whole; the replacement goes out now
            // or on the next flush.
            let _ = self.flush_replacement(cx)?;
            return Poll::Ready(Ok(Some(total)));
        }
        Poll::Ready(Ok(None))
    }
}

/// The status of `head` if it is one of hyper's own error answers.
fn hyper_error_status(head: &[u8]) -> Option<StatusCode> {
    let status = match head.get(..12)? {
        b"HTTP/1.1 400" => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414" => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    let typed = lower.windows(14).any(|w| w == b"\ncontent-type:");
    (!typed).then_some(status)
}

/// netlog's answer for one of hyper's error statuses.
fn replacement_for(status: StatusCode) -> Vec<u8> {
    match status {
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeaderFieldsTooLarge,
        _ => ApiError::BadRequest("the request head is not valid HTTP/1.1".into()),
    }
    .raw_answer()
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.put_back.is_empty() {
            let n = self.put_back.len().min(buf.remaining());
            buf.put_slice(&self.put_back[..n]);
            self.put_back.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.conn.saw_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(taken) = ready!(self.take_over(cx, buf, buf.len()))? {
            return Poll::Ready(Ok(taken));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper puts a message's whole head in the first slice and the body
        // in the next ones, so bodies go out without being copied.
        let total = bufs.iter().map(|b| b.len()).sum();
        let head = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if let Some(taken) = ready!(self.take_over(cx, head, total))? {
            return Poll::Ready(Ok(taken));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's bare error heads are recognised; answers with a content type
    /// (every answer of the API) and other statuses are left alone.
    #[test]
    fn recognises_hyper_error_heads() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            hyper_error_status(bare),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(hyper_error_status(ours), None);
        assert_eq!(
            hyper_error_status(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(hyper_error_status(b"HTTP/1.1 400 Bad"), None);
    }
}
