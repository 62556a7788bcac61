//! Authentication and rights over HTTP against the real broker (see the
//! "Authentication and rights" section of `operations.md`), and the `netlog
//! token` commands of the real binary.

use std::time::Duration;

use crate::common::*;
use netlog::config::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Admin, and may produce to and consume from everything.
const OPS: &str = "ops-secret-4f0c2e9a7b1d";
/// Produces to `orders` and `orders.*`, consumes nothing.
const PRODUCER: &str = "orders-secret-8d3a61c0e5f2";
/// Consumes `orders` and `log-??`.
const READER: &str = "reader-secret-2b7e95d4a1c3";
/// Admin only: no produce, no consume.
const JANITOR: &str = "janitor-secret-6c1f08b3d9e4";
/// Declared with no right at all.
const IDLE: &str = "idle-secret-9a4d27e6f0b8";

/// Topics every test broker starts with (created by `ops`).
const TOPICS: [&str; 7] = [
    "orders",
    "orders.eu",
    "orders.eu.west",
    "ordersx",
    "log-01",
    "log-001",
    "public.news",
];

/// Lower-case hex SHA-256 of `secret`, computed here from the spec.
fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `[auth]` tables of the test brokers, plus `extra` under `[auth]`.
fn auth_toml(extra: &str) -> String {
    format!(
        r#"
[auth]
{extra}

[[auth.tokens]]
name = "ops"
sha256 = "{}"
produce = ["*"]
consume = ["*"]
admin = true

[[auth.tokens]]
name = "orders-service"
sha256 = "{}"
produce = ["orders", "orders.*"]

[[auth.tokens]]
name = "reader"
sha256 = "{}"
consume = ["orders", "log-??"]

[[auth.tokens]]
name = "janitor"
sha256 = "{}"
admin = true

[[auth.tokens]]
name = "idle"
sha256 = "{}"

[auth.anonymous]
consume = ["public.*"]
"#,
        sha256_hex(OPS),
        sha256_hex(PRODUCER),
        sha256_hex(READER),
        sha256_hex(JANITOR),
        sha256_hex(IDLE),
    )
}

/// A broker loaded from `toml` (through `Config::from_file`, as the binary
/// does), on a fresh data directory.
fn broker_from_toml(toml: &str) -> (TempDir, Broker) {
    let dir = data_dir();
    let path = dir.path().join("netlog.toml");
    std::fs::write(&path, toml).expect("write the config");
    let config = Config {
        data_dir: dir.path().join("data"),
        monitor_interval: Duration::from_millis(50),
        ..Config::from_file(&path).expect("the config loads")
    };
    let broker = spawn_broker_with(config);
    (dir, broker)
}

/// A broker with the test tokens, each of [`TOPICS`] created and holding one
/// message.
async fn secured(extra: &str) -> (TempDir, Broker, Api) {
    let (dir, broker) = broker_from_toml(&auth_toml(extra));
    let api = broker.api();
    for topic in TOPICS {
        let r = send(&api, "POST", &format!("/{topic}"), Some(OPS)).await;
        expect_ok_message(r, 201, "topic created").await;
        let r = send_body(&api, &format!("/{topic}/payload"), Some(OPS), "hello").await;
        expect_json(r, 201).await;
    }
    (dir, broker, api)
}

/// Sends `method path` with an optional bearer secret.
async fn send(api: &Api, method: &str, path: &str, secret: Option<&str>) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = api.http.request(method, api.url(path));
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    req.send().await.expect("request")
}

/// `POST path` with `body` and an optional bearer secret.
async fn send_body(
    api: &Api,
    path: &str,
    secret: Option<&str>,
    body: &'static str,
) -> reqwest::Response {
    let mut req = api.http.post(api.url(path)).body(body);
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    req.send().await.expect("request")
}

/// Asserts a 401 in netlog's shape with `reason` and a Bearer challenge.
async fn expect_401(resp: reqwest::Response, reason: &str) {
    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "WWW-Authenticate names Bearer: {challenge:?}"
    );
    let body = expect_error(resp, 401, "unauthorized").await;
    assert_eq!(body["reason"], Value::from(reason), "{body}");
}

/// Asserts a 403 in netlog's shape with `reason`.
async fn expect_403(resp: reqwest::Response, reason: &str) {
    let body = expect_error(resp, 403, "forbidden").await;
    assert_eq!(body["reason"], Value::from(reason), "{body}");
}

/// The latest offset of `topic`, read as `ops`.
async fn latest(api: &Api, topic: &str) -> Value {
    let info = expect_json(send(api, "GET", &format!("/{topic}"), Some(OPS)).await, 200).await;
    info["latest_offset"].clone()
}

/// Requests without a token are refused with 401, a Bearer challenge and a
/// reason, on every kind of route, and change nothing.
#[tokio::test]
async fn missing_token_is_401() {
    let (_dir, broker, api) = secured("").await;
    let before = latest(&api, "orders").await;
    let anon = "no token given, and anonymous callers may not";
    let cases = [
        (
            "POST",
            "/orders/payload",
            format!("{anon} produce to orders"),
        ),
        (
            "POST",
            "/orders/messages",
            format!("{anon} produce to orders"),
        ),
        (
            "GET",
            "/orders/payload/0",
            format!("{anon} consume from orders"),
        ),
        ("GET", "/orders", format!("{anon} consume from orders")),
        (
            "POST",
            "/orders/scanner",
            format!("{anon} consume from orders"),
        ),
        (
            "GET",
            "/orders/stream",
            format!("{anon} consume from orders"),
        ),
        ("DELETE", "/orders", format!("{anon} delete topic orders")),
        (
            "POST",
            "/brand-new",
            format!("{anon} create topic brand-new"),
        ),
        ("GET", "/orders/check", format!("{anon} check topic orders")),
        ("GET", "/orders/sync", format!("{anon} sync topic orders")),
    ];
    for (method, path, reason) in cases {
        expect_401(send(&api, method, path, None).await, &reason).await;
    }
    assert_eq!(latest(&api, "orders").await, before, "nothing was written");
    let names = expect_json(send(&api, "GET", "/", Some(OPS)).await, 200).await;
    assert!(!names.to_string().contains("brand-new"), "{names}");
    broker.stop().await;
}

/// Unknown secrets and malformed headers are 401s, and write nothing.
#[tokio::test]
async fn wrong_token_is_401() {
    let (_dir, broker, api) = secured("").await;
    let before = latest(&api, "orders").await;
    for secret in ["nope", &OPS[1..], &format!("{OPS}x"), &OPS.to_uppercase()] {
        let r = send_body(&api, "/orders/payload", Some(secret), "x").await;
        expect_401(r, "unknown token").await;
    }
    for value in ["Basic b3BzOm9wcw==", "Bearer", OPS, &format!("Token {OPS}")] {
        let r = api
            .http
            .delete(api.url("/orders"))
            .header("authorization", value)
            .send()
            .await
            .expect("request");
        expect_401(r, "the Authorization header is not \"Bearer <token>\"").await;
    }
    assert_eq!(latest(&api, "orders").await, before, "nothing was written");
    // The scheme is case-insensitive.
    let r = api
        .http
        .get(api.url("/orders"))
        .header("authorization", format!("bearer {OPS}"))
        .send()
        .await
        .expect("request");
    expect_json(r, 200).await;
    broker.stop().await;
}

/// A producer token publishes, but cannot read, open scanners, stream,
/// create or delete: 403s that name the token and what it may not do.
#[tokio::test]
async fn producer_cannot_consume_or_delete() {
    let (_dir, broker, api) = secured("").await;
    let r = send_body(&api, "/orders/payload", Some(PRODUCER), "order 1").await;
    assert_eq!(expect_json(r, 201).await, json!({"offset": 1}));
    let cases = [
        (
            "GET",
            "/orders/payload/0",
            "orders-service may not consume from orders",
        ),
        (
            "GET",
            "/orders",
            "orders-service may not consume from orders",
        ),
        (
            "POST",
            "/orders/scanner",
            "orders-service may not consume from orders",
        ),
        (
            "GET",
            "/orders/scan?id=00000000-0000-0000-0000-000000000000",
            "orders-service may not consume from orders",
        ),
        (
            "GET",
            "/orders/stream",
            "orders-service may not consume from orders",
        ),
        (
            "DELETE",
            "/orders",
            "orders-service may not delete topic orders",
        ),
        (
            "DELETE",
            "/orders?force=true",
            "orders-service may not delete topic orders",
        ),
        (
            "POST",
            "/orders.new",
            "orders-service may not create topic orders.new",
        ),
        (
            "GET",
            "/orders/check",
            "orders-service may not check topic orders",
        ),
    ];
    for (method, path, reason) in cases {
        expect_403(send(&api, method, path, Some(PRODUCER)).await, reason).await;
    }
    // The topic is still there, with both messages.
    assert_eq!(latest(&api, "orders").await, json!(1));
    broker.stop().await;
}

/// Globs: `orders.*` covers every name under `orders.` (dots included) but
/// not `orders` itself nor `ordersx`; `log-??` exactly two characters.
#[tokio::test]
async fn globs_work() {
    let (_dir, broker, api) = secured("").await;
    for topic in ["orders", "orders.eu", "orders.eu.west"] {
        let r = send_body(&api, &format!("/{topic}/payload"), Some(PRODUCER), "x").await;
        expect_json(r, 201).await;
    }
    let r = api
        .http
        .post(api.url("/orders.eu/messages"))
        .bearer_auth(PRODUCER)
        .header("content-type", "application/x-ndjson")
        .body("{\"a\":1}\n{\"a\":2}\n")
        .send()
        .await
        .expect("batch publish");
    expect_json(r, 201).await;
    let r = send_body(&api, "/ordersx/payload", Some(PRODUCER), "x").await;
    expect_403(r, "orders-service may not produce to ordersx").await;
    let r = send_body(&api, "/log-01/payload", Some(PRODUCER), "x").await;
    expect_403(r, "orders-service may not produce to log-01").await;

    let (_, payload) =
        expect_message(send(&api, "GET", "/log-01/payload/0", Some(READER)).await).await;
    assert_eq!(payload, b"hello");
    expect_message(send(&api, "GET", "/orders/payload/0", Some(READER)).await).await;
    let r = send(&api, "GET", "/log-001/payload/0", Some(READER)).await;
    expect_403(r, "reader may not consume from log-001").await;
    let r = send(&api, "GET", "/orders.eu/payload/0", Some(READER)).await;
    expect_403(r, "reader may not consume from orders.eu").await;
    // A percent-encoded name is checked as the name it decodes to.
    let r = send(&api, "GET", "/%6Frders.eu/payload/0", Some(READER)).await;
    expect_403(r, "reader may not consume from orders.eu").await;
    broker.stop().await;
}

/// `GET /` lists only the topics the caller may produce to or consume from
/// (its own rights plus the anonymous ones); callers with no right get 401.
#[tokio::test]
async fn topic_list_is_filtered() {
    let (_dir, broker, api) = secured("").await;
    let list = |secret: Option<&'static str>| {
        let api = api.clone();
        async move { expect_json(send(&api, "GET", "/", secret).await, 200).await }
    };
    let mut all = TOPICS.to_vec();
    all.sort();
    assert_eq!(list(Some(OPS)).await, json!(all));
    assert_eq!(
        list(Some(PRODUCER)).await,
        json!(["orders", "orders.eu", "orders.eu.west", "public.news"])
    );
    assert_eq!(
        list(Some(READER)).await,
        json!(["log-01", "orders", "public.news"])
    );
    assert_eq!(list(Some(JANITOR)).await, json!(["public.news"]));
    assert_eq!(list(Some(IDLE)).await, json!(["public.news"]));
    assert_eq!(list(None).await, json!(["public.news"]));
    expect_401(send(&api, "GET", "/", Some("nope")).await, "unknown token").await;
    // HEAD answers as GET does, without a body.
    let head = send(&api, "HEAD", "/", Some(READER)).await;
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.expect("no body").is_empty());
    broker.stop().await;

    // Without anonymous rights, an anonymous list is a 401 and a token
    // without rights sees nothing.
    let toml = auth_toml("").replace("[auth.anonymous]\nconsume = [\"public.*\"]\n", "");
    let (_dir, broker) = broker_from_toml(&toml);
    let api = broker.api();
    expect_401(
        send(&api, "GET", "/", None).await,
        "no token given, and anonymous callers may not list topics",
    )
    .await;
    assert_eq!(
        expect_json(send(&api, "GET", "/", Some(IDLE)).await, 200).await,
        json!([])
    );
    broker.stop().await;
}

/// `[auth.anonymous]` rights work without a header, and only those: reading
/// `public.*` is open, publishing there or reading elsewhere is a 401.
#[tokio::test]
async fn anonymous_rights_work() {
    let (_dir, broker, api) = secured("").await;
    let (offset, payload) =
        expect_message(send(&api, "GET", "/public.news/payload/0", None).await).await;
    assert_eq!((offset, payload.as_slice()), (0, &b"hello"[..]));
    let r = send(&api, "POST", "/public.news/scanner?from=0", None).await;
    let id = expect_json(r, 201).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = send(
        &api,
        "GET",
        &format!("/public.news/scan?id={id}&wait=5ms"),
        None,
    )
    .await;
    assert_eq!(expect_message(r).await.1, b"hello");
    expect_json(send(&api, "GET", "/public.news", None).await, 200).await;

    let r = send_body(&api, "/public.news/payload", None, "spam").await;
    expect_401(
        r,
        "no token given, and anonymous callers may not produce to public.news",
    )
    .await;
    let r = send(&api, "DELETE", "/public.news", None).await;
    expect_401(
        r,
        "no token given, and anonymous callers may not delete topic public.news",
    )
    .await;
    let r = send(&api, "GET", "/orders/payload/0", None).await;
    expect_401(
        r,
        "no token given, and anonymous callers may not consume from orders",
    )
    .await;
    // A token holder may do what anyone may.
    expect_message(send(&api, "GET", "/public.news/payload/0", Some(PRODUCER)).await).await;
    // A wrong token is not downgraded to anonymous.
    let r = send(&api, "GET", "/public.news/payload/0", Some("nope")).await;
    expect_401(r, "unknown token").await;
    broker.stop().await;
}

/// `/_health` and `/_ready` answer without a token, even with a wrong one.
#[tokio::test]
async fn health_needs_no_token() {
    let (_dir, broker, api) = secured("").await;
    for secret in [None, Some("nope"), Some(IDLE)] {
        let r = send(&api, "GET", "/_health", secret).await;
        expect_ok_message(r, 200, "alive").await;
        let r = send(&api, "GET", "/_ready", secret).await;
        expect_ok_message(r, 200, "ready").await;
    }
    broker.stop().await;
}

/// `/_metrics` needs `admin`; with `public_metrics = true` it needs nothing,
/// while other admin routes still do.
#[tokio::test]
async fn metrics_need_admin_unless_public() {
    let (_dir, broker, api) = secured("").await;
    expect_401(
        send(&api, "GET", "/_metrics", None).await,
        "no token given, and anonymous callers may not read metrics",
    )
    .await;
    expect_401(
        send(&api, "GET", "/_metrics", Some("nope")).await,
        "unknown token",
    )
    .await;
    let r = send(&api, "GET", "/_metrics", Some(PRODUCER)).await;
    expect_403(r, "orders-service may not read metrics").await;
    for admin in [OPS, JANITOR] {
        let r = send(&api, "GET", "/_metrics", Some(admin)).await;
        assert_eq!(r.status(), 200);
        assert!(content_type(&r).starts_with("text/plain"));
    }
    broker.stop().await;

    let (_dir, broker, api) = secured("public_metrics = true").await;
    let r = send(&api, "GET", "/_metrics", None).await;
    assert_eq!(r.status(), 200);
    let r = send(&api, "DELETE", "/orders", None).await;
    expect_401(
        r,
        "no token given, and anonymous callers may not delete topic orders",
    )
    .await;
    broker.stop().await;
}

/// `admin` manages topics (create, check, sync, delete) but does not imply
/// producing or consuming.
#[tokio::test]
async fn admin_manages_topics_without_data_rights() {
    let (_dir, broker, api) = secured("").await;
    let r = send(&api, "POST", "/scratch", Some(JANITOR)).await;
    expect_ok_message(r, 201, "topic created").await;
    let r = send(&api, "GET", "/orders/check", Some(JANITOR)).await;
    expect_ok_message(r, 200, "topic healthy").await;
    let r = send(&api, "GET", "/orders/sync", Some(JANITOR)).await;
    assert_eq!(r.status(), 200);
    let r = send_body(&api, "/scratch/payload", Some(JANITOR), "x").await;
    expect_403(r, "janitor may not produce to scratch").await;
    let r = send(&api, "GET", "/orders/payload/0", Some(JANITOR)).await;
    expect_403(r, "janitor may not consume from orders").await;
    let r = send(&api, "DELETE", "/scratch", Some(JANITOR)).await;
    expect_ok_message(r, 200, "topic deleted").await;
    broker.stop().await;
}

/// Paths no route matches stay 404 (or 405) whatever the token: the check
/// runs on routed requests only and reveals nothing about rights there.
#[tokio::test]
async fn unrouted_paths_stay_404() {
    let (_dir, broker, api) = secured("").await;
    expect_error(
        send(&api, "GET", "/orders/nope", None).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        send(&api, "GET", "/a/b/c/d", Some("nope")).await,
        404,
        "not found",
    )
    .await;
    // A method a route does not answer is a 405 for anyone, even a caller
    // without a right on that route.
    for secret in [None, Some(READER)] {
        expect_error(
            send(&api, "PUT", "/orders", secret).await,
            405,
            "method not allowed",
        )
        .await;
        expect_error(
            send(&api, "GET", "/orders/payload", secret).await,
            405,
            "method not allowed",
        )
        .await;
    }
    broker.stop().await;
}

/// The admin listener (`[server] admin_listen`) serves the four conventional
/// paths under the same rights as the main one: `/health` and `/ready` for
/// anyone, `/metrics` and `/reload` for `admin` tokens only; a reload there
/// is a real reload.
#[tokio::test]
async fn admin_listener_applies_the_same_rights() {
    let dir = data_dir();
    let path = dir.path().join("netlog.toml");
    // Everything in the file, so that the reload reads the same settings;
    // the admin listener binds port 0 and its address is read back from the
    // broker's log.
    let server = format!(
        "[server]\ndata_dir = {:?}\nadmin_listen = \"127.0.0.1:0\"\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&path, format!("{server}{}", auth_toml(""))).expect("write the config");
    let mut broker = Launch::new().arg("--config").arg(&path).start().await;
    // The main listener answers once the broker runs, and the admin one is
    // bound by then.
    let r = send(&broker.api(), "GET", "/_health", None).await;
    assert_eq!(r.status(), 200);
    let admin_addr = broker.admin_addr().expect("the admin listener's address");
    assert_ne!(admin_addr, broker.addr());
    let admin = Api::new(&format!("http://{admin_addr}"));
    for open in ["/health", "/ready"] {
        assert_eq!(
            send(&admin, "GET", open, None).await.status(),
            200,
            "{open}"
        );
    }
    expect_401(
        send(&admin, "GET", "/metrics", None).await,
        "no token given, and anonymous callers may not read metrics",
    )
    .await;
    expect_403(
        send(&admin, "GET", "/metrics", Some(PRODUCER)).await,
        "orders-service may not read metrics",
    )
    .await;
    let r = send(&admin, "GET", "/metrics", Some(JANITOR)).await;
    assert_eq!(r.status(), 200);
    expect_401(
        send(&admin, "POST", "/reload", None).await,
        "no token given, and anonymous callers may not reload the config",
    )
    .await;
    expect_403(
        send(&admin, "POST", "/reload", Some(READER)).await,
        "reader may not reload the config",
    )
    .await;
    // The reload takes effect: a token added to the file works afterwards.
    let added = "added-secret-5e2b90c7d4a1";
    let more = format!(
        "{server}{}\n[[auth.tokens]]\nname = \"added\"\nsha256 = \"{}\"\nadmin = true\n",
        auth_toml(""),
        sha256_hex(added)
    );
    std::fs::write(&path, more).expect("rewrite the config");
    assert_eq!(
        send(&admin, "GET", "/metrics", Some(added)).await.status(),
        401,
        "not before the reload"
    );
    let r = send(&admin, "POST", "/reload", Some(OPS)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(
        send(&admin, "GET", "/metrics", Some(added)).await.status(),
        200
    );
    assert_eq!(
        send(&broker.api(), "GET", "/_metrics", Some(added))
            .await
            .status(),
        200,
        "the main listener sees the same rights"
    );
    broker.terminate().await;
}

/// Without a declared token nothing is checked: netlog clients work as before,
/// and a stray Authorization header is ignored.
#[tokio::test]
async fn auth_is_off_without_tokens() {
    let (_dir, broker) = broker_from_toml("[auth]\npublic_metrics = false\n");
    let api = broker.api();
    api.create_topic("open").await;
    assert_eq!(api.publish("open", "x").await, 0);
    let r = send(&api, "GET", "/open/payload/0", Some("whatever")).await;
    expect_message(r).await;
    assert_eq!(send(&api, "GET", "/_metrics", None).await.status(), 200);
    assert_eq!(expect_json(api.get("/").await, 200).await, json!(["open"]));
    expect_ok_message(api.delete("/open").await, 200, "topic deleted").await;
    broker.stop().await;
}

/// Runs `netlog args` with `stdin` as its standard input.
fn netlog_with_stdin(args: &[&str], stdin: &[u8]) -> Finished {
    run_netlog_fed(args, Some(stdin))
}

/// `netlog token hash` prints the hex SHA-256 of the secret on stdin, one
/// trailing newline dropped.
#[test]
fn token_hash_prints_the_sha256_of_stdin() {
    let sha_test = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for input in [&b"test\n"[..], b"test", b"test\r\n"] {
        let out = netlog_with_stdin(&["token", "hash"], input);
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(out.stdout, format!("{sha_test}\n"));
    }
    let out = netlog_with_stdin(&["token", "hash"], OPS.as_bytes());
    assert_eq!(out.stdout.trim(), sha256_hex(OPS));
    assert!(
        out.stderr.is_empty(),
        "no warning for a long secret: {}",
        out.stderr
    );
}

/// `netlog token hash` refuses an empty secret and one unfit for a header.
#[test]
fn token_hash_refuses_unfit_secrets() {
    for (input, why) in [
        (&b""[..], "no secret"),
        (b"\n", "no secret"),
        (b"two words", "space"),
    ] {
        let out = netlog_with_stdin(&["token", "hash"], input);
        assert!(!out.status.success(), "{input:?} is refused");
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(out.stderr.contains(why), "{why:?} in {}", out.stderr);
    }
}

/// `netlog token new` prints a fresh 32-byte secret, its hash and a snippet
/// that, pasted into a config, makes a broker accept that secret.
#[tokio::test]
async fn token_new_makes_a_working_token() {
    let out = netlog_with_stdin(&["token", "new", "--name", "made-by-cli"], b"");
    assert!(out.status.success(), "{}", out.stderr);
    let field = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {}", out.stdout))
            .trim()
            .to_string()
    };
    let (secret, hash) = (field("secret:"), field("sha256:"));
    assert!(secret.len() >= 43, "32 bytes base64url-encoded: {secret}");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(hash, sha256_hex(&secret));
    let hashed = netlog_with_stdin(&["token", "hash"], format!("{secret}\n").as_bytes());
    assert_eq!(hashed.stdout.trim(), hash);

    let again = netlog_with_stdin(&["token", "new"], b"");
    assert!(!again.stdout.contains(&secret), "every secret is fresh");

    let snippet = &out.stdout[out.stdout.find("[[auth.tokens]]").expect("snippet")..];
    assert!(snippet.contains("name = \"made-by-cli\""), "{snippet}");
    let (_dir, broker) = broker_from_toml(&snippet.replace("admin = false", "admin = true"));
    let api = broker.api();
    let r = send(&api, "GET", "/_metrics", Some(&secret)).await;
    assert_eq!(r.status(), 200);
    expect_401(
        send(&api, "GET", "/_metrics", Some(&hash)).await,
        "unknown token",
    )
    .await;
    broker.stop().await;

    let refused = netlog_with_stdin(&["token", "new", "--name", "has space"], b"");
    assert!(
        !refused.status.success() && refused.stderr.contains("--name"),
        "{}",
        refused.stderr
    );
}

/// A config with a malformed hash does not load; the error names the file,
/// the token and the key.
#[test]
fn bad_auth_config_is_refused_with_its_place() {
    let dir = data_dir();
    let path = dir.path().join("netlog.toml");
    std::fs::write(&path, "[[auth.tokens]]\nname = \"x\"\nsha256 = \"abc\"\n").expect("write");
    let err = Config::from_file(&path).expect_err("refused").to_string();
    for part in [
        &path.display().to_string(),
        "[[auth.tokens]] #1 (\"x\") sha256",
        "64 hex",
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
}
