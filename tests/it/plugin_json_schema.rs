//! The `json-schema` validator and the `netlog:plugin@0.2.0` validator
//! interface over HTTP: schemas from the plugin config, picked by a message
//! header, what a producer is told when a message fails, what the broker
//! says about a schema it cannot use, and what a 0.2 validator is shown of a
//! v1 message (key, headers, timestamp).

use std::ffi::OsStr;

use netlog::config::PluginDecl;
use serde_json::{Value, json};

use crate::common::*;

const JSON_SCHEMA: &str = "json_schema.wasm";
const METADATA_PROBE: &str = "metadata_probe.wasm";

/// An order: an integer id and items whose price is not negative (through
/// a local `$ref`).
fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
        },
        "$defs": {"item": {"type": "object", "properties": {"price": {"minimum": 0}}}}
    })
}

/// A broker with the json-schema plugin declared as `json-schema`, and
/// topic `topic` validated by it with `config`.
async fn broker_with_topic(dir: &std::path::Path, topic: &str, config: Value) -> (Broker, Api) {
    broker_with_plugin(dir, declare("json-schema", JSON_SCHEMA), topic, config).await
}

async fn broker_with_plugin(
    dir: &std::path::Path,
    plugin: PluginDecl,
    topic: &str,
    config: Value,
) -> (Broker, Api) {
    let name = plugin.name.clone();
    let broker = spawn_broker_with(config_with(dir, vec![plugin]));
    let api = broker.api();
    let hook = json!({"validation": {"plugin": name, "config": config}});
    api.create_topic_with(topic, &hook).await;
    (broker, api)
}

/// The topic's latest offset (-1: nothing written).
async fn latest(api: &Api, topic: &str) -> i64 {
    api.info(topic).await["latest_offset"]
        .as_i64()
        .expect("latest_offset")
}

/// Publishes `body` to `topic` with `headers`, expecting a 422 from the
/// validator; returns the body.
async fn rejected(api: &Api, topic: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut req = api
        .http
        .post(api.url(&format!("/{topic}/payload")))
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = expect_error(req.send().await.unwrap(), 422, "rejected by validator").await;
    assert_eq!(body["plugin"], "json-schema", "{body}");
    body
}

/// Publishes `body` to `topic` with `headers`; must be accepted.
async fn accepted(api: &Api, topic: &str, headers: &[(&str, &str)], body: &str) {
    let mut req = api
        .http
        .post(api.url(&format!("/{topic}/payload")))
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    expect_json(req.send().await.unwrap(), 201).await;
}

/// A document that fits the schema is written; one that does not gets a 422
/// naming the JSON pointer and the keyword that failed, and is not written.
#[tokio::test]
async fn schema_rejects_name_the_pointer_and_keyword() {
    let dir = data_dir();
    let config = json!({ "schema": order_schema() });
    let (broker, api) = broker_with_topic(dir.path(), "orders", config).await;
    accepted(&api, "orders", &[], r#"{"id": 1, "items": [{"price": 3}]}"#).await;
    let body = rejected(
        &api,
        "orders",
        &[],
        r#"{"id": 2, "items": [{"price": 3}, {"price": -1}]}"#,
    )
    .await;
    assert_eq!(
        body["reason"],
        r#"at "/items/1/price": minimum: value is less than the minimum of 0"#
    );
    assert_eq!(body["index"], 0);
    let body = rejected(&api, "orders", &[], r#"{"items": []}"#).await;
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with(r#"at "": required: "#), "{reason}");
    assert_eq!(
        latest(&api, "orders").await,
        0,
        "only the good one is written"
    );
    broker.stop().await;
}

/// A schema given as JSON text in the TOML config works like a table.
#[tokio::test]
async fn schema_may_be_json_text() {
    let dir = data_dir();
    let config = json!({ "schema": order_schema().to_string() });
    let (broker, api) = broker_with_topic(dir.path(), "orders", config).await;
    accepted(&api, "orders", &[], r#"{"id": 1}"#).await;
    rejected(&api, "orders", &[], r#"{"id": "one"}"#).await;
    broker.stop().await;
}

/// Text that is not JSON is rejected with where the parser stopped.
#[tokio::test]
async fn invalid_json_is_rejected() {
    let dir = data_dir();
    let config = json!({ "schema": order_schema() });
    let (broker, api) = broker_with_topic(dir.path(), "orders", config).await;
    let body = rejected(&api, "orders", &[], r#"{"id": }"#).await;
    assert_eq!(
        body["reason"],
        "invalid JSON at line 1 column 8: expected value"
    );
    assert_eq!(latest(&api, "orders").await, -1);
    broker.stop().await;
}

/// One bad message in a batch rejects the whole request, naming its index.
#[tokio::test]
async fn one_bad_message_rejects_the_batch() {
    let dir = data_dir();
    let config = json!({ "schema": order_schema() });
    let (broker, api) = broker_with_topic(dir.path(), "orders", config).await;
    let resp = api
        .publish_ndjson(
            "orders",
            "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3.5}\n{\"id\": 4}",
        )
        .await;
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["index"], 2, "{body}");
    assert_eq!(
        body["reason"],
        r#"at "/id": type: value is not of type "integer""#
    );
    assert_eq!(latest(&api, "orders").await, -1, "nothing of it is written");
    let resp = api
        .publish_ndjson("orders", "{\"id\": 1}\n{\"id\": 2}")
        .await;
    assert_eq!(
        expect_json(resp, 201).await,
        json!({"first_offset": 0, "count": 2})
    );
    broker.stop().await;
}

/// Schemas picked by the `schema` header (no default).
fn by_header() -> Value {
    json!({
        "header": "schema",
        "schemas": {
            "order-v1": {"type": "object", "required": ["id"]},
            "order-v2": {"type": "object", "required": ["id", "total"]}
        }
    })
}

/// The message's header picks its schema; the reason names the schema used.
#[tokio::test]
async fn header_picks_the_schema() {
    let dir = data_dir();
    let (broker, api) = broker_with_topic(dir.path(), "orders", by_header()).await;
    let v1 = [("Netlog-Header-Schema", "order-v1")];
    let v2 = [("Netlog-Header-Schema", "order-v2")];
    accepted(&api, "orders", &v1, r#"{"id": 1}"#).await;
    accepted(&api, "orders", &v2, r#"{"id": 2, "total": 9.5}"#).await;
    let body = rejected(&api, "orders", &v2, r#"{"id": 3}"#).await;
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(r#"schema "order-v2": at "": required: "#),
        "{reason}"
    );
    assert_eq!(latest(&api, "orders").await, 1);
    broker.stop().await;
}

/// A header naming an unknown schema, or none without a default, is
/// rejected saying so; with a default, a message without the header is
/// checked against it.
#[tokio::test]
async fn unknown_or_missing_schema_header() {
    let dir = data_dir();
    let (broker, api) = broker_with_topic(dir.path(), "orders", by_header()).await;
    let body = rejected(
        &api,
        "orders",
        &[("Netlog-Header-Schema", "order-v9")],
        r#"{"id": 1}"#,
    )
    .await;
    assert_eq!(
        body["reason"],
        r#"header "schema" names no schema: "order-v9" (known: order-v1, order-v2)"#
    );
    let body = rejected(&api, "orders", &[], r#"{"id": 1}"#).await;
    assert_eq!(
        body["reason"],
        r#"no "schema" header and no default schema"#
    );
    assert_eq!(latest(&api, "orders").await, -1);

    let mut with_default = by_header();
    with_default["default"] = json!("order-v2");
    let hook = json!({"validation": {"plugin": "json-schema", "config": with_default}});
    api.create_topic_with("defaulted", &hook).await;
    accepted(&api, "defaulted", &[], r#"{"id": 1, "total": 2}"#).await;
    rejected(&api, "defaulted", &[], r#"{"id": 1}"#).await;
    broker.stop().await;
}

/// A 0.2 validator is shown a v1 message's key, headers (in order) and
/// timestamp, and a plain message with none of them; in single and in
/// envelope publishes.
#[tokio::test]
async fn v0_2_validators_see_key_headers_and_timestamp() {
    let dir = data_dir();
    let probe = declare("probe", METADATA_PROBE);
    let (broker, api) = broker_with_plugin(dir.path(), probe, "seen", json!({})).await;
    let resp = api
        .http
        .post(api.url("/seen/payload"))
        .header("Netlog-Key", "order-42")
        .header("Netlog-Header-Trace-Id", "abc123")
        .header("Netlog-Header-Schema", "order-v2")
        .header("Netlog-Timestamp", "1767323045678")
        .body(r#"{"total":9.5}"#)
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(
        body["reason"],
        r#"key=order-42 timestamp=1767323045678 headers=[trace-id=abc123, schema=order-v2] value={"total":9.5}"#
    );
    let body = expect_error(
        api.post("/seen/payload", "plain").await,
        422,
        "rejected by validator",
    )
    .await;
    assert_eq!(body["reason"], "key=- timestamp=- headers=[] value=plain");
    let resp = api
        .http
        .post(api.url("/seen/messages?envelope=true"))
        .header("content-type", "application/x-ndjson")
        .body("{\"message\":\"m\",\"key\":\"k\",\"headers\":{\"h\":\"v\"},\"timestamp\":5}\n")
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 422, "rejected by validator").await;
    assert_eq!(body["reason"], "key=k timestamp=5 headers=[h=v] value=m");
    broker.stop().await;
}

/// The TOML of a broker whose topic `orders` is validated by json-schema
/// with `config` (a TOML inline table).
fn toml_with_config(dir: &std::path::Path, config: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[plugins.json-schema]\npath = {:?}\n\n[topics.orders]\nvalidation = {{ plugin = \"json-schema\", config = {config} }}\n",
        dir.join("data").display().to_string(),
        plugin_path(JSON_SCHEMA).display().to_string(),
    )
}

/// The real binary refuses to start on a schema that does not compile, or
/// on a `$ref` to another document (which it does not fetch), naming the
/// plugin, the topic, the schema and why.
#[test]
fn bad_schemas_stop_the_broker_at_start() {
    let cases = [
        (
            r#"{ schema = { type = "strnig" } }"#,
            vec![
                "json-schema",
                "orders",
                "\"schema\" does not compile",
                "/type",
            ],
        ),
        (
            r#"{ header = "schema", schemas = { a = true, b = { minimum = "zero" } } }"#,
            vec!["json-schema", "orders", r#"schema "b" does not compile"#],
        ),
        (
            r#"{ schema = { "$ref" = "http://127.0.0.1:9/order.json" } }"#,
            vec!["orders", "http://127.0.0.1:9/order.json", "is not fetched"],
        ),
    ];
    for (config, parts) in cases {
        let dir = data_dir();
        let path = dir.path().join("netlog.toml");
        std::fs::write(&path, toml_with_config(dir.path(), config)).unwrap();
        let run = run_netlog([OsStr::new("--config"), path.as_os_str()]);
        assert!(!run.status.success(), "{config}: exit {:?}", run.status);
        for part in parts {
            assert!(run.stderr.contains(part), "{part:?} in: {}", run.stderr);
        }
    }
}

/// A topic created over HTTP with a schema that does not compile is
/// refused with a 400 naming why; the broker goes on serving.
#[tokio::test]
async fn bad_schema_over_http_is_refused() {
    let dir = data_dir();
    let broker = spawn_broker_with(config_with(
        dir.path(),
        vec![declare("json-schema", JSON_SCHEMA)],
    ));
    let api = broker.api();
    for (config, part) in [
        (json!({"schema": {"type": "strnig"}}), "does not compile"),
        (
            json!({"schema": {"$ref": "https://example.com/s.json"}}),
            "https://example.com/s.json is not fetched",
        ),
    ] {
        let hook = json!({"validation": {"plugin": "json-schema", "config": config}});
        let resp = api.post("/orders", hook.to_string()).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert_serving(&api).await;
    broker.stop().await;
}

/// Hostile documents are bounded: nesting past the parser's limit is a 422,
/// and a document too large to parse within the memory limit stops the
/// plugin at that limit (503 naming it, nothing written) without harming
/// the broker or the next publish.
#[tokio::test]
async fn deep_and_huge_documents_are_bounded() {
    let dir = data_dir();
    let mut plugin = declare("json-schema", JSON_SCHEMA);
    plugin.memory_limit = 16 << 20;
    let config = json!({ "schema": {"type": "array"}, "max_size": "32MiB" });
    let (broker, api) = broker_with_plugin(dir.path(), plugin, "docs", config).await;
    let deep = "[".repeat(200_000);
    let body = rejected(&api, "docs", &[], &deep).await;
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("recursion limit exceeded"), "{reason}");
    // About 1.5 million numbers: over 16 MiB once parsed.
    let huge = format!("[{}0]", "0,".repeat(1_500_000));
    let resp = api.post("/docs/payload", huge).await;
    let body = expect_error(resp, 503, "plugin failed").await;
    assert_eq!(body["plugin"], "json-schema");
    assert_eq!(latest(&api, "docs").await, -1, "nothing is written");
    assert_eq!(api.publish("docs", "[1, 2, 3]").await, 0);
    broker.stop().await;
}
