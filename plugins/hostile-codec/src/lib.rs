//! `hostile-codec`: FOR TESTS ONLY. A codec that traps, fails or lies in one
//! direction on demand, so the broker's handling of codecs it cannot trust
//! can be tested.
//!
//! In every mode the direction that is not sabotaged is honest: a set is
//! encoded as the magic byte [`MAGIC`] (`0xEC`) followed by an LZ4 block with
//! its length prepended (`lz4_flex`'s size-prepended format), so it really is
//! smaller than its input when the input repeats itself, data written through
//! the codec is easy to tell apart on disk, and decoding checks the magic
//! byte, so a set that was not written by this codec is an error. The
//! `expand` mode writes [`MAGIC_EXPANDED`] instead (see below), which every
//! mode decodes as well.
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `mode` | one of the modes below | `"ok"` | which direction misbehaves, and how |
//!
//! - `ok`: both directions work.
//! - `trap-compress`: `compress` traps (`unreachable`); `decompress` works.
//! - `trap-decompress`: `decompress` traps; `compress` works.
//! - `error-decompress`: `decompress` returns
//!   `Err("hostile-codec refuses to decompress")`; `compress` works.
//! - `alter`: `decompress` returns a well-formed set of the same messages
//!   with other payloads (every payload byte flipped) and recomputed CRCs;
//!   `compress` works.
//! - `drop`: `decompress` returns only the first message of each set;
//!   `compress` works.
//! - `garbage`: `decompress` returns garbage bytes (not messages) of the
//!   set's length; `compress` works.
//! - `expand`: `compress` returns about [`EXPANSION`] times its input (the
//!   honest encoding, padded); `decompress` works.
//!
//! Unknown keys and unknown modes are refused by `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["mode"];

/// First byte of every set this codec encodes honestly.
pub const MAGIC: u8 = 0xEC;

/// First byte of a set the `expand` mode encodes: then the honest encoding's
/// length (u32, big-endian), the honest encoding, and zero padding.
pub const MAGIC_EXPANDED: u8 = 0xEE;

/// How many times its input the `expand` mode's output is.
pub const EXPANSION: usize = 100;

/// The error `decompress` returns in `error-decompress` mode.
pub const DECOMPRESS_REFUSAL: &str = "hostile-codec refuses to decompress";

/// Bytes of a message header inside a set: compver, CRC-32, length.
const MESSAGE_HEADER_BYTES: usize = 9;

/// Which direction misbehaves, and how.
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
    /// `decompress` returns other payloads with valid CRCs.
    Alter,
    /// `decompress` returns only the first message.
    Drop,
    /// `decompress` returns garbage.
    Garbage,
    /// `compress` returns about [`EXPANSION`] times its input.
    Expand,
}

/// The modes by name, as the config spells them.
const MODES: &[(&str, Mode)] = &[
    ("ok", Mode::Ok),
    ("trap-compress", Mode::TrapCompress),
    ("trap-decompress", Mode::TrapDecompress),
    ("error-decompress", Mode::ErrorDecompress),
    ("alter", Mode::Alter),
    ("drop", Mode::Drop),
    ("garbage", Mode::Garbage),
    ("expand", Mode::Expand),
];

/// Reads the config `init` receives.
pub fn configure(text: &str) -> Result<Mode, ConfigError> {
    let config = Config::parse(text, KEYS)?;
    let Some(name) = config.string("mode")? else {
        return Ok(Mode::Ok);
    };
    MODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, mode)| *mode)
        .ok_or_else(|| ConfigError::BadValue {
            key: "mode".to_owned(),
            value: format!("\"{name}\""),
            why: format!(
                "expected one of {}",
                MODES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })
}

/// Encodes a set honestly: the magic byte, then the size-prepended LZ4 block.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut encoded = vec![MAGIC];
    encoded.extend(lz4_flex::compress_prepend_size(data));
    encoded
}

/// Encodes a set as the `expand` mode does: the honest encoding, wrapped and
/// padded with zeros to about [`EXPANSION`] times the input.
pub fn encode_expanded(data: &[u8]) -> Vec<u8> {
    let honest = encode(data);
    let mut out = vec![MAGIC_EXPANDED];
    out.extend((honest.len() as u32).to_be_bytes());
    out.extend(&honest);
    out.resize(out.len().max(data.len() * EXPANSION), 0);
    out
}

/// Decodes a set [`encode`] or [`encode_expanded`] wrote.
pub fn decode(data: &[u8]) -> Result<Vec<u8>, String> {
    match data.split_first() {
        Some((&MAGIC, body)) => lz4_flex::decompress_size_prepended(body)
            .map_err(|e| format!("corrupt hostile-codec set: {e}")),
        Some((&MAGIC_EXPANDED, rest)) => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or("truncated expanded set")?;
            let inner = rest
                .get(..u32::from_be_bytes(*len) as usize)
                .ok_or("truncated expanded set")?;
            decode(inner)
        }
        Some((first, _)) => Err(format!(
            "not written by hostile-codec: first byte is {first:#04x}, not {MAGIC:#04x}"
        )),
        None => Err("not written by hostile-codec: empty set".to_owned()),
    }
}

/// What `decompress` answers in `mode` for a stored set.
pub fn decompress(mode: Mode, data: &[u8]) -> Result<Vec<u8>, String> {
    let plain = decode(data)?;
    Ok(match mode {
        Mode::Alter => alter(&plain),
        Mode::Drop => first_message(&plain).to_vec(),
        Mode::Garbage => garbage(plain.len().max(1)),
        _ => plain,
    })
}

/// What `compress` answers in `mode` (the trap is the component's business).
pub fn compress(mode: Mode, data: &[u8]) -> Vec<u8> {
    match mode {
        Mode::Expand => encode_expanded(data),
        _ => encode(data),
    }
}

/// The messages of `plain` with every payload byte flipped and each CRC
/// recomputed: well-formed, and wrong. Bytes that are not whole messages
/// are kept as they are.
pub fn alter(plain: &[u8]) -> Vec<u8> {
    let mut out = plain.to_vec();
    let mut at = 0;
    while let Some(len) = message_len(&out[at..]) {
        let payload = at + MESSAGE_HEADER_BYTES..at + MESSAGE_HEADER_BYTES + len;
        for b in &mut out[payload.clone()] {
            *b ^= 0xFF;
        }
        let crc = crc32(&out[payload]);
        out[at + 1..at + 5].copy_from_slice(&crc.to_be_bytes());
        at += MESSAGE_HEADER_BYTES + len;
    }
    out
}

/// The first whole message of `plain` (all of it if none is whole).
pub fn first_message(plain: &[u8]) -> &[u8] {
    match message_len(plain) {
        Some(len) => &plain[..MESSAGE_HEADER_BYTES + len],
        None => plain,
    }
}

/// `len` bytes that are no message set: a length field far past the end.
pub fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9u32;
    (0..len)
        .map(|i| {
            if (5..9).contains(&i) {
                return 0xFF;
            }
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// The payload length of the message at the start of `buf`, if it is whole.
fn message_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..MESSAGE_HEADER_BYTES)?;
    let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    (buf.len() >= MESSAGE_HEADER_BYTES + len).then_some(len)
}

/// CRC-32 (IEEE), as the broker computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain messages back to back, as the broker hands a set to a codec.
    fn set(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.push(0);
            out.extend(crc32(p).to_be_bytes());
            out.extend((p.len() as u32).to_be_bytes());
            out.extend(*p);
        }
        out
    }

    /// Encoding then decoding gives back the exact bytes, empty included.
    #[test]
    fn roundtrip_restores_the_bytes() {
        for data in [&b""[..], b"a", b"hello, netlog", &[0, 1, 2, 255]] {
            assert_eq!(decode(&encode(data)).unwrap(), data);
            assert_eq!(decode(&encode_expanded(data)).unwrap(), data);
        }
    }

    /// Encoded data is recognisable by its magic byte, and repetitive input
    /// really shrinks.
    #[test]
    fn encoding_is_recognisable_and_compresses() {
        let data = b"netlog ".repeat(50);
        let encoded = encode(&data);
        assert_eq!(encoded[0], MAGIC);
        assert!(encoded.len() < data.len() / 4, "{} bytes", encoded.len());
    }

    /// A set without the magic byte, or an empty one, is an error.
    #[test]
    fn foreign_data_is_an_error() {
        assert_eq!(
            decode(b"abc"),
            Err("not written by hostile-codec: first byte is 0x61, not 0xec".to_owned())
        );
        assert!(decode(b"").unwrap_err().contains("empty"));
        assert!(decode(&[MAGIC, 9, 9]).is_err());
    }

    /// The CRC is the IEEE one the broker uses.
    #[test]
    fn crc_is_ieee() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// `alter` keeps the set well-formed, CRCs included, with other payloads.
    #[test]
    fn alter_changes_payloads_and_keeps_crcs_valid() {
        let plain = set(&[b"one", b"", b"three"]);
        let altered = decompress(Mode::Alter, &encode(&plain)).unwrap();
        assert_eq!(altered.len(), plain.len());
        assert_ne!(altered, plain);
        let flipped: Vec<u8> = b"one".iter().map(|b| b ^ 0xFF).collect();
        let three: Vec<u8> = b"three".iter().map(|b| b ^ 0xFF).collect();
        assert_eq!(altered, set(&[&flipped, b"", &three]));
    }

    /// `drop` keeps only the first message.
    #[test]
    fn drop_keeps_the_first_message_only() {
        let plain = set(&[b"one", b"two", b"three"]);
        assert_eq!(
            decompress(Mode::Drop, &encode(&plain)).unwrap(),
            set(&[b"one"])
        );
    }

    /// `garbage` answers bytes that are no set: the first length field
    /// points far past the end.
    #[test]
    fn garbage_is_not_a_set() {
        let plain = set(&[b"one", b"two"]);
        let junk = decompress(Mode::Garbage, &encode(&plain)).unwrap();
        assert_eq!(junk.len(), plain.len());
        assert_eq!(message_len(&junk), None);
    }

    /// `expand` writes about a hundred times its input, still decodable.
    #[test]
    fn expand_writes_a_hundred_times_the_input() {
        let plain = set(&[b"one", b"two"]);
        let out = compress(Mode::Expand, &plain);
        assert!(out.len() >= plain.len() * EXPANSION);
        assert_eq!(decompress(Mode::Expand, &out).unwrap(), plain);
        assert_eq!(decompress(Mode::Ok, &out).unwrap(), plain);
    }

    /// The honest direction of every mode round-trips.
    #[test]
    fn honest_directions_roundtrip() {
        let plain = set(&[b"one", b"two"]);
        for mode in [
            Mode::Alter,
            Mode::Drop,
            Mode::Garbage,
            Mode::ErrorDecompress,
        ] {
            assert_eq!(decode(&compress(mode, &plain)).unwrap(), plain, "{mode:?}");
        }
    }

    /// Every mode name parses, `{}` meaning `ok`.
    #[test]
    fn every_mode_parses() {
        assert_eq!(configure("{}"), Ok(Mode::Ok));
        for (name, mode) in MODES {
            assert_eq!(configure(&format!(r#"{{"mode": "{name}"}}"#)), Ok(*mode));
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
