//! `hostile-codec`: FOR TESTS ONLY. A codec that traps or fails one direction
//! on demand, so the broker's handling of codec failures can be tested.
//!
//! In every mode the direction that is not sabotaged works: a set is encoded
//! as the magic byte [`MAGIC`] (`0xEC`) followed by its bytes in reverse order.
//! That is no compression at all, but data written through the codec is easy to
//! tell apart on disk, and decoding checks the magic byte so a set that was not
//! written by this codec is an error.
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `mode` | `"ok"`, `"trap-compress"`, `"trap-decompress"` or `"error-decompress"` | `"ok"` | which direction fails, and how |
//!
//! - `ok`: both directions work.
//! - `trap-compress`: `compress` traps (`unreachable`); `decompress` works.
//! - `trap-decompress`: `decompress` traps; `compress` works.
//! - `error-decompress`: `decompress` returns
//!   `Err("hostile-codec refuses to decompress")`; `compress` works.
//!
//! Unknown keys and unknown modes are refused by `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["mode"];

/// First byte of every set this codec encodes.
pub const MAGIC: u8 = 0xEC;

/// The error `decompress` returns in `error-decompress` mode.
pub const DECOMPRESS_REFUSAL: &str = "hostile-codec refuses to decompress";

/// Which direction fails, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Both directions work.
    #[default]
    Ok,
    /// `compress` traps.
    TrapCompress,
    /// `decompress` traps.
    TrapDecompress,
    /// `decompress` returns an error.
    ErrorDecompress,
}

/// Reads the config `init` receives.
pub fn configure(text: &str) -> Result<Mode, ConfigError> {
    let config = Config::parse(text, KEYS)?;
    match config.string("mode")?.as_deref() {
        None | Some("ok") => Ok(Mode::Ok),
        Some("trap-compress") => Ok(Mode::TrapCompress),
        Some("trap-decompress") => Ok(Mode::TrapDecompress),
        Some("error-decompress") => Ok(Mode::ErrorDecompress),
        Some(other) => Err(ConfigError::BadValue {
            key: "mode".to_owned(),
            value: format!("\"{other}\""),
            why: "expected one of ok, trap-compress, trap-decompress, error-decompress".to_owned(),
        }),
    }
}

/// Encodes a set: the magic byte, then the bytes reversed.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(data.len() + 1);
    encoded.push(MAGIC);
    encoded.extend(data.iter().rev());
    encoded
}

/// Decodes a set [`encode`] wrote.
pub fn decode(data: &[u8]) -> Result<Vec<u8>, String> {
    match data.split_first() {
        Some((&MAGIC, body)) => Ok(body.iter().rev().copied().collect()),
        Some((first, _)) => Err(format!(
            "not written by hostile-codec: first byte is {first:#04x}, not {MAGIC:#04x}"
        )),
        None => Err("not written by hostile-codec: empty set".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encoding then decoding gives back the exact bytes, empty included.
    #[test]
    fn roundtrip_restores_the_bytes() {
        for data in [&b""[..], b"a", b"hello, netlog", &[0, 1, 2, 255]] {
            assert_eq!(decode(&encode(data)).unwrap(), data);
        }
    }

    /// Encoded data is visibly different: magic byte, then reversed bytes.
    #[test]
    fn encoding_is_recognisable() {
        assert_eq!(encode(b"abc"), vec![MAGIC, b'c', b'b', b'a']);
    }

    /// A set without the magic byte, or an empty one, is an error.
    #[test]
    fn foreign_data_is_an_error() {
        assert_eq!(
            decode(b"abc"),
            Err("not written by hostile-codec: first byte is 0x61, not 0xec".to_owned())
        );
        assert!(decode(b"").unwrap_err().contains("empty"));
    }

    /// Every mode name parses, `{}` meaning `ok`.
    #[test]
    fn every_mode_parses() {
        assert_eq!(configure("{}"), Ok(Mode::Ok));
        let cases = [
            ("ok", Mode::Ok),
            ("trap-compress", Mode::TrapCompress),
            ("trap-decompress", Mode::TrapDecompress),
            ("error-decompress", Mode::ErrorDecompress),
        ];
        for (name, mode) in cases {
            assert_eq!(configure(&format!(r#"{{"mode": "{name}"}}"#)), Ok(mode));
        }
    }

    /// Unknown modes and keys are refused, naming key and value.
    #[test]
    fn config_errors_name_the_key() {
        assert!(
            configure(r#"{"mode": "trap"}"#)
                .unwrap_err()
                .to_string()
                .starts_with("bad value for \"mode\": \"trap\"")
        );
        assert!(
            configure(r#"{"level": 1}"#)
                .unwrap_err()
                .to_string()
                .contains("\"level\"")
        );
    }
}
