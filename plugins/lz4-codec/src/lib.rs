//! `lz4-codec`: a codec that compresses message sets with LZ4, which netlog
//! does not have built in.
//!
//! A compressed set is the uncompressed length as a little-endian `u32`
//! followed by one LZ4 block (`lz4_flex`'s "size prepended" block format):
//!
//! ```text
//! +----------------------+---------------------------+
//! | length: u32 LE (4 B) | LZ4 block of `length` B    |
//! +----------------------+---------------------------+
//! ```
//!
//! Decompression never panics on bad input: a short, corrupt or truncated set
//! is an `Err` that names what is wrong, and a declared length over 256 MiB
//! ([`MAX_SET_BYTES`]) is refused before anything is allocated. `compress`
//! refuses sets over the same limit, so the broker stores them uncompressed
//! rather than writing data this codec would refuse to read back.
//!
//! Config: none. `{}` is the only accepted config; any key is refused by
//! `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// Largest message set this codec compresses or decompresses: 256 MiB.
pub const MAX_SET_BYTES: usize = 256 << 20;

/// Bytes of the little-endian length in front of the LZ4 block.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Checks the JSON config `init` receives: it must be an object with no keys.
pub fn check_config(text: &str) -> Result<(), ConfigError> {
    Config::parse(text, &[]).map(drop)
}

/// Compresses a message set into a length-prefixed LZ4 block.
pub fn compress(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() > MAX_SET_BYTES {
        return Err(format!(
            "set is {} bytes, over the lz4 codec's limit of {MAX_SET_BYTES}",
            data.len()
        ));
    }
    Ok(lz4_flex::compress_prepend_size(data))
}

/// Restores exactly the bytes [`compress`] was given.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let Some((prefix, block)) = data.split_first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(format!(
            "compressed set is {} bytes, shorter than its {LENGTH_PREFIX_BYTES}-byte length prefix",
            data.len()
        ));
    };
    let declared = u32::from_le_bytes(*prefix) as usize;
    if declared > MAX_SET_BYTES {
        return Err(format!(
            "compressed set declares {declared} bytes, over the lz4 codec's limit of {MAX_SET_BYTES}"
        ));
    }
    let restored = lz4_flex::block::decompress(block, declared)
        .map_err(|e| format!("corrupt LZ4 block: {e}"))?;
    if restored.len() != declared {
        return Err(format!(
            "corrupt LZ4 block: it holds {} bytes, its prefix declares {declared}",
            restored.len()
        ));
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message set with repetition, as a batch of similar JSON messages is.
    fn sample_set() -> Vec<u8> {
        (0..200)
            .flat_map(|i| {
                format!("{{\"id\": {i}, \"kind\": \"order\", \"ok\": true}}\n").into_bytes()
            })
            .collect()
    }

    /// Deterministic bytes for the corruption tests (xorshift).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Compressing then decompressing gives back the exact bytes.
    #[test]
    fn roundtrip_restores_the_bytes() {
        for data in [
            sample_set(),
            noise(7, 10_000),
            vec![0; 100_000],
            b"x".to_vec(),
        ] {
            let packed = compress(&data).unwrap();
            assert_eq!(decompress(&packed).unwrap(), data);
        }
    }

    /// The empty set round-trips too.
    #[test]
    fn empty_input_roundtrips() {
        let packed = compress(&[]).unwrap();
        assert_eq!(&packed[..LENGTH_PREFIX_BYTES], &[0, 0, 0, 0]);
        assert_eq!(decompress(&packed).unwrap(), Vec::<u8>::new());
    }

    /// Repetitive sets get smaller, and the prefix holds the original length.
    #[test]
    fn compresses_repetitive_data() {
        let data = sample_set();
        let packed = compress(&data).unwrap();
        assert!(
            packed.len() < data.len() / 3,
            "{} of {}",
            packed.len(),
            data.len()
        );
        assert_eq!(
            u32::from_le_bytes(packed[..4].try_into().unwrap()) as usize,
            data.len()
        );
    }

    /// Input shorter than the length prefix is an error, not a panic.
    #[test]
    fn short_input_is_an_error() {
        for len in 0..LENGTH_PREFIX_BYTES {
            let err = decompress(&vec![0; len]).unwrap_err();
            assert!(
                err.contains("shorter than its 4-byte length prefix"),
                "{err}"
            );
        }
    }

    /// An absurd declared length is refused before allocating.
    #[test]
    fn absurd_declared_length_is_refused() {
        let mut packed = u32::MAX.to_le_bytes().to_vec();
        packed.extend_from_slice(&[0x10, b'a']);
        let err = decompress(&packed).unwrap_err();
        assert!(err.contains("declares 4294967295 bytes, over"), "{err}");
    }

    /// A prefix that disagrees with the block's real length is an error.
    #[test]
    fn wrong_declared_length_is_an_error() {
        let data = sample_set();
        let mut packed = compress(&data).unwrap();
        let bigger = (data.len() as u32 + 10).to_le_bytes();
        packed[..4].copy_from_slice(&bigger);
        assert!(
            decompress(&packed)
                .unwrap_err()
                .starts_with("corrupt LZ4 block")
        );
        let smaller = (data.len() as u32 - 10).to_le_bytes();
        packed[..4].copy_from_slice(&smaller);
        assert!(
            decompress(&packed)
                .unwrap_err()
                .starts_with("corrupt LZ4 block")
        );
    }

    /// Truncated sets are errors at every cut point, never panics.
    #[test]
    fn truncated_input_is_an_error() {
        let packed = compress(&sample_set()).unwrap();
        for cut in LENGTH_PREFIX_BYTES..packed.len() {
            assert!(decompress(&packed[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Garbage and bit flips give errors or other bytes, never panics.
    #[test]
    fn corrupt_input_never_panics() {
        let packed = compress(&sample_set()).unwrap();
        for seed in 0..200u64 {
            let mut bad = packed.clone();
            let flips = noise(seed, 8);
            for pair in flips.chunks(2) {
                let at = LENGTH_PREFIX_BYTES
                    + (usize::from(pair[0]) * 251) % (bad.len() - LENGTH_PREFIX_BYTES);
                bad[at] ^= pair[1] | 1;
            }
            let _ = decompress(&bad);
            let mut garbage = noise(seed, 64);
            garbage[..4].copy_from_slice(&1000u32.to_le_bytes());
            let _ = decompress(&garbage);
        }
    }

    /// Sets over the limit are refused by compress, so they stay uncompressed.
    #[test]
    fn oversize_set_is_not_compressed() {
        let huge = vec![0; MAX_SET_BYTES + 1];
        let err = compress(&huge).unwrap_err();
        assert!(err.contains("over the lz4 codec's limit"), "{err}");
    }

    /// `{}` is the only config; any key is refused and named.
    #[test]
    fn config_takes_no_keys() {
        assert_eq!(check_config("{}"), Ok(()));
        let err = check_config(r#"{"level": 3}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown config key \"level\": this plugin takes no keys"
        );
    }
}
