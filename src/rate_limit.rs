//! A rate limit for repeated failure lines in the broker's own log.
//!
//! A failure that repeats for every request (a full disk refusing each
//! publish, a device refusing each write) must not flood the log, which often
//! lives on the same volume. A [`LineLimit`] lets one line of each *kind*
//! through per interval and counts the ones it holds back; the next line let
//! through reports that count (`suppressed = N`), so nothing is lost from
//! the tally. Owners keep one limit per topic (or per log), so a failing
//! topic cannot hide another's first failure, and each kind (an error
//! variant, say) has its own window, so a new kind of failure is logged at
//! once even in the middle of a burst of another.
//!
//! Invariants: the first occurrence of a kind is always let through; at
//! most one line per kind per interval after it; the state is a few words
//! per kind seen, at most [`MAX_KINDS`] kinds (past that the windows start
//! over, which lets one more line of each kind through, never more).

use crate::lock::Recover;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most kinds one limit tracks before it starts over.
pub(crate) const MAX_KINDS: usize = 65_536;

/// The window of one kind of line.
#[derive(Debug)]
struct Window {
    last: Instant,
    suppressed: u64,
}

/// Lets one line per kind through per interval (see the module docs).
#[derive(Debug)]
pub(crate) struct LineLimit<K> {
    interval: Duration,
    windows: Mutex<Option<HashMap<K, Window>>>,
}

impl<K: Hash + Eq> LineLimit<K> {
    /// A limit of one line per kind per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        LineLimit {
            interval,
            windows: Mutex::new(None),
        }
    }

    /// Whether a line of `kind` may be logged now: `Some(n)` with the number
    /// of lines of this kind held back since the last one let through, or
    /// `None` when this one is held back (and counted).
    pub(crate) fn allow(&self, kind: K) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    /// [`allow`](Self::allow) at the instant `now`.
    pub(crate) fn allow_at(&self, kind: K, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().recover();
        let windows = windows.get_or_insert_with(HashMap::new);
        if windows.len() >= MAX_KINDS && !windows.contains_key(&kind) {
            windows.clear();
        }
        let Some(w) = windows.get_mut(&kind) else {
            windows.insert(
                kind,
                Window {
                    last: now,
                    suppressed: 0,
                },
            );
            return Some(0);
        };
        if now.saturating_duration_since(w.last) < self.interval {
            w.suppressed += 1;
            return None;
        }
        w.last = now;
        Some(std::mem::take(&mut w.suppressed))
    }

    /// Lines held back for `kind` since the last one let through.
    #[cfg(test)]
    pub(crate) fn suppressed(&self, kind: &K) -> u64 {
        let windows = self.windows.lock().recover();
        windows
            .as_ref()
            .and_then(|w| w.get(kind))
            .map_or(0, |w| w.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5 s burst of a failure every millisecond logs one line per
    /// interval, and the lines let through account for every failure.
    #[test]
    fn a_burst_logs_a_few_lines_and_counts_the_rest() {
        let limit = LineLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        let (mut lines, mut counted) = (0u64, 0u64);
        for ms in 0..5_000u64 {
            if let Some(held) = limit.allow_at("write", start + Duration::from_millis(ms)) {
                lines += 1;
                counted += 1 + held;
            }
        }
        assert_eq!(lines, 1, "one line in a 5 s burst");
        assert_eq!(limit.suppressed(&"write"), 4_999);
        // The next window's line reports what was held back.
        let later = start + Duration::from_secs(11);
        assert_eq!(limit.allow_at("write", later), Some(4_999));
        counted += 1 + 4_999;
        assert_eq!(counted, 5_001, "every failure is logged or counted");
    }

    /// Each kind has its own window: a new kind is logged at once.
    #[test]
    fn kinds_have_their_own_windows() {
        let limit = LineLimit::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(limit.allow_at(1, t), Some(0));
        assert_eq!(limit.allow_at(1, t), None);
        assert_eq!(limit.allow_at(2, t), Some(0));
        assert_eq!(limit.allow_at(2, t + Duration::from_millis(500)), None);
        assert_eq!(limit.allow_at(1, t + Duration::from_secs(1)), Some(1));
        // A clock read earlier than the window's start holds back too.
        assert_eq!(limit.allow_at(2, t - Duration::from_millis(1)), None);
    }

    /// Kinds past [`MAX_KINDS`] start the windows over: the state stays
    /// bounded, and a new kind is still logged at once.
    #[test]
    fn the_kinds_tracked_are_bounded() {
        let limit = LineLimit::new(Duration::from_secs(60));
        let t = Instant::now();
        for k in 0..MAX_KINDS as u64 {
            assert_eq!(limit.allow_at(k, t), Some(0));
        }
        assert_eq!(limit.allow_at(0, t), None);
        assert_eq!(limit.allow_at(u64::MAX, t), Some(0), "a new kind");
        let tracked = limit
            .windows
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, HashMap::len);
        assert!(tracked <= MAX_KINDS, "{tracked} kinds tracked");
    }
}
