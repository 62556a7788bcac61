//! TLS on the listener, with a certificate made by the test (rcgen): HTTPS
//! works through a rustls client that trusts only that certificate, and
//! plain HTTP to the TLS port fails cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Longest one exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM
/// into `dir`; returns the certificate's DER for the client's trust store.
fn make_certificate(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("make a certificate");
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("write key.pem");
    made.cert.der().clone()
}

fn client(root: rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A broker serving HTTPS with a certificate made for it, and a client
/// that trusts only that certificate.
struct TlsBroker {
    broker: Broker,
    connector: TlsConnector,
    /// Its data and its certificate, kept as long as it runs.
    _dirs: [tempfile::TempDir; 2],
}

fn tls_broker() -> TlsBroker {
    let dir = data_dir();
    let pem_dir = data_dir();
    let root = make_certificate(pem_dir.path());
    let mut config = test_config(dir.path());
    config.server.tls_cert = Some(pem_dir.path().join("cert.pem"));
    config.server.tls_key = Some(pem_dir.path().join("key.pem"));
    TlsBroker {
        broker: spawn_broker_with(config),
        connector: client(root),
        _dirs: [dir, pem_dir],
    }
}

/// Sends `request` over TLS and reads the answer to the end.
async fn https(connector: &TlsConnector, addr: SocketAddr, request: &str) -> String {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).to_string()
    })
    .await
    .expect("an HTTPS answer in time")
}

/// With `tls_cert` and `tls_key` set, the API answers over HTTPS, topics
/// can be created and read, and an untrusted client's handshake fails.
#[tokio::test]
async fn https_serves_the_api() {
    let TlsBroker {
        broker,
        connector,
        _dirs,
    } = tls_broker();
    let created = https(
        &connector,
        broker.addr(),
        "POST /t HTTP/1.1\r\nHost: n\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let listed = https(
        &connector,
        broker.addr(),
        "GET / HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains("\"t\""), "{listed}");

    let other = make_certificate(data_dir().path());
    let untrusted = client(other);
    let tcp = TcpStream::connect(broker.addr()).await.expect("connect");
    let name = ServerName::IpAddress(broker.addr().ip().into());
    let handshake = tokio::time::timeout(EXCHANGE_TIMEOUT, untrusted.connect(name, tcp))
        .await
        .expect("the handshake ends");
    assert!(
        handshake.is_err(),
        "a client that trusts another certificate fails"
    );
    broker.stop().await;
}

/// Plain HTTP to the TLS port gets a short error in netlog's shape and a
/// closed connection: no hang, and the broker keeps serving HTTPS.
#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly() {
    let TlsBroker {
        broker,
        connector,
        _dirs,
    } = tls_broker();
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut tcp = TcpStream::connect(broker.addr()).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: n\r\n\r\n")
            .await
            .expect("send");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).to_string()
    })
    .await
    .expect("the server closes the plain connection");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("this port speaks HTTPS only"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
    check_error_body(&body, 400, "bad request");

    // The broker still serves HTTPS.
    let listed = https(
        &connector,
        broker.addr(),
        "GET / HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    broker.stop().await;
}

/// A long poll over TLS whose client closes (with TLS's closing alert,
/// then the socket) ends when the client leaves: a message published
/// afterwards is not moved past on the scanner, and the next scan gets it.
#[tokio::test]
async fn a_tls_long_poll_whose_client_leaves_takes_nothing() {
    let TlsBroker {
        broker,
        connector,
        _dirs,
    } = tls_broker();
    let send = |request: &'static str| https(&connector, broker.addr(), request);
    let created =
        send("POST /t HTTP/1.1\r\nHost: n\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let scanner = send(
        "POST /t/scanner HTTP/1.1\r\nHost: n\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let id = scanner
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a scanner id in {scanner}"))
        .to_string();

    let tcp = TcpStream::connect(broker.addr()).await.expect("connect");
    let name = ServerName::IpAddress(broker.addr().ip().into());
    let mut poll = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET /t/scan?id={id}&wait=30s HTTP/1.1\r\nHost: n\r\n\r\n");
    poll.write_all(request.as_bytes()).await.expect("poll");
    poll.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    poll.shutdown().await.expect("close_notify");
    drop(poll);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let published = send(
        "POST /t/payload HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(published.starts_with("HTTP/1.1 201"), "{published}");
    let scan = format!("GET /t/scan?id={id} HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n");
    let scanned = https(&connector, broker.addr(), &scan).await;
    assert!(
        scanned.starts_with("HTTP/1.1 200") && scanned.ends_with("\r\n\r\nabc"),
        "the scanner moved past the message: {scanned}"
    );
    broker.stop().await;
}
