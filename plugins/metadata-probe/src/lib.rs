//! `metadata-probe`: FOR TESTS ONLY. A validator built against
//! `netlog:plugin@0.2.0` that rejects every message with a reason telling
//! what it was shown, so the broker's tests can check that a message's key,
//! headers and timestamp reach a 0.2 validator as the producer sent them.
//!
//! The reason reads `key=<key> timestamp=<ms> headers=[<name>=<value>, ...]
//! value=<value>`, each byte string as lossy UTF-8 and `-` for a key or
//! timestamp the message does not have. It takes no config.

#[cfg(target_arch = "wasm32")]
mod component;

/// The reason given for a message with these parts.
pub fn describe(
    value: &[u8],
    key: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    timestamp: Option<i64>,
) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let key = key.map_or_else(|| "-".to_owned(), text);
    let timestamp = timestamp.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let headers: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}={}", text(value)))
        .collect();
    format!(
        "key={key} timestamp={timestamp} headers=[{}] value={}",
        headers.join(", "),
        text(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part is shown; missing ones as `-`.
    #[test]
    fn describes_every_part() {
        let headers = vec![("trace-id".to_owned(), b"t1".to_vec())];
        assert_eq!(
            describe(b"v", Some(b"k"), &headers, Some(7)),
            "key=k timestamp=7 headers=[trace-id=t1] value=v"
        );
        assert_eq!(
            describe(b"", None, &[], None),
            "key=- timestamp=- headers=[] value="
        );
    }
}
