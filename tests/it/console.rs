//! The web console's server side, without a browser: its files (status,
//! type, security headers, ETag and 304, traversal refused), the size
//! budget and the no-markup rule on its source, `/_whoami` and `/_stats`
//! under rights, the stateless range read, and the host and origin rules
//! against DNS rebinding. The browser tests are in `tests/console/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'; require-trusted-types-for 'script'";
const OPS: &str = "console-ops-secret-41d2";
const READER: &str = "console-reader-secret-93a7";

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// Every file under `console/`, with its path relative to it.
fn console_files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![console_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("console dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(console_dir()).unwrap();
                out.push((rel.display().to_string(), path));
            }
        }
    }
    out.sort();
    out
}

/// One HTTP/1.1 request with exactly these headers (a `Host` among them,
/// or none), answered as (status, lower-case head, body).
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    raw_with_body(addr, method, path, headers, b"")
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim().to_string())
    })
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The real binary with `toml` as its config file.
async fn launch(toml: &str) -> (NetlogProcess, tempfile::TempDir) {
    let dir = data_dir();
    let config = dir.path().join("netlog.toml");
    std::fs::write(&config, toml).expect("write config");
    let data = dir.path().join("data");
    let broker = Launch::new()
        .dir(&data)
        .arg("--config")
        .arg(&config)
        .start()
        .await;
    (broker, dir)
}

fn auth_toml() -> String {
    format!(
        r#"
[[auth.tokens]]
name = "ops"
sha256 = "{}"
produce = ["*"]
consume = ["*"]
admin = true

[[auth.tokens]]
name = "reader"
sha256 = "{}"
consume = ["a*"]
"#,
        sha256_hex(OPS),
        sha256_hex(READER)
    )
}

/// The type a console file is served with, by its extension.
fn expected_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        _ => "text/plain",
    }
}

/// Each file of `console/` is served at `/_console/` with its type, the
/// strict CSP, nosniff, no-referrer and an ETag that turns a repeat into a
/// 304 without a body; `/_console` redirects to `/_console/`.
#[tokio::test]
async fn console_files_are_served_with_their_headers() {
    let (broker, _dir) = launch("").await;
    let addr = broker.addr();
    let host = addr.to_string();
    let h = [("Host", host.as_str())];
    let mut served = 0;
    for (rel, _) in console_files() {
        if rel == "vendor/README.md" {
            continue;
        }
        let name = match rel.as_str() {
            "index.html" => String::new(),
            "vendor/uplot-LICENSE" => "uplot-LICENSE.txt".into(),
            other => other.trim_start_matches("vendor/").to_string(),
        };
        let path = format!("/_console/{name}");
        let (status, head, body) = raw(addr, "GET", &path, &h);
        assert_eq!(status, 200, "{path}: {head}");
        let kind = header_of(&head, "content-type").unwrap_or_default();
        assert!(kind.starts_with(expected_type(&rel)), "{path}: {kind}");
        assert_eq!(
            header_of(&head, "content-security-policy").as_deref(),
            Some(CSP.to_ascii_lowercase().as_str())
        );
        assert_eq!(
            header_of(&head, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            header_of(&head, "referrer-policy").as_deref(),
            Some("no-referrer")
        );
        let etag = header_of(&head, "etag").expect("an etag");
        assert!(!body.is_empty(), "{path}");
        let (again, head, body) = raw(addr, "GET", &path, &[h[0], ("If-None-Match", &etag)]);
        assert_eq!(again, 304, "{path}: {head}");
        assert!(body.is_empty());
        assert_eq!(
            header_of(&head, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        served += 1;
    }
    assert!(served >= 15, "every file: {served}");
    let (status, head, _) = raw(addr, "GET", "/_console", &h);
    assert_eq!(status, 308);
    assert_eq!(header_of(&head, "location").as_deref(), Some("/_console/"));
}

/// Paths that try to leave the table get 404, whatever their spelling.
#[tokio::test]
async fn traversal_attempts_are_404() {
    let (broker, _dir) = launch("").await;
    let addr = broker.addr();
    let host = addr.to_string();
    for path in [
        "/_console/../Cargo.toml",
        "/_console/..%2FCargo.toml",
        "/_console/%2e%2e%2fCargo.toml",
        "/_console/%2e%2e/Cargo.toml",
        "/_console/vendor/uplot.min.js",
        "/_console/..%5c..%5cCargo.toml",
        "/_console//etc/passwd",
        "/_console/%2fetc%2fpasswd",
        "/_console/index.html%00",
        "/_console/app.js/",
        "/_console/nope.js",
        "/_console/INDEX.HTML",
    ] {
        let (status, head, body) = raw(addr, "GET", path, &[("Host", &host)]);
        assert!(status == 404 || status == 400, "{path}: {status} {head}");
        assert!(
            !String::from_utf8_lossy(&body).contains("[package]"),
            "{path}"
        );
        assert_eq!(
            header_of(&head, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}

/// Every answer of the broker says nosniff: a 404, a 401, a 200 and the
/// admin listener's.
#[tokio::test]
async fn every_answer_is_nosniff() {
    let toml = format!("[server]\nadmin_listen = \"127.0.0.1:0\"\n{}", auth_toml());
    let (broker, _dir) = launch(&toml).await;
    let host = broker.addr().to_string();
    for (path, want) in [("/nothing/here/at/all", 404), ("/", 401), ("/_health", 200)] {
        let (status, head, _) = raw(broker.addr(), "GET", path, &[("Host", &host)]);
        assert_eq!(status, want, "{path}");
        assert_eq!(
            header_of(&head, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
    let admin = broker.admin_addr().expect("admin listener");
    let admin_host = admin.to_string();
    let (status, head, _) = raw(admin, "GET", "/health", &[("Host", &admin_host)]);
    assert_eq!(status, 200);
    assert_eq!(
        header_of(&head, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // The console is not served on the admin listener.
    let (status, _, _) = raw(admin, "GET", "/_console/", &[("Host", &admin_host)]);
    assert_eq!(status, 404);
}

/// `[console] enabled = false` turns the files off, not the data routes.
#[tokio::test]
async fn a_disabled_console_is_404() {
    let (broker, _dir) = launch("[console]\nenabled = false\n").await;
    assert_eq!(broker.api().get("/_console/").await.status(), 404);
    assert_eq!(broker.api().get("/_console/app.js").await.status(), 404);
    assert_eq!(broker.api().get("/_whoami").await.status(), 200);
}

/// Every console file is at most 150 KiB, and the console's own code never
/// turns a string into markup or code.
#[test]
fn console_source_keeps_its_budget_and_builds_no_markup() {
    let mut wrong = Vec::new();
    for (rel, path) in console_files() {
        let bytes = std::fs::read(&path).expect("read");
        if bytes.len() > 150 * 1024 {
            wrong.push(format!("{rel}: {} bytes", bytes.len()));
        }
        if rel.starts_with("vendor/") {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage.set",
            "document.cookie",
            "createContextualFragment",
        ] {
            if text.contains(banned) {
                wrong.push(format!("{rel}: uses {banned}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `/_whoami` tells who the caller is and never a secret; an unknown token
/// is a 401. `/_stats` is cut by rights, its broker part for admin only.
#[tokio::test]
async fn whoami_and_stats_follow_rights() {
    let (broker, _dir) = launch(&auth_toml()).await;
    let http = client_builder().build().expect("client");
    let base = broker.base_url();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for topic in ["a1", "b1"] {
        let created = http
            .post(format!("{base}/{topic}"))
            .bearer_auth(OPS)
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), 201);
    }
    let anon = get("/_whoami", None).await.expect("whoami");
    assert_eq!(anon.status(), 200);
    let anon: Value = serde_json::from_str(&anon.text().await.expect("text")).expect("json");
    assert_eq!(
        anon,
        json!({"auth": true, "token": null, "admin": false, "produce": [], "consume": []})
    );
    let reader = get("/_whoami", Some(READER)).await.expect("whoami");
    let text = reader.text().await.expect("text");
    assert!(
        !text.contains(READER) && !text.contains(&sha256_hex(READER)),
        "{text}"
    );
    let reader: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        reader,
        json!({"auth": true, "token": "reader", "admin": false, "produce": [], "consume": ["a*"]})
    );
    assert_eq!(
        get("/_whoami", Some("wrong"))
            .await
            .expect("whoami")
            .status(),
        401
    );

    assert_eq!(get("/_stats", None).await.expect("stats").status(), 401);
    let cut: Value = get("/_stats", Some(READER))
        .await
        .expect("stats")
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).expect("json"))
        .expect("text");
    let names: Vec<&str> = cut["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1"]);
    assert!(
        cut.get("broker").is_none(),
        "no broker part for a reader: {cut}"
    );
    let all: Value = get("/_stats", Some(OPS))
        .await
        .expect("stats")
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).expect("json"))
        .expect("text");
    assert_eq!(all["topics"].as_array().unwrap().len(), 2);
    assert!(
        all["broker"]["answers"]["2xx"].as_u64().unwrap() > 0,
        "{all}"
    );
    let a1 = &all["topics"][0];
    for key in [
        "messages_in",
        "bytes_in",
        "messages_out",
        "latest_offset",
        "segments",
        "disk_bytes",
        "scanners",
        "publish",
        "plugins",
    ] {
        assert!(a1.get(key).is_some(), "{key} in {a1}");
    }
}

/// `/_stats` gives a topic with consumer groups each group's backlog,
/// pending entries by state, oldest unacked age and consumers seen; a
/// topic without groups has no `groups` field.
#[tokio::test]
async fn stats_show_groups_where_they_exist() {
    let (broker, _dir) = launch("").await;
    let api = broker.api();
    api.create_topic("jobs").await;
    api.create_topic("plain").await;
    for i in 0..5 {
        api.publish("jobs", format!("job {i}")).await;
    }
    let created = api
        .post("/jobs/groups/workers", r#"{"from":"oldest"}"#)
        .await;
    assert_eq!(created.status(), 201);
    let got = api
        .post_empty("/jobs/groups/workers/receive?max=2&consumer=w1")
        .await;
    assert_eq!(got.status(), 200);
    let stats: Value =
        serde_json::from_str(&api.get("/_stats").await.text().await.expect("text")).expect("json");
    let topics = stats["topics"].as_array().expect("topics");
    let of = |name: &str| topics.iter().find(|t| t["name"] == name).expect(name);
    assert!(of("plain").get("groups").is_none(), "{stats}");
    let groups = of("jobs")["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{stats}");
    let g = &groups[0];
    assert_eq!(g["name"], "workers");
    assert_eq!(g["backlog"], 3);
    assert_eq!(g["unacked"], 5);
    assert_eq!(
        g["pending"],
        json!({"leased": 2, "waiting": 0, "parked": 0, "blocked": 0})
    );
    assert_eq!(g["consumers"], 1);
    assert!(g["oldest_unacked_seconds"].as_f64().is_some(), "{g}");
}

/// `GET /{topic}/messages` reads a page as ndjson (text, hex for bytes
/// that are not UTF-8, a cut over 64 KiB) and creates no scanner.
#[tokio::test]
async fn browsing_reads_a_range_without_a_scanner() {
    let (broker, _dir) = launch("").await;
    let api = broker.api();
    api.create_topic("b").await;
    api.publish("b", "hello").await;
    api.publish("b", vec![0xffu8, 0x00, 0x80]).await;
    api.publish("b", vec![b'x'; 200 * 1024]).await;
    let page = api.get("/b/messages?from=oldest&max=2").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "x-next-offset").as_deref(), Some("2"));
    assert!(content_type(&page).starts_with("application/x-ndjson"));
    let mut lines: Vec<Value> = page
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for line in &mut lines {
        let time = line.as_object_mut().unwrap().remove("time");
        let time = time.expect("each message's write time");
        assert!(time.as_str().unwrap().ends_with('Z'), "RFC 3339: {time}");
    }
    assert_eq!(
        lines,
        [
            json!({"offset": 0, "size": 5, "text": "hello"}),
            json!({"offset": 1, "size": 3, "hex": "ff0080"})
        ]
    );
    let rest: Value = serde_json::from_str(
        api.get("/b/messages?from=2")
            .await
            .text()
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(rest["size"], 200 * 1024);
    assert_eq!(rest["truncated"], true);
    assert_eq!(rest["text"].as_str().unwrap().len(), 64 * 1024);
    let empty = api.get("/b/messages?from=end").await;
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.text().await.unwrap(), "");
    assert_eq!(api.get("/b/messages?max=0").await.status(), 400);
    assert_eq!(
        api.info("b").await["scanner_count"],
        0,
        "looking created no scanner"
    );
}

/// The host and origin rules of the console spec: a `Host` the broker does
/// not answer as is refused; the console's own origin passes for the hosts
/// it answers as; a rebinding page (Origin and Host both its own name) does
/// not, even with `allowed_hosts = ["*"]`.
#[tokio::test]
async fn host_and_origin_rules_refuse_rebinding() {
    let (broker, _dir) = launch(
        "[server]\nallowed_hosts = [\"broker.example\"]\n[console]\nhosts = [\"console.example\"]\n",
    )
    .await;
    let addr = broker.addr();
    let port = addr.port();
    broker.api().create_topic("t").await;
    let own = addr.to_string();
    type Case<'a> = (Vec<(String, String)>, &'a str, u16);
    let cases: Vec<Case> = vec![
        (vec![("Host".into(), own.clone())], "GET", 200),
        (
            vec![("Host".into(), format!("localhost:{port}"))],
            "GET",
            200,
        ),
        (
            vec![("Host".into(), format!("broker.example:{port}"))],
            "GET",
            200,
        ),
        (
            vec![("Host".into(), format!("evil.test:{port}"))],
            "GET",
            403,
        ),
        (
            vec![
                ("Host".into(), own.clone()),
                ("Origin".into(), format!("http://{own}")),
            ],
            "GET",
            200,
        ),
        (
            vec![
                ("Host".into(), own.clone()),
                ("Origin".into(), format!("http://{own}")),
            ],
            "POST",
            201,
        ),
        (
            vec![
                ("Host".into(), format!("console.example:{port}")),
                ("Origin".into(), format!("http://console.example:{port}")),
            ],
            "POST",
            201,
        ),
        (
            vec![
                ("Host".into(), own.clone()),
                ("Origin".into(), "http://evil.test".into()),
            ],
            "GET",
            403,
        ),
        (
            vec![
                ("Host".into(), format!("evil.test:{port}")),
                ("Origin".into(), format!("http://evil.test:{port}")),
            ],
            "GET",
            403,
        ),
        (
            vec![
                ("Host".into(), own.clone()),
                ("Origin".into(), format!("https://{own}")),
            ],
            "GET",
            403,
        ),
    ];
    for (headers, method, want) in cases {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let path = if method == "POST" { "/t/payload" } else { "/t" };
        let (status, head, body) = raw_with_body(addr, method, path, &h, b"x");
        assert_eq!(
            status,
            want,
            "{method} {h:?}: {head} {}",
            String::from_utf8_lossy(&body)
        );
        if want == 403 {
            let body: Value = serde_json::from_slice(&body).expect("json error");
            check_error_body(&body, 403, "forbidden");
        }
    }

    // With `*`, any Host passes, but a rebinding page's origin is still not
    // the console's own.
    let (any, _dir2) = launch("[server]\nallowed_hosts = [\"*\"]\n").await;
    let port = any.addr().port();
    let evil = format!("evil.test:{port}");
    let (status, _, _) = raw(any.addr(), "GET", "/", &[("Host", &evil)]);
    assert_eq!(status, 200);
    let origin = format!("http://{evil}");
    let (status, _, _) = raw(
        any.addr(),
        "GET",
        "/",
        &[("Host", &evil), ("Origin", &origin)],
    );
    assert_eq!(status, 403);
}

/// [`raw`] with a body.
fn raw_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, answer[split + 4..].to_vec())
}
