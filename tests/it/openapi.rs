//! `docs/openapi.yaml` against the code: the file is structurally OpenAPI 3.1
//! (version, info, paths, responses on every operation, path parameters
//! declared, unique operation ids, every `$ref` resolving), every route the
//! router serves is described in it, and every route it describes is served.
//!
//! The routes served are the broker's route table (`netlog::route_table`,
//! from which its routers are built), so adding a route without describing
//! it fails here; a live broker confirms that every route of the table and
//! of the document is really served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::*;
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Routes described ahead of the branches that serve them (issue 12's
/// operator routes). They are allowed to be missing from the router; once
/// served, they are checked like every other route.
const DESCRIBED_AHEAD: &[&str] = &["/_health", "/_ready", "/_metrics", "/_reload"];

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Parses YAML text into JSON values (mapping keys become strings, so a
/// status code `200:` is the key `"200"`). Anchors and aliases are refused:
/// the document does not need them.
fn yaml_to_json(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let [doc] = docs.as_slice() else {
        return Err(format!("{} YAML documents, want 1", docs.len()));
    };
    convert(doc)
}

fn convert(y: &Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("number {r} is not finite"))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(convert).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut map = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("mapping key {other:?} is not a scalar")),
                };
                if map.insert(key.clone(), convert(v)?).is_some() {
                    return Err(format!("duplicate key {key:?}"));
                }
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not used in this document".into()),
        Yaml::BadValue => return Err("a bad YAML value".into()),
    })
}

/// Every structural problem of `doc` as an OpenAPI 3.1 document; empty when
/// it is valid.
fn openapi_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);
    match doc["openapi"].as_str() {
        Some(v) if v.starts_with("3.1.") => {}
        other => bad(format!("openapi is {other:?}, want 3.1.x")),
    }
    for key in ["title", "version"] {
        if !doc["info"][key].is_string() {
            bad(format!("info.{key} is missing or not a string"));
        }
    }
    let Some(paths) = doc["paths"].as_object() else {
        bad("paths is missing or not an object".into());
        return problems;
    };
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        if !path.starts_with('/') {
            bad(format!("path {path:?} does not start with /"));
        }
        let Some(item) = item.as_object() else {
            bad(format!("{path}: not an object"));
            continue;
        };
        let templated: BTreeSet<String> = path_params(path);
        let shared = item.get("parameters");
        for (method, op) in item {
            if matches!(
                method.as_str(),
                "parameters" | "summary" | "description" | "servers"
            ) {
                continue;
            }
            let here = format!("{} {path}", method.to_uppercase());
            if !METHODS.contains(&method.as_str()) {
                bad(format!("{path}: {method:?} is not an HTTP method"));
                continue;
            }
            match op["operationId"].as_str() {
                Some(id) if !operation_ids.insert(id.to_string()) => {
                    bad(format!("{here}: operationId {id} is used twice"))
                }
                _ => {}
            }
            match op["responses"].as_object() {
                Some(r) if !r.is_empty() => {
                    for code in r.keys() {
                        if !is_status_key(code) {
                            bad(format!("{here}: response key {code:?} is not a status"));
                        }
                    }
                }
                _ => bad(format!("{here}: no responses")),
            }
            let declared: BTreeSet<String> = [shared, op.get("parameters")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .flatten()
                .map(|p| resolve(doc, p))
                .filter(|p| p["in"] == "path")
                .inspect(|p| {
                    if p["required"] != true {
                        bad(format!(
                            "{here}: path parameter {} is not required",
                            p["name"]
                        ));
                    }
                })
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            if declared != templated {
                bad(format!(
                    "{here}: path parameters declared {declared:?}, template has {templated:?}"
                ));
            }
        }
    }
    check_refs(doc, doc, "#", &mut problems);
    problems
}

fn is_status_key(code: &str) -> bool {
    let b = code.as_bytes();
    code == "default"
        || (b.len() == 3
            && (b'1'..=b'5').contains(&b[0])
            && (b[1..].iter().all(u8::is_ascii_digit) || &b[1..] == b"XX"))
}

/// The `{name}` parts of a path template.
fn path_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// Follows `$ref` (local JSON pointers only) until a value without one.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => match doc.pointer(pointer) {
                Some(target) => v = target,
                None => return &Value::Null,
            },
            None => return v,
        }
    }
    &Value::Null
}

/// Reports every `$ref` under `v` that is not a local pointer to a value.
fn check_refs(doc: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref") {
                let target = r
                    .as_str()
                    .and_then(|r| r.strip_prefix('#'))
                    .and_then(|p| doc.pointer(p));
                if target.is_none() {
                    problems.push(format!("{at}: $ref {r} does not resolve"));
                }
            }
            for (k, child) in map {
                check_refs(doc, child, &format!("{at}/{k}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_refs(doc, child, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// The (path, method) pairs `doc` describes.
fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if METHODS.contains(&method.as_str()) {
                out.insert((path.clone(), method.clone()));
            }
        }
    }
    out
}

/// The (path, method) pairs of the broker's route table, both listeners.
fn served_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (pattern, methods, _listener) in netlog::route_table() {
        for method in methods {
            out.insert((pattern.to_string(), method.as_str().to_lowercase()));
        }
    }
    out
}

fn load_openapi() -> Value {
    yaml_to_json(&repo_file("docs/openapi.yaml")).expect("docs/openapi.yaml parses")
}

/// docs/openapi.yaml is well-formed YAML and structurally OpenAPI 3.1.
#[test]
fn openapi_file_is_valid_openapi_3_1() {
    let doc = load_openapi();
    let problems = openapi_problems(&doc);
    assert!(
        problems.is_empty(),
        "docs/openapi.yaml:\n{}",
        problems.join("\n")
    );
    assert!(
        described(&doc).len() >= 15,
        "the document describes the whole API"
    );
}

/// The validator itself finds what it claims to check: a broken document
/// yields one problem per defect.
#[test]
fn validator_rejects_broken_documents() {
    let broken = yaml_to_json(
        r##"
openapi: 3.0.3
info: { title: x }
paths:
  /{topic}:
    get:
      operationId: a
      responses: {}
    post:
      operationId: a
      responses:
        "2000": { $ref: "#/components/responses/Missing" }
  nope:
    delete:
      parameters:
        - { name: topic, in: path }
      responses: { "200": { description: ok } }
"##,
    )
    .expect("the broken document is still YAML");
    let problems = openapi_problems(&broken).join("\n");
    for defect in [
        "openapi is Some(\"3.0.3\")",
        "info.version",
        "GET /{topic}: no responses",
        "operationId a is used twice",
        "\"2000\" is not a status",
        "Missing\" does not resolve",
        "path parameters declared {}, template has {\"topic\"}",
        "\"nope\" does not start with /",
        "path parameter \"topic\" is not required",
    ] {
        assert!(problems.contains(defect), "{defect:?} in:\n{problems}");
    }
    assert!(
        yaml_to_json("a: [1, 2").is_err(),
        "unclosed YAML is refused"
    );
    assert!(
        yaml_to_json("a: 1\na: 2\n").is_err(),
        "duplicate keys are refused"
    );
}

/// The table is read: it holds the routes every netlog user knows.
#[test]
fn the_route_table_is_read() {
    let served = served_routes();
    for (path, method) in [
        ("/{topic}/scan", "get"),
        ("/{topic}/payload", "post"),
        ("/", "get"),
    ] {
        assert!(
            served.contains(&(path.to_string(), method.to_string())),
            "{method} {path} in {served:?}"
        );
    }
}

/// Every (path, method) the router serves is described in docs/openapi.yaml.
#[test]
fn every_served_route_is_described() {
    let described = described(&load_openapi());
    let missing: Vec<_> = served_routes()
        .into_iter()
        .filter(|r| !described.contains(r))
        .map(|(p, m)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/openapi.yaml: {missing:?}"
    );
}

/// A live broker answers every route the document describes and every route
/// the table names (a fallback `not found` or `method not allowed` would
/// mean the document or the table is wrong).
#[tokio::test]
async fn described_and_read_routes_are_served() {
    let dir = data_dir();
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let served = served_routes();
    let mut routes: BTreeMap<(String, String), bool> = described(&load_openapi())
        .into_iter()
        .map(|r| {
            let ahead = DESCRIBED_AHEAD.contains(&r.0.as_str()) && !served.contains(&r);
            (r, ahead)
        })
        .collect();
    for r in served {
        routes.insert(r, false);
    }
    let mut unanswered = Vec::new();
    for (i, ((path, method), ahead)) in routes.into_iter().enumerate() {
        if ahead {
            continue;
        }
        // A topic that does not exist (each route its own, as creating is
        // one of the routes): every topic route answers `topic not found`,
        // which is not the router's fallback.
        let concrete = path
            .replace("{topic}", &format!("no-such-topic-{i}"))
            .replace("{offset}", "0")
            .replace("{file}", "app.js");
        let req = api.http.request(
            method.to_uppercase().parse().expect("an HTTP method"),
            api.url(&concrete),
        );
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
            .await
            .expect("answered in time")
            .expect("a response");
        let status = resp.status().as_u16();
        // Only a 404's body is read: a 200 may be an endless stream.
        let error = if status == 404 {
            let body = resp.bytes().await.unwrap_or_default();
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
        } else {
            None
        };
        if status == 405 || error.as_deref() == Some("netlog: not found") {
            unanswered.push(format!(
                "{} {path}: {status} {error:?}",
                method.to_uppercase()
            ));
        }
    }
    drop(api);
    broker.stop().await;
    assert!(
        unanswered.is_empty(),
        "routes the router does not serve: {unanswered:?}"
    );
}
