//! `keep-unread`: a retention policy that deletes only what every persistent
//! scanner has already read, with optional age and size caps.
//!
//! On each tick it deletes the longest run of oldest segments that every
//! persistent scanner has passed (the scanner's next offset is at or past the
//! segment's next offset). Non-persistent scanners are ignored: they do not
//! survive a restart, so they cannot hold data back. A topic with no persistent
//! scanner at all has every segment counted as read, so the policy then deletes
//! all but the active segment; set a persistent scanner, or use `size-cap`, if
//! that is not what you want.
//!
//! Two caps force deletion even of unread data, so a stalled consumer cannot
//! fill the disk (each such deletion is logged at `warn`):
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `max_age` | duration, e.g. `"7day"`, `"12h"`, `"1month2day3h"` | none | a segment last written more than this long ago is deleted |
//! | `max_bytes` | size, e.g. `"1GiB"` or `1073741824` | none | while all segments together (active one included) hold more than this, the oldest are deleted |
//! | `roll_bytes` | size | none | the active segment is rolled once it holds more than this |
//!
//! The policy only ever deletes a contiguous run starting at the oldest
//! segment, never counts the active (last) segment, and never rolls the active
//! segment unless `roll_bytes` is set and exceeded. Without `roll_bytes`, data
//! in the active segment waits for the broker's own roll (`segment_size`,
//! `segment_age`). Unknown keys and malformed values are refused by `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["max_age", "max_bytes", "roll_bytes"];

/// The policy's settings, read from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Segments last written longer ago than this are deleted, read or not.
    pub max_age_ms: Option<u64>,
    /// Oldest segments are deleted while the topic holds more bytes than this.
    pub max_bytes: Option<u64>,
    /// The active segment is rolled once it holds more bytes than this.
    pub roll_bytes: Option<u64>,
}

/// What the policy needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's first message.
    pub base_offset: u64,
    /// Offset one past the segment's last message.
    pub next_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// When the segment was last written, in ms since the Unix epoch.
    pub modified_ms: u64,
}

/// What the policy needs to know about one scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanner {
    /// The next offset the scanner will return.
    pub next_offset: u64,
    /// Whether the scanner survives a restart.
    pub persistent: bool,
}

/// The policy's answer for one tick, with the reasons behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many of the oldest segments to delete (never the active one).
    pub delete_oldest: usize,
    /// Whether to roll the active segment.
    pub roll_active: bool,
    /// How many of the oldest segments every persistent scanner has passed.
    pub read: usize,
    /// How many of the oldest segments are older than `max_age`.
    pub too_old: usize,
    /// How many of the oldest segments must go to get within `max_bytes`.
    pub over_bytes: usize,
    /// Offsets covered by the deleted segments, `base..next`.
    pub offsets: (u64, u64),
    /// Bytes in the active segment, when it is rolled.
    pub active_bytes: u64,
}

impl Policy {
    /// Reads the policy from the JSON config `init` receives.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config = Config::parse(text, KEYS)?;
        Ok(Self {
            max_age_ms: config.duration_ms("max_age")?,
            max_bytes: config.size("max_bytes")?,
            roll_bytes: config.size("roll_bytes")?,
        })
    }

    /// Decides what to delete and whether to roll, given the topic's segments
    /// (oldest first, the last one active), its scanners and the clock.
    pub fn evaluate(&self, segments: &[Segment], scanners: &[Scanner], now_ms: u64) -> Plan {
        let Some((active, closed)) = segments.split_last() else {
            return Plan::default();
        };
        let read = closed
            .iter()
            .take_while(|segment| read_by_every_persistent_scanner(segment, scanners))
            .count();
        let too_old = self.max_age_ms.map_or(0, |max_age| {
            closed
                .iter()
                .take_while(|segment| now_ms.saturating_sub(segment.modified_ms) > max_age)
                .count()
        });
        let over_bytes = self
            .max_bytes
            .map_or(0, |max_bytes| oldest_over_bytes(segments, max_bytes));
        let delete_oldest = read.max(too_old).max(over_bytes).min(closed.len());
        let roll_active = self.roll_bytes.is_some_and(|limit| active.bytes > limit);
        let deleted = &closed[..delete_oldest];
        let offsets = match (deleted.first(), deleted.last()) {
            (Some(first), Some(last)) => (first.base_offset, last.next_offset),
            _ => (0, 0),
        };
        Plan {
            delete_oldest,
            roll_active,
            read,
            too_old,
            over_bytes,
            offsets,
            active_bytes: if roll_active { active.bytes } else { 0 },
        }
    }
}

impl Plan {
    /// Whether the plan deletes data some persistent scanner has not read.
    pub fn deletes_unread(&self) -> bool {
        self.delete_oldest > self.read
    }

    /// Says what the plan does and why, or `None` when it does nothing.
    pub fn explain(&self, policy: &Policy) -> Option<String> {
        let mut parts = Vec::new();
        if self.delete_oldest > 0 {
            let (base, next) = self.offsets;
            let mut causes = Vec::new();
            if self.read > 0 {
                causes.push(format!("{} read by every persistent scanner", self.read));
            }
            if let (true, Some(max_age)) = (self.too_old > 0, policy.max_age_ms) {
                causes.push(format!("{} older than max_age {max_age}ms", self.too_old));
            }
            if let (true, Some(max_bytes)) = (self.over_bytes > 0, policy.max_bytes) {
                causes.push(format!(
                    "{} over max_bytes {max_bytes} bytes",
                    self.over_bytes
                ));
            }
            let unread = if self.deletes_unread() {
                ", including unread data"
            } else {
                ""
            };
            parts.push(format!(
                "deleting {} oldest segment(s), offsets {base}..{next}{unread} ({})",
                self.delete_oldest,
                causes.join("; ")
            ));
        }
        if let (true, Some(roll_bytes)) = (self.roll_active, policy.roll_bytes) {
            parts.push(format!(
                "rolling the active segment: {} bytes, over roll_bytes {roll_bytes}",
                self.active_bytes
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Whether every persistent scanner has passed the whole of `segment`
/// (vacuously true when there is no persistent scanner).
fn read_by_every_persistent_scanner(segment: &Segment, scanners: &[Scanner]) -> bool {
    scanners
        .iter()
        .filter(|scanner| scanner.persistent)
        .all(|scanner| scanner.next_offset >= segment.next_offset)
}

/// How many of the oldest segments must be dropped so the total of all
/// `segments` is at most `max_bytes`; the last (active) one is never counted.
fn oldest_over_bytes(segments: &[Segment], max_bytes: u64) -> usize {
    let mut total = segments
        .iter()
        .fold(0u64, |sum, segment| sum.saturating_add(segment.bytes));
    let closed = segments.len().saturating_sub(1);
    let mut dropped = 0;
    while total > max_bytes && dropped < closed {
        total -= segments[dropped].bytes;
        dropped += 1;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;
    const NOW_MS: u64 = 100 * DAY_MS;

    /// Four segments of 100 messages and 1000 bytes each, written one day
    /// apart, the newest (active) one today.
    fn four_segments() -> Vec<Segment> {
        (0..4)
            .map(|i| Segment {
                base_offset: i * 100,
                next_offset: (i + 1) * 100,
                bytes: 1000,
                modified_ms: NOW_MS - (3 - i) * DAY_MS,
            })
            .collect()
    }

    fn persistent(next_offset: u64) -> Scanner {
        Scanner {
            next_offset,
            persistent: true,
        }
    }

    fn transient(next_offset: u64) -> Scanner {
        Scanner {
            next_offset,
            persistent: false,
        }
    }

    /// A segment one persistent scanner has not passed is kept, with all after it.
    #[test]
    fn keeps_what_a_persistent_scanner_has_not_read() {
        let plan = Policy::default().evaluate(
            &four_segments(),
            &[persistent(400), persistent(150)],
            NOW_MS,
        );
        assert_eq!(plan.delete_oldest, 1);
        assert_eq!(plan.read, 1);
        assert!(!plan.deletes_unread());
        assert!(!plan.roll_active);
    }

    /// A scanner exactly at a segment's next offset has passed that segment.
    #[test]
    fn scanner_at_next_offset_has_passed_the_segment() {
        let plan = Policy::default().evaluate(&four_segments(), &[persistent(200)], NOW_MS);
        assert_eq!(plan.delete_oldest, 2);
        assert_eq!(plan.offsets, (0, 200));
    }

    /// A persistent scanner at offset 0 keeps everything.
    #[test]
    fn scanner_at_start_keeps_everything() {
        let plan = Policy::default().evaluate(&four_segments(), &[persistent(0)], NOW_MS);
        assert_eq!(plan, Plan::default());
        assert_eq!(plan.explain(&Policy::default()), None);
    }

    /// Non-persistent scanners neither keep nor release data.
    #[test]
    fn non_persistent_scanners_are_ignored() {
        let plan =
            Policy::default().evaluate(&four_segments(), &[transient(0), persistent(300)], NOW_MS);
        assert_eq!(plan.delete_oldest, 3);
    }

    /// With no persistent scanner, every closed segment counts as read.
    #[test]
    fn no_persistent_scanner_means_all_read() {
        let plan = Policy::default().evaluate(&four_segments(), &[transient(0)], NOW_MS);
        assert_eq!(plan.delete_oldest, 3);
        assert!(!plan.deletes_unread());
    }

    /// The active segment is never deleted, even when every scanner read it.
    #[test]
    fn never_deletes_the_active_segment() {
        let plan = Policy::default().evaluate(&four_segments(), &[persistent(u64::MAX)], NOW_MS);
        assert_eq!(plan.delete_oldest, 3);
        let one = &four_segments()[..1];
        assert_eq!(
            Policy::default().evaluate(one, &[], NOW_MS).delete_oldest,
            0
        );
        assert_eq!(
            Policy::default().evaluate(&[], &[], NOW_MS),
            Plan::default()
        );
    }

    /// `max_age` deletes unread segments older than the cap, oldest first only.
    #[test]
    fn max_age_overrides_unread() {
        let policy = Policy {
            max_age_ms: Some(DAY_MS + DAY_MS / 2),
            ..Policy::default()
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(0)], NOW_MS);
        // Written 3 and 2 days ago: too old. 1 day ago and active: kept.
        assert_eq!(plan.delete_oldest, 2);
        assert_eq!(plan.too_old, 2);
        assert!(plan.deletes_unread());
        let why = plan.explain(&policy).unwrap();
        assert!(why.contains("including unread data"), "{why}");
        assert!(why.contains("2 older than max_age 129600000ms"), "{why}");
    }

    /// A segment exactly `max_age` old is not yet too old.
    #[test]
    fn max_age_is_strictly_greater() {
        let policy = Policy {
            max_age_ms: Some(3 * DAY_MS),
            ..Policy::default()
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(0)], NOW_MS);
        assert_eq!(plan.delete_oldest, 0);
    }

    /// `max_age` never reaches the active segment, however old it is.
    #[test]
    fn max_age_spares_the_active_segment() {
        let policy = Policy {
            max_age_ms: Some(1),
            ..Policy::default()
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(0)], NOW_MS + DAY_MS);
        assert_eq!(plan.delete_oldest, 3);
    }

    /// Age deletion stops at the first young segment (contiguous from oldest).
    #[test]
    fn max_age_deletes_only_a_contiguous_run() {
        let mut segments = four_segments();
        segments[1].modified_ms = NOW_MS;
        let policy = Policy {
            max_age_ms: Some(DAY_MS / 2),
            ..Policy::default()
        };
        let plan = policy.evaluate(&segments, &[persistent(0)], NOW_MS);
        assert_eq!(plan.delete_oldest, 1);
    }

    /// `max_bytes` drops oldest segments until the total (active included) fits.
    #[test]
    fn max_bytes_overrides_unread() {
        let policy = Policy {
            max_bytes: Some(2500),
            ..Policy::default()
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(0)], NOW_MS);
        assert_eq!(plan.delete_oldest, 2);
        assert_eq!(plan.over_bytes, 2);
        let at_cap = Policy {
            max_bytes: Some(4000),
            ..Policy::default()
        };
        assert_eq!(
            at_cap
                .evaluate(&four_segments(), &[persistent(0)], NOW_MS)
                .delete_oldest,
            0
        );
    }

    /// `max_bytes` smaller than the active segment still keeps the active one.
    #[test]
    fn max_bytes_spares_the_active_segment() {
        let policy = Policy {
            max_bytes: Some(0),
            ..Policy::default()
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(0)], NOW_MS);
        assert_eq!(plan.delete_oldest, 3);
    }

    /// The largest of the read run and the caps wins.
    #[test]
    fn the_widest_reason_wins() {
        let policy = Policy {
            max_age_ms: Some(2 * DAY_MS + 1),
            max_bytes: Some(3500),
            roll_bytes: None,
        };
        let plan = policy.evaluate(&four_segments(), &[persistent(200)], NOW_MS);
        assert_eq!((plan.read, plan.too_old, plan.over_bytes), (2, 1, 1));
        assert_eq!(plan.delete_oldest, 2);
        assert!(!plan.deletes_unread());
    }

    /// The active segment is rolled only when `roll_bytes` is set and exceeded.
    #[test]
    fn rolls_only_past_roll_bytes() {
        let segments = four_segments();
        assert!(
            !Policy::default()
                .evaluate(&segments, &[], NOW_MS)
                .roll_active
        );
        let at_limit = Policy {
            roll_bytes: Some(1000),
            ..Policy::default()
        };
        assert!(!at_limit.evaluate(&segments, &[], NOW_MS).roll_active);
        let under_limit = Policy {
            roll_bytes: Some(999),
            ..Policy::default()
        };
        let plan = under_limit.evaluate(&segments, &[persistent(0)], NOW_MS);
        assert!(plan.roll_active);
        assert_eq!(plan.delete_oldest, 0);
        assert_eq!(
            plan.explain(&under_limit).as_deref(),
            Some("rolling the active segment: 1000 bytes, over roll_bytes 999")
        );
    }

    /// The log line names the count, the offsets and the reason.
    #[test]
    fn explains_a_read_deletion() {
        let plan = Policy::default().evaluate(&four_segments(), &[persistent(250)], NOW_MS);
        assert_eq!(
            plan.explain(&Policy::default()).as_deref(),
            Some(
                "deleting 2 oldest segment(s), offsets 0..200 (2 read by every persistent scanner)"
            )
        );
    }

    /// `{}` is valid and sets no cap.
    #[test]
    fn empty_config_is_valid() {
        assert_eq!(Policy::from_json("{}"), Ok(Policy::default()));
    }

    /// All keys parse: durations, sizes as strings or integers.
    #[test]
    fn config_reads_every_key() {
        let policy =
            Policy::from_json(r#"{"max_age": "7day", "max_bytes": "1GiB", "roll_bytes": 4096}"#)
                .unwrap();
        assert_eq!(
            policy,
            Policy {
                max_age_ms: Some(7 * DAY_MS),
                max_bytes: Some(1 << 30),
                roll_bytes: Some(4096),
            }
        );
    }

    /// Unknown keys and bad values are refused, naming key (and value).
    #[test]
    fn config_errors_name_the_key() {
        let err = Policy::from_json(r#"{"max_size": "1GiB"}"#).unwrap_err();
        assert!(err.to_string().contains("\"max_size\""), "{err}");
        let err = Policy::from_json(r#"{"max_age": "7 weeks"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad value for \"max_age\": \"7 weeks\""),
            "{err}"
        );
        let err = Policy::from_json(r#"{"max_bytes": "lots"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad value for \"max_bytes\": \"lots\""),
            "{err}"
        );
    }
}
