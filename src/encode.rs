//! Byte encodings the broker writes into answers, logs and file names: the
//! one copy of each.
//!
//! Lower-case hex (digests in config and cache file names, binary payloads
//! on a stream) is a table lookup per byte into the caller's buffer, with no
//! formatting machinery; standard base64 with padding (batch scans' binary
//! messages) is the `base64` crate's, written straight into the answer.
//! The `<pct>` encoding of v1 keys and header values over HTTP: a request
//! may write bytes 0x20-0x7E as they are (but `%`) and `%XX` for any byte;
//! an answer escapes every byte outside 0x21-0x7E, and `%`, so a value with
//! spaces, CR, LF or NUL round-trips through an HTTP header unharmed.

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

/// Appends the `<pct>` encoding of `bytes` (see the module docs) to `out`.
pub(crate) fn pct_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(
                HEX_DIGITS[usize::from(b >> 4)].to_ascii_uppercase(),
            ));
            out.push(char::from(
                HEX_DIGITS[usize::from(b & 15)].to_ascii_uppercase(),
            ));
        }
    }
}

/// Decodes `<pct>` text (see the module docs); the error says what is
/// wrong and where.
pub(crate) fn pct_decode(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'%' => {
                let hex = |at: usize| {
                    text.get(at)
                        .and_then(|&c| char::from(c).to_digit(16))
                        .map(|d| d as u8)
                };
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(format!("byte {i}: % is not followed by two hex digits"));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b @ 0x20..=0x7e => {
                out.push(b);
                i += 1;
            }
            b => return Err(format!("byte {i} ({b:#04x}) must be written as %XX")),
        }
    }
    Ok(out)
}

/// Decodes standard base64 with padding.
pub(crate) fn base64_decode(text: &[u8]) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())
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

    /// `%25`, CR, LF and NUL round-trip; `%2` and `%zz` are refused.
    #[test]
    fn pct_roundtrip_and_refusals() {
        let bytes = b"a%b\r\n\0 c\xff";
        let mut text = String::new();
        pct_into(&mut text, bytes);
        assert_eq!(text, "a%25b%0D%0A%00%20c%FF");
        assert_eq!(pct_decode(text.as_bytes()).unwrap(), bytes);
        assert_eq!(pct_decode(b"x y%25").unwrap(), b"x y%");
        assert!(pct_decode(b"%2").is_err());
        assert!(pct_decode(b"%zz").is_err());
        assert!(pct_decode(b"\t").is_err());
    }
}
