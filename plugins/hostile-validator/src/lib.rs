//! `hostile-validator`: FOR TESTS ONLY. A validator that misbehaves on
//! demand, so the broker's sandbox limits and failure policy can be tested
//! against a real component.
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `mode` | one of the modes below | `"ok"` | what `validate` does |
//! | `ms` | non-negative integer | `100` | how long `slow` spins, in ms of the host clock |
//! | `init` | `"ok"` or `"fail"` | `"ok"` | `"fail"` makes `init` return `Err("refused by hostile-validator")` |
//! | `marker` | non-empty string | none (required by `trap-on`, `loop-on`) | the text that sets off `trap-on` and `loop-on` |
//! | `lines` | positive integer | `8` | how many lines `log-flood` writes per call |
//!
//! Modes of `validate`:
//!
//! - `ok`: accepts every message.
//! - `reject-all`: rejects every message with reason `rejected by hostile-validator`.
//! - `wrong-count`: accepts, but answers one verdict fewer than there are
//!   messages (one verdict for an empty batch), so the count is always wrong.
//! - `slow`: spins until `host.now-ms` has advanced by `ms`, then accepts all.
//! - `loop`: spins forever; only the host's time limit stops it.
//! - `hog`: allocates 1 MiB blocks and writes to every byte, forever; only the
//!   host's memory limit stops it (the failed allocation traps).
//! - `trap`: executes `unreachable`, trapping at once.
//! - `trap-on`: traps when any message of the batch contains `marker`,
//!   accepts every message otherwise (one bad request in a group commit).
//! - `loop-on`: spins forever when any message contains `marker`, accepts
//!   otherwise (a timeout caused by one request).
//! - `log-flood`: writes `lines` lines of [`FLOOD_LINE_BYTES`] each through
//!   `host.log`, each holding newlines and a forged line in the broker's own
//!   log format ([`FORGED_LINE`]), then accepts every message.
//!
//! Every misbehaving mode logs a `warn` line through `host.log` before it
//! starts. Unknown keys, unknown modes and malformed values are refused by
//! `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["mode", "ms", "init", "marker", "lines"];

/// How long `slow` spins when `ms` is not set, in milliseconds.
pub const DEFAULT_SLOW_MS: u64 = 100;

/// Size of each block `hog` allocates and fills: 1 MiB.
pub const HOG_BLOCK_BYTES: usize = 1 << 20;

/// How many lines `log-flood` writes per call when `lines` is not set.
pub const DEFAULT_FLOOD_LINES: u64 = 8;

/// Bytes of each line `log-flood` writes: 1 MiB.
pub const FLOOD_LINE_BYTES: usize = 1 << 20;

/// The line `log-flood` tries to forge, in the format of the broker's own
/// log (tracing-subscriber's default): if it ever shows up at the start of
/// a line of the broker's output, the host failed to escape a newline.
pub const FORGED_LINE: &str =
    "2026-01-01T00:00:00.000000Z  INFO netlog::broker: FORGED-BY-PLUGIN all topics deleted";

/// The reason `reject-all` gives for every message.
pub const REJECT_REASON: &str = "rejected by hostile-validator";

/// The error `init` returns when the config says `"init": "fail"`.
pub const INIT_REFUSAL: &str = "refused by hostile-validator";

/// What `validate` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// Accept every message.
    #[default]
    Ok,
    /// Reject every message.
    RejectAll,
    /// Answer one verdict too few.
    WrongCount,
    /// Spin on the host clock for this many ms, then accept.
    Slow {
        /// How long to spin.
        ms: u64,
    },
    /// Spin forever.
    Loop,
    /// Allocate and touch memory forever.
    Hog,
    /// Trap at once.
    Trap,
    /// Trap when a message contains `marker`, else accept.
    TrapOn {
        /// The text that sets it off.
        marker: String,
    },
    /// Spin forever when a message contains `marker`, else accept.
    LoopOn {
        /// The text that sets it off.
        marker: String,
    },
    /// Write `lines` forged 1 MiB lines through `host.log`, then accept.
    LogFlood {
        /// How many lines per call.
        lines: u64,
    },
}

/// The names `mode` accepts, as the error message lists them.
const MODE_NAMES: &str =
    "ok, reject-all, wrong-count, slow, loop, hog, trap, trap-on, loop-on, log-flood";

/// Reads the config `init` receives; `Err` is exactly what `init` returns.
pub fn configure(text: &str) -> Result<Mode, String> {
    let config = Config::parse(text, KEYS).map_err(|e| e.to_string())?;
    match config.string("init").map_err(|e| e.to_string())?.as_deref() {
        None | Some("ok") => {}
        Some("fail") => return Err(INIT_REFUSAL.to_owned()),
        Some(other) => return Err(bad_value("init", other, "expected \"ok\" or \"fail\"")),
    }
    let ms = config
        .integer("ms")
        .map_err(|e| e.to_string())?
        .unwrap_or(DEFAULT_SLOW_MS);
    let lines = config
        .integer("lines")
        .map_err(|e| e.to_string())?
        .unwrap_or(DEFAULT_FLOOD_LINES);
    let marker = config.string("marker").map_err(|e| e.to_string())?;
    let mode = config.string("mode").map_err(|e| e.to_string())?;
    let marker = |mode: &str| match &marker {
        Some(m) if !m.is_empty() => Ok(m.clone()),
        _ => Err(format!("mode \"{mode}\" needs a non-empty \"marker\"")),
    };
    match mode.as_deref().unwrap_or("ok") {
        "ok" => Ok(Mode::Ok),
        "reject-all" => Ok(Mode::RejectAll),
        "wrong-count" => Ok(Mode::WrongCount),
        "slow" => Ok(Mode::Slow { ms }),
        "loop" => Ok(Mode::Loop),
        "hog" => Ok(Mode::Hog),
        "trap" => Ok(Mode::Trap),
        "trap-on" => Ok(Mode::TrapOn {
            marker: marker("trap-on")?,
        }),
        "loop-on" => Ok(Mode::LoopOn {
            marker: marker("loop-on")?,
        }),
        "log-flood" if lines == 0 => Err(bad_value("lines", "0", "expected at least 1")),
        "log-flood" => Ok(Mode::LogFlood { lines }),
        other => Err(bad_value(
            "mode",
            other,
            &format!("expected one of {MODE_NAMES}"),
        )),
    }
}

/// The error for a string value that is not one of the accepted ones.
fn bad_value(key: &str, value: &str, why: &str) -> String {
    ConfigError::BadValue {
        key: key.to_owned(),
        value: format!("\"{value}\""),
        why: why.to_owned(),
    }
    .to_string()
}

/// The verdicts a mode that returns at all gives for a batch of `count`
/// messages; `Err` holds a rejection's reason.
pub fn verdicts(mode: &Mode, count: usize) -> Vec<Result<(), &'static str>> {
    match mode {
        Mode::RejectAll => vec![Err(REJECT_REASON); count],
        Mode::WrongCount if count == 0 => vec![Ok(())],
        Mode::WrongCount => vec![Ok(()); count - 1],
        _ => vec![Ok(()); count],
    }
}

/// Whether `trap-on` or `loop-on` with `marker` goes off on this batch.
pub fn triggered<'a>(marker: &str, mut payloads: impl Iterator<Item = &'a [u8]>) -> bool {
    let marker = marker.as_bytes();
    payloads.any(|payload| payload.windows(marker.len()).any(|w| w == marker))
}

/// One line of `log-flood`: [`FLOOD_LINE_BYTES`] bytes that start and end
/// with a newline around [`FORGED_LINE`], padded with `x`.
pub fn flood_line() -> String {
    let mut line = format!("flood\n{FORGED_LINE}\n");
    line.extend(std::iter::repeat_n(
        'x',
        FLOOD_LINE_BYTES.saturating_sub(line.len() + 1),
    ));
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{}` configures the accept-everything mode.
    #[test]
    fn default_mode_is_ok() {
        assert_eq!(configure("{}"), Ok(Mode::Ok));
        assert_eq!(verdicts(&Mode::Ok, 3), vec![Ok(()); 3]);
    }

    /// Every mode name maps to its mode, `slow` with its `ms`.
    #[test]
    fn every_mode_parses() {
        let cases = [
            ("ok", Mode::Ok),
            ("reject-all", Mode::RejectAll),
            ("wrong-count", Mode::WrongCount),
            (
                "slow",
                Mode::Slow {
                    ms: DEFAULT_SLOW_MS,
                },
            ),
            ("loop", Mode::Loop),
            ("hog", Mode::Hog),
            ("trap", Mode::Trap),
        ];
        for (name, mode) in cases {
            assert_eq!(configure(&format!(r#"{{"mode": "{name}"}}"#)), Ok(mode));
        }
        assert_eq!(
            configure(r#"{"mode": "slow", "ms": 250}"#),
            Ok(Mode::Slow { ms: 250 })
        );
    }

    /// `"init": "fail"` makes init refuse with the documented message.
    #[test]
    fn init_fail_refuses() {
        assert_eq!(
            configure(r#"{"init": "fail", "mode": "ok"}"#),
            Err("refused by hostile-validator".to_owned())
        );
        assert_eq!(configure(r#"{"init": "ok"}"#), Ok(Mode::Ok));
    }

    /// `reject-all` rejects each message with the fixed reason.
    #[test]
    fn reject_all_rejects_each_message() {
        assert_eq!(
            verdicts(&Mode::RejectAll, 2),
            vec![Err("rejected by hostile-validator"); 2]
        );
    }

    /// `wrong-count` is always off by one, even for an empty batch.
    #[test]
    fn wrong_count_is_always_wrong() {
        assert_eq!(verdicts(&Mode::WrongCount, 5).len(), 4);
        assert_eq!(verdicts(&Mode::WrongCount, 1).len(), 0);
        assert_eq!(verdicts(&Mode::WrongCount, 0).len(), 1);
    }

    /// `trap-on` and `loop-on` need a marker and go off only on a batch
    /// holding it.
    #[test]
    fn marker_modes_go_off_on_the_marker_only() {
        assert_eq!(
            configure(r#"{"mode": "trap-on", "marker": "BAD"}"#),
            Ok(Mode::TrapOn {
                marker: "BAD".to_owned()
            })
        );
        assert_eq!(
            configure(r#"{"mode": "loop-on", "marker": "BAD"}"#),
            Ok(Mode::LoopOn {
                marker: "BAD".to_owned()
            })
        );
        for text in [
            r#"{"mode": "trap-on"}"#,
            r#"{"mode": "loop-on", "marker": ""}"#,
        ] {
            assert!(
                configure(text)
                    .unwrap_err()
                    .contains("needs a non-empty \"marker\"")
            );
        }
        let batch: [&[u8]; 2] = [b"good", b"also good"];
        assert!(!triggered("BAD", batch.into_iter()));
        let batch: [&[u8]; 2] = [b"good", b"a BAD one"];
        assert!(triggered("BAD", batch.into_iter()));
        assert_eq!(
            verdicts(
                &Mode::TrapOn {
                    marker: "BAD".into()
                },
                2
            ),
            vec![Ok(()); 2]
        );
    }

    /// `log-flood` writes 1 MiB lines carrying a forged broker line between
    /// newlines, `lines` of them per call.
    #[test]
    fn log_flood_forges_broker_lines() {
        assert_eq!(
            configure(r#"{"mode": "log-flood"}"#),
            Ok(Mode::LogFlood {
                lines: DEFAULT_FLOOD_LINES
            })
        );
        assert_eq!(
            configure(r#"{"mode": "log-flood", "lines": 3}"#),
            Ok(Mode::LogFlood { lines: 3 })
        );
        assert!(configure(r#"{"mode": "log-flood", "lines": 0}"#).is_err());
        let line = flood_line();
        assert_eq!(line.len(), FLOOD_LINE_BYTES);
        assert!(line.contains(&format!("\n{FORGED_LINE}\n")));
        assert!(line.ends_with('\n'));
    }

    /// Unknown modes, keys and values are refused with key and value named.
    #[test]
    fn config_errors_name_the_key() {
        assert_eq!(
            configure(r#"{"mode": "explode"}"#),
            Err(
                "bad value for \"mode\": \"explode\" (expected one of ok, reject-all, \
                 wrong-count, slow, loop, hog, trap, trap-on, loop-on, log-flood)"
                    .to_owned()
            )
        );
        assert!(
            configure(r#"{"speed": 1}"#)
                .unwrap_err()
                .contains("\"speed\"")
        );
        assert!(
            configure(r#"{"mode": "slow", "ms": "1s"}"#)
                .unwrap_err()
                .starts_with("bad value for \"ms\": \"1s\"")
        );
        assert!(
            configure(r#"{"init": "maybe"}"#)
                .unwrap_err()
                .starts_with("bad value for \"init\": \"maybe\"")
        );
    }
}
