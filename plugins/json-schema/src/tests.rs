use super::*;

fn rules(config: &str) -> Rules {
    Rules::from_json(config).unwrap_or_else(|e| panic!("{config}: {e}"))
}

fn refused(config: &str) -> String {
    match Rules::from_json(config) {
        Ok(_) => panic!("{config} was accepted"),
        Err(e) => e,
    }
}

fn header(name: &str, value: &str) -> Vec<(String, Vec<u8>)> {
    vec![(name.to_owned(), value.as_bytes().to_vec())]
}

const ORDER: &str = r##"{"schema": {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
    },
    "$defs": {"item": {"type": "object", "properties": {"price": {"minimum": 0}}}}
}}"##;

/// A document that fits the schema is accepted; one that does not is
/// rejected naming the JSON pointer, the keyword and what it says.
#[test]
fn rejects_name_pointer_and_keyword() {
    let rules = rules(ORDER);
    assert_eq!(
        rules.judge(br#"{"id": 1, "items": [{"price": 3}]}"#, &[]),
        Ok(())
    );
    assert_eq!(
        rules.judge(br#"{"id": 1, "items": [{"price": 3}, {"price": -1}]}"#, &[]),
        Err(r#"at "/items/1/price": minimum: value is less than the minimum of 0"#.to_owned())
    );
    let missing = rules.judge(br#"{"items": []}"#, &[]).unwrap_err();
    assert!(missing.starts_with(r#"at "": required: "#), "{missing}");
    assert!(missing.contains("\"id\""), "{missing}");
    let typed = rules.judge(br#"{"id": "secret-value"}"#, &[]).unwrap_err();
    assert!(typed.starts_with(r#"at "/id": type: "#), "{typed}");
    assert!(
        !typed.contains("secret-value"),
        "values are masked: {typed}"
    );
}

/// Text that is not JSON is rejected with its position; nesting deeper
/// than the parser's limit is rejected the same way, not followed.
#[test]
fn invalid_json_is_rejected_with_its_position() {
    let rules = rules(ORDER);
    assert_eq!(
        rules.judge(br#"{"id": }"#, &[]),
        Err("invalid JSON at line 1 column 8: expected value".to_owned())
    );
    assert!(
        rules
            .judge(b"\xff", &[])
            .unwrap_err()
            .starts_with("invalid JSON"),
        "not UTF-8"
    );
    let deep = "[".repeat(100_000);
    let reason = rules.judge(deep.as_bytes(), &[]).unwrap_err();
    assert!(reason.contains("recursion limit exceeded"), "{reason}");
}

/// A message over `max_size` is rejected before it is parsed.
#[test]
fn max_size_is_checked_first() {
    let rules = rules(r#"{"schema": true, "max_size": 16}"#);
    assert_eq!(rules.judge(b"[1, 2, 3]", &[]), Ok(()));
    assert_eq!(
        rules.judge(b"[1, 2, 3, 4, 5, 6, 7]", &[]),
        Err("message is 21 bytes, over max_size 16".to_owned())
    );
}

/// A schema may be given as JSON text, and may declare draft 2020-12
/// (whose meta-schema is built in, not fetched).
#[test]
fn schema_as_text_and_declared_draft() {
    let rules = rules(
        r#"{"schema": "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"type\": \"string\"}"}"#,
    );
    assert_eq!(rules.judge(br#""text""#, &[]), Ok(()));
    assert!(rules.judge(b"1", &[]).unwrap_err().contains("type"));
}

const BY_HEADER: &str = r#"{
    "header": "Schema",
    "schemas": {
        "order-v1": {"type": "object", "required": ["id"]},
        "order-v2": {"type": "object", "required": ["id", "total"]}
    }
}"#;

/// The header picks the schema; the reason names the schema it used.
#[test]
fn header_picks_the_schema() {
    let rules = rules(BY_HEADER);
    let doc = br#"{"id": 1}"#;
    assert_eq!(rules.judge(doc, &header("schema", "order-v1")), Ok(()));
    let reason = rules.judge(doc, &header("schema", "order-v2")).unwrap_err();
    assert!(
        reason.starts_with(r#"schema "order-v2": at "": required: "#),
        "{reason}"
    );
    assert!(reason.contains("total"), "{reason}");
}

/// An unknown schema name, a missing header without default, and a value
/// that is not UTF-8 are rejected, saying so.
#[test]
fn header_problems_are_rejected() {
    let rules = rules(BY_HEADER);
    let doc = br#"{"id": 1, "total": 2}"#;
    assert_eq!(
        rules.judge(doc, &header("schema", "order-v9")),
        Err(
            r#"header "schema" names no schema: "order-v9" (known: order-v1, order-v2)"#.to_owned()
        )
    );
    assert_eq!(
        rules.judge(doc, &header("other", "order-v1")),
        Err(r#"no "schema" header and no default schema"#.to_owned())
    );
    let bad = vec![("schema".to_owned(), vec![0xff])];
    assert_eq!(
        rules.judge(doc, &bad),
        Err(r#"header "schema" is not UTF-8"#.to_owned())
    );
    let long = "x".repeat(10_000);
    let reason = rules.judge(doc, &header("schema", &long)).unwrap_err();
    assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
}

/// With a default, a message without the header is checked against it.
#[test]
fn default_serves_messages_without_the_header() {
    let rules = rules(
        r#"{"header": "schema", "default": "v1",
            "schemas": {"v1": {"required": ["id"]}, "v2": {"required": ["total"]}}}"#,
    );
    assert_eq!(rules.judge(br#"{"id": 1}"#, &[]), Ok(()));
    assert!(rules.judge(br#"{"total": 1}"#, &[]).is_err());
    assert_eq!(
        rules.judge(br#"{"total": 1}"#, &header("schema", "v2")),
        Ok(())
    );
}

/// A schema that does not compile fails `init`, naming the schema and why.
#[test]
fn bad_schemas_are_refused() {
    let err = refused(r#"{"schema": {"type": "strnig"}}"#);
    assert!(err.starts_with("\"schema\" does not compile: "), "{err}");
    let err = refused(r#"{"header": "s", "schemas": {"a": true, "b": {"minimum": "zero"}}}"#);
    assert!(err.starts_with("schema \"b\" does not compile: "), "{err}");
    let err = refused(r##"{"schema": {"$ref": "#/$defs/nowhere"}}"##);
    assert!(err.contains("does not compile"), "{err}");
    let err = refused(r#"{"schema": "{not json"}"#);
    assert!(err.contains("not JSON text"), "{err}");
    let err = refused(r#"{"schema": 3}"#);
    assert!(err.contains("object or a boolean"), "{err}");
    let err = refused(r#"{"schema": {"$schema": "http://json-schema.org/draft-07/schema#"}}"#);
    assert!(err.contains("draft 2020-12"), "{err}");
}

/// A `$ref` to another document is refused at `init` without a fetch,
/// naming the URI.
#[test]
fn remote_refs_are_not_fetched() {
    for uri in [
        "https://example.com/order.json",
        "http://127.0.0.1:9/x.json",
        "file:///etc/passwd",
    ] {
        let err = refused(&format!(r#"{{"schema": {{"$ref": "{uri}"}}}}"#));
        assert!(err.contains("is not fetched"), "{err}");
        assert!(err.contains(uri), "{err}");
    }
}

/// Config shapes that make no sense are refused, saying what to give.
#[test]
fn config_errors_say_what_to_give() {
    assert!(refused("{}").starts_with("no schema"));
    assert!(refused(r#"{"schema": true, "schemas": {"a": true}}"#).contains("not both"));
    assert!(refused(r#"{"schemas": {"a": true}}"#).contains("needs \"header\""));
    assert!(refused(r#"{"schema": true, "header": "s"}"#).contains("leave them out"));
    assert!(refused(r#"{"header": "s", "schemas": {}}"#).contains("names no schema"));
    assert!(refused(r#"{"header": "s", "schemas": []}"#).contains("must be an object"));
    assert!(refused(r#"{"header": "a b", "schemas": {"a": true}}"#).contains("not a header name"));
    let err = refused(r#"{"header": "s", "default": "c", "schemas": {"a": true}}"#);
    assert!(
        err.contains("\"default\" \"c\" is not in \"schemas\""),
        "{err}"
    );
    assert!(refused(r#"{"schema": true, "bogus": 1}"#).contains("\"bogus\""));
}

/// Long reasons are cut to the bound on a character boundary.
#[test]
fn reasons_are_bounded() {
    let text = "é".repeat(MAX_REASON_BYTES);
    let cut_text = bounded(text);
    assert!(cut_text.len() <= MAX_REASON_BYTES, "{}", cut_text.len());
    assert!(cut_text.ends_with('…'));
    let long_key = "k".repeat(4 * MAX_REASON_BYTES);
    let rules = rules(r#"{"schema": {"additionalProperties": false}}"#);
    let doc = format!(r#"{{"{long_key}": 1}}"#);
    let reason = rules.judge(doc.as_bytes(), &[]).unwrap_err();
    assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
}
