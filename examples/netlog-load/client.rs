//! A minimal HTTP/1.1 keep-alive client over one `TcpStream`.
//!
//! Just enough HTTP for the broker's answers: a status line, headers, and a
//! body framed by `Content-Length` (every route the load tool calls in a
//! loop), by `Transfer-Encoding: chunked`, or by the end of the connection. A
//! request is built once as bytes and sent with one `write_all`, so a
//! round trip usually costs one write and one read: that is what lets one
//! process drive a broker at 100k requests a second. [`EventStream`] reads a
//! chunked Server-Sent Events body line by line as it arrives.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Room kept free in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Longest status line plus headers accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Where the broker is: the address to connect to, the `Host` header, and a
/// path prefix (for a broker behind a proxy at `http://host/netlog`), and the
/// bearer secret every request carries, if any.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub base: String,
    pub token: Option<String>,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` and resolves the host.
    pub async fn parse(url: &str) -> io::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid(format!("{url}: only http:// URLs are supported")))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = split_port(authority)?;
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| invalid(format!("{host}: no address")))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            base: path.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    /// The bytes of one request. `POST` always carries a `Content-Length`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + body.len());
        let _ = write!(
            out,
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\n",
            self.base, self.host
        );
        for (name, value) in headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if let Some(token) = &self.token {
            let _ = write!(out, "Authorization: Bearer {token}\r\n");
        }
        if method == "POST" || !body.is_empty() {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    /// One request on a fresh connection, for set-up calls.
    pub async fn call(&self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        let mut conn = Conn::connect(self).await?;
        conn.roundtrip(&self.request(method, path, &[], body)).await
    }
}

fn split_port(authority: &str) -> io::Result<(&str, u16)> {
    let bad = || invalid(format!("{authority}: not a host[:port]"));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 80,
    };
    Ok((host, port))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// An answer, with the few headers the load tool looks at.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub x_offset: Option<u64>,
    pub x_count: Option<u64>,
    pub body: Bytes,
}

impl Response {
    /// The status and a short piece of the body, for error reports.
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        format!("HTTP {}: {}", self.status, body.trim())
    }
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
    x_offset: Option<u64>,
    x_count: Option<u64>,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    open: bool,
}

impl Conn {
    pub async fn connect(target: &Target) -> io::Result<Conn> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            open: true,
        })
    }

    /// False once the server said `Connection: close` or a read failed.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Sends `request` (from [`Target::request`]) and reads the whole answer.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<Response> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.open = false;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        let head = self.read_head().await?;
        let body = match head.framing {
            Framing::Length(n) => self.read_exact(n).await?,
            Framing::Chunked => {
                let mut body = BytesMut::new();
                while let Some(chunk) = self.next_chunk().await? {
                    body.extend_from_slice(&chunk);
                }
                body.freeze()
            }
            Framing::UntilClose => {
                while self.fill().await? > 0 {}
                self.open = false;
                self.buf.split().freeze()
            }
        };
        if head.close {
            self.open = false;
        }
        Ok(Response {
            status: head.status,
            x_offset: head.x_offset,
            x_count: head.x_count,
            body,
        })
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_CHUNK_BYTES);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Like [`fill`](Self::fill), but the end of the stream is an error.
    async fn fill_more(&mut self) -> io::Result<()> {
        if self.fill().await? == 0 {
            self.open = false;
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    async fn read_exact(&mut self, n: usize) -> io::Result<Bytes> {
        while self.buf.len() < n {
            self.fill_more().await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// One line, without its CRLF.
    async fn read_line(&mut self) -> io::Result<Bytes> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let mut line = self.buf.split_to(scanned + i + 1);
                line.truncate(scanned + i);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Ok(line.freeze());
            }
            scanned = self.buf.len();
            if scanned > MAX_HEAD_BYTES {
                return Err(bad_data("line too long"));
            }
            self.fill_more().await?;
        }
    }

    async fn read_head(&mut self) -> io::Result<Head> {
        let mut scanned: usize = 0;
        let end = loop {
            let from = scanned.saturating_sub(3);
            if let Some(i) = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                break from + i + 4;
            }
            scanned = self.buf.len();
            if scanned > MAX_HEAD_BYTES {
                return Err(bad_data("response head too long"));
            }
            self.fill_more().await?;
        };
        let raw = self.buf.split_to(end);
        parse_head(&raw)
    }

    /// The data of the next chunk of a chunked body; `None` after the last.
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let line = self.read_line().await?;
        let size = std::str::from_utf8(&line)
            .ok()
            .map(|l| l.split(';').next().unwrap_or("").trim())
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .ok_or_else(|| bad_data("bad chunk size"))?;
        if size == 0 {
            // Trailers, then an empty line.
            while !self.read_line().await?.is_empty() {}
            return Ok(None);
        }
        let data = self.read_exact(size).await?;
        if !self.read_line().await?.is_empty() {
            return Err(bad_data("chunk not followed by CRLF"));
        }
        Ok(Some(data))
    }
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| bad_data("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| bad_data(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        framing: Framing::UntilClose,
        close: version == "HTTP/1.0",
        x_offset: None,
        x_count: None,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad_data(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") {
            let n = value.parse().map_err(|_| bad_data("bad Content-Length"))?;
            if head.framing != Framing::Chunked {
                head.framing = Framing::Length(n);
            }
        } else if is("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            head.framing = Framing::Chunked;
        } else if is("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if is("x-offset") {
            head.x_offset = value.parse().ok();
        } else if is("x-count") {
            head.x_count = value.parse().ok();
        }
    }
    if status == 204 || status == 304 {
        head.framing = Framing::Length(0);
    }
    Ok(head)
}

/// A connection that reconnects after a failure, for request loops.
pub struct Link {
    target: Target,
    conn: Option<Conn>,
}

impl Link {
    pub fn new(target: Target) -> Link {
        Link { target, conn: None }
    }

    /// Connects if needed, then one round trip. After a failed connect it
    /// pauses briefly, so a broker that is down is not hammered.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<Response> {
        let conn = match self.conn.take() {
            Some(c) if c.is_open() => self.conn.insert(c),
            _ => match Conn::connect(&self.target).await {
                Ok(c) => self.conn.insert(c),
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Err(e);
                }
            },
        };
        conn.roundtrip(request).await
    }
}

/// A Server-Sent Events response read line by line.
pub struct EventStream {
    conn: Conn,
    framing: Framing,
    lines: BytesMut,
    done: bool,
}

impl EventStream {
    /// `GET path` with `Accept: text/event-stream`; fails unless the answer
    /// is a 200.
    pub async fn open(target: &Target, path: &str) -> io::Result<EventStream> {
        let mut conn = Conn::connect(target).await?;
        let request = target.request("GET", path, &[("Accept", "text/event-stream")], b"");
        conn.stream.write_all(&request).await?;
        let head = conn.read_head().await?;
        if head.status != 200 {
            return Err(bad_data(format!("stream answered HTTP {}", head.status)));
        }
        if let Framing::Length(_) = head.framing {
            return Err(bad_data("stream answered with a fixed-length body"));
        }
        Ok(EventStream {
            conn,
            framing: head.framing,
            lines: BytesMut::new(),
            done: false,
        })
    }

    /// The next line of the body (without its line ending), as soon as it
    /// has arrived; `None` when the body ends.
    pub async fn next_line(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(i) = self.lines.iter().position(|b| *b == b'\n') {
                let mut line = self.lines.split_to(i + 1);
                line.truncate(i);
                if line.last() == Some(&b'\r') {
                    line.truncate(i - 1);
                }
                return Ok(Some(line.freeze()));
            }
            if self.done {
                return Ok(None);
            }
            if self.framing == Framing::Chunked {
                match self.conn.next_chunk().await? {
                    Some(data) => self.lines.extend_from_slice(&data),
                    None => self.done = true,
                }
            } else if self.conn.buf.is_empty() && self.conn.fill().await? == 0 {
                self.done = true;
            } else {
                let data = self.conn.buf.split();
                self.lines.extend_from_slice(&data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head with Content-Length and the broker's headers parses.
    #[test]
    fn parses_a_head() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-offset: 7\r\nX-Count: 3\r\n\r\n";
        let head = parse_head(raw).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!((head.x_offset, head.x_count), (Some(7), Some(3)));
        assert!(!head.close);
    }

    /// Chunked framing wins over a stray Content-Length.
    #[test]
    fn chunked_wins() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(parse_head(raw).unwrap().framing, Framing::Chunked);
    }

    /// Hosts with and without ports, IPv6 in brackets.
    #[test]
    fn splits_ports() {
        assert_eq!(split_port("127.0.0.1:7200").unwrap(), ("127.0.0.1", 7200));
        assert_eq!(split_port("localhost").unwrap(), ("localhost", 80));
        assert_eq!(split_port("[::1]:7200").unwrap(), ("::1", 7200));
        assert!(split_port(":7200").is_err());
    }
}
