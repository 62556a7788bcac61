//! Byte encodings the broker writes into answers, logs and file names: the
//! one copy of each.
//!
//! Lower-case hex (digests in config and cache file names, binary payloads
//! on a stream) is a table lookup per byte into the caller's buffer, with no
//! formatting machinery; standard base64 with padding (batch scans' binary
//! messages) is the `base64` crate's, written straight into the answer.

use base64::Engine as _;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lower-case hex of `bytes` to `out`.
pub(crate) fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 15)]);
    }
}

/// The lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    hex_into(&mut out, bytes);
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends standard base64 with padding (RFC 4648, section 4) of `bytes`
/// to `out`.
pub(crate) fn base64_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let engine = base64::engine::general_purpose::STANDARD;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    // The room is exactly the padded length, so this cannot fail.
    let written = engine.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 4648 test vectors, and hex of every byte value.
    #[test]
    fn encodings_match_their_specs() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = b"x".to_vec();
            base64_into(&mut out, plain.as_bytes());
            assert_eq!(out, format!("x{coded}").as_bytes(), "{plain:?}");
        }
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), want);
    }
}
