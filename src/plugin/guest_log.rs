//! [`GuestLog`]: how a line a plugin writes (through `host.log`, stdout or
//! stderr) reaches the broker's log, bounded in size and rate and escaped.
//!
//! What a plugin writes is untrusted text, and the broker's log is read by
//! people and by tools that split it into lines. Three rules hold for every
//! guest line, in this order:
//!
//! 1. **Escaped.** Backslash, every control character (C0, DEL, C1: newline,
//!    carriage return, tab, escape...) and the Unicode line and paragraph
//!    separators are written as Rust-style escapes (`\\`, `\n`, `\r`, `\t`,
//!    `\u{1b}`). A guest line is therefore always one line of output, and it
//!    cannot start a line that looks like one of the broker's, nor colour a
//!    terminal. The escaping is reversible: the backslash is escaped too.
//! 2. **Cut at [`MAX_LINE_BYTES`]** (1 KiB) of escaped text, on a character
//!    boundary, ending with a marker `… [cut N bytes]` where N counts the
//!    bytes of the original message that were left out.
//! 3. **Rate limited per plugin and topic** by a token bucket: a burst of
//!    [`BURST_LINES`] lines, refilled at [`LINES_PER_SECOND`]. Lines beyond
//!    it are dropped and counted. The count is written as one
//!    `suppressed N plugin log lines` warning when the next line gets through,
//!    at most every [`SUMMARY_INTERVAL`] while lines keep being dropped, and
//!    when the binding is dropped. So one plugin on one topic writes at most
//!    about `BURST_LINES + LINES_PER_SECOND * t` lines of at most 1 KiB (plus
//!    their `plugin` and `topic` tags) in `t` seconds, whatever it does.
//!
//! One `GuestLog` belongs to one bound hook (a plugin serving a topic) and is
//! shared by all its instances, so a plugin cannot reset its budget by
//! trapping and getting a fresh instance.

use crate::lock::Recover;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `tracing` target of everything a guest logs or prints, so operators
/// can filter plugin output apart from the broker's own (`netlog::plugin::guest`).
pub(crate) const GUEST_TARGET: &str = "netlog::plugin::guest";

/// Longest guest line written to the log, in bytes of escaped text (the cut
/// marker comes on top).
pub(crate) const MAX_LINE_BYTES: usize = 1024;
/// Lines one plugin on one topic may write at once before the rate limit.
pub(crate) const BURST_LINES: f64 = 50.0;
/// Lines per second the bucket refills with, per plugin and topic.
pub(crate) const LINES_PER_SECOND: f64 = 10.0;
/// Least time between two `suppressed N lines` summaries of one bucket.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The severity of a guest line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The guest log of one plugin serving one topic.
pub(crate) struct GuestLog {
    plugin: Arc<str>,
    topic: Arc<str>,
    bucket: Mutex<Bucket>,
}

/// Token bucket plus the count of lines dropped since the last summary.
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    last_summary: Instant,
}

impl GuestLog {
    /// The guest log of `plugin` on `topic`, with a full bucket.
    pub(crate) fn new(plugin: Arc<str>, topic: Arc<str>) -> GuestLog {
        let now = Instant::now();
        GuestLog {
            plugin,
            topic,
            bucket: Mutex::new(Bucket {
                tokens: BURST_LINES,
                refilled: now,
                suppressed: 0,
                last_summary: now,
            }),
        }
    }

    /// Writes `message` at `level` if the bucket allows, escaped and cut;
    /// `stream` names stdout or stderr for captured output.
    pub(crate) fn write(&self, level: Level, stream: Option<&str>, message: &str) {
        if !tracing_enabled(level) {
            return;
        }
        let (allowed, summary) = self.admit(Instant::now());
        if let Some(suppressed) = summary {
            self.summarize(suppressed);
        }
        if !allowed {
            return;
        }
        let line = escape_and_cut(message);
        let (plugin, topic) = (&*self.plugin, &*self.topic);
        let stream = stream.unwrap_or("log");
        match level {
            Level::Trace => {
                tracing::trace!(target: GUEST_TARGET, %plugin, %topic, stream, "{line}")
            }
            Level::Debug => {
                tracing::debug!(target: GUEST_TARGET, %plugin, %topic, stream, "{line}")
            }
            Level::Info => tracing::info!(target: GUEST_TARGET, %plugin, %topic, stream, "{line}"),
            Level::Warn => tracing::warn!(target: GUEST_TARGET, %plugin, %topic, stream, "{line}"),
            Level::Error => {
                tracing::error!(target: GUEST_TARGET, %plugin, %topic, stream, "{line}")
            }
        }
    }

    /// Takes a token if there is one. Returns whether the line may be
    /// written, and a count of suppressed lines to report now, if one is due.
    fn admit(&self, now: Instant) -> (bool, Option<u64>) {
        let mut b = self.bucket.lock().recover();
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * LINES_PER_SECOND).min(BURST_LINES);
        b.refilled = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        } else {
            b.suppressed += 1;
        }
        let due = b.suppressed > 0
            && (allowed || now.saturating_duration_since(b.last_summary) >= SUMMARY_INTERVAL);
        let summary = due.then(|| {
            b.last_summary = now;
            std::mem::take(&mut b.suppressed)
        });
        (allowed, summary)
    }

    fn summarize(&self, suppressed: u64) {
        let (plugin, topic) = (&*self.plugin, &*self.topic);
        tracing::warn!(target: GUEST_TARGET, %plugin, %topic, suppressed,
            "suppressed {suppressed} plugin log lines (limit: {BURST_LINES} at once, \
             {LINES_PER_SECOND} per second, per plugin and topic)");
    }
}

impl Drop for GuestLog {
    fn drop(&mut self) {
        let bucket = self.bucket.get_mut().recover();
        let suppressed = std::mem::take(&mut bucket.suppressed);
        if suppressed > 0 {
            self.summarize(suppressed);
        }
    }
}

/// Whether any subscriber wants guest lines at `level`; when none does, the
/// line is neither escaped nor counted against the bucket.
fn tracing_enabled(level: Level) -> bool {
    match level {
        Level::Trace => tracing::enabled!(target: GUEST_TARGET, tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: GUEST_TARGET, tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: GUEST_TARGET, tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: GUEST_TARGET, tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: GUEST_TARGET, tracing::Level::ERROR),
    }
}

/// `message` escaped (see the module's rules) and cut at [`MAX_LINE_BYTES`].
pub(crate) fn escape_and_cut(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LINE_BYTES) + 32);
    let mut piece = String::new();
    for (at, c) in message.char_indices() {
        piece.clear();
        escape_char(c, &mut piece);
        if out.len() + piece.len() > MAX_LINE_BYTES {
            let _ = write!(out, "… [cut {} bytes]", message.len() - at);
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// Appends `c` to `out`, escaped if it could break or fake a line.
fn escape_char(c: char, out: &mut String) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newlines, carriage returns, escapes and backslashes never pass raw.
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_and_cut("a\nb\r\tc\u{1b}[31m\\d\u{85}e\u{2028}"),
            "a\\nb\\r\\tc\\u{1b}[31m\\\\d\\u{85}e\\u{2028}"
        );
        assert_eq!(escape_and_cut("plain ünïcode"), "plain ünïcode");
    }

    /// A long line is cut at the limit with a marker counting what was left
    /// out; escaping counts against the limit.
    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let line = escape_and_cut(&"x".repeat(1 << 20));
        assert!(line.starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert!(line.ends_with(&format!("… [cut {} bytes]", (1 << 20) - MAX_LINE_BYTES)));
        let newlines = escape_and_cut(&"\n".repeat(MAX_LINE_BYTES));
        assert_eq!(newlines.matches("\\n").count(), MAX_LINE_BYTES / 2);
        assert!(!newlines.contains('\n'));
        assert_eq!(
            escape_and_cut(&"y".repeat(MAX_LINE_BYTES)).len(),
            MAX_LINE_BYTES
        );
    }

    /// The cut never splits a multi-byte character.
    #[test]
    fn cut_respects_char_boundaries() {
        let line = escape_and_cut(&"é".repeat(MAX_LINE_BYTES));
        let kept = line.split('…').next().unwrap();
        assert_eq!(kept, "é".repeat(MAX_LINE_BYTES / 2));
    }

    /// The bucket lets a burst through, then drops and counts, reports the
    /// count with the next line let through, and refills with time.
    #[test]
    fn bucket_limits_and_summarizes() {
        let log = GuestLog::new("p".into(), "t".into());
        let start = Instant::now();
        let burst = BURST_LINES as usize;
        for _ in 0..burst {
            assert_eq!(log.admit(start), (true, None));
        }
        for _ in 0..7 {
            assert_eq!(log.admit(start), (false, None));
        }
        let later = start + Duration::from_secs_f64(1.0 / LINES_PER_SECOND);
        assert_eq!(log.admit(later), (true, Some(7)));
        assert_eq!(log.admit(later), (false, None));
        let much_later = later + SUMMARY_INTERVAL;
        assert_eq!(log.admit(much_later), (true, Some(1)));
        for _ in 1..burst {
            assert_eq!(
                log.admit(much_later),
                (true, None),
                "refilled up to the burst"
            );
        }
        assert_eq!(log.admit(much_later), (false, None));
    }

    /// While lines keep being dropped, a summary comes once per interval.
    #[test]
    fn summary_is_periodic_while_suppressing() {
        let log = GuestLog::new("p".into(), "t".into());
        let start = Instant::now();
        for _ in 0..BURST_LINES as usize {
            log.admit(start);
        }
        assert_eq!(log.admit(start), (false, None));
        // A bucket emptied again right away, so no line is let through.
        log.bucket.lock().unwrap().tokens = -1e9;
        let next = start + SUMMARY_INTERVAL;
        assert_eq!(log.admit(next), (false, Some(2)));
        assert_eq!(log.admit(next), (false, None));
    }
}
