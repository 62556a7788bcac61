//! A raw HTTP/1.1 client over one keep-alive TCP connection (no Nagle
//! delay), for tests that need the bytes as the broker writes them: it
//! reads answers one at a time, and keeps what a read brings past one
//! answer (the start of the next, when requests are pipelined) for the
//! next.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one exchange may take.
pub const RAW_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One raw connection, with what it read past the last answer.
pub struct Raw {
    pub stream: TcpStream,
    got: Vec<u8>,
}

/// An answer: its head's lines (the status line first) and its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.head[0]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status")
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The answer without its `date` (which may differ by a second).
    pub fn undated(mut self) -> Answer {
        self.head.retain(|l| !l.starts_with("date:"));
        self
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            got: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next answer (informational ones included), within [`RAW_ANSWER_TIMEOUT`].
    pub async fn answer(&mut self) -> Answer {
        tokio::time::timeout(RAW_ANSWER_TIMEOUT, self.read_one())
            .await
            .expect("an answer in time")
    }

    async fn read_one(&mut self) -> Answer {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(end) = self.got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<String> = String::from_utf8_lossy(&self.got[..end])
                    .split("\r\n")
                    .map(str::to_owned)
                    .collect();
                let informational = head[0].starts_with("HTTP/1.1 1");
                let len: usize = if informational {
                    0
                } else {
                    head.iter()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or_else(|| panic!("no content-length in {head:?}"))
                };
                if self.got.len() >= end + 4 + len {
                    let body = self.got[end + 4..end + 4 + len].to_vec();
                    self.got.drain(..end + 4 + len);
                    return Answer { head, body };
                }
            }
            let n = self.stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&self.got)
            );
            self.got.extend_from_slice(&buf[..n]);
        }
    }

    /// Whether the broker closes the connection within [`RAW_ANSWER_TIMEOUT`] (after
    /// what it still had to send).
    pub async fn closes(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(RAW_ANSWER_TIMEOUT, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}
