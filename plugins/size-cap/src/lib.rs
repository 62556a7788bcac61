//! `size-cap`: a retention policy that keeps a topic within a total size
//! and/or a total message count, whatever its scanners have read.
//!
//! On each tick it adds up the bytes and the messages (`next-offset -
//! base-offset`) of every segment, the active one included, and deletes the
//! oldest segments until both totals are within their caps. It never counts the
//! active (last) segment as deletable, so a topic whose active segment alone is
//! over a cap stays over it until that segment is rolled.
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `max_bytes` | size, e.g. `"10GiB"` or `1073741824` | none | cap on the bytes of all segments |
//! | `max_messages` | non-negative integer | none | cap on the messages of all segments |
//! | `roll_bytes` | size | none | the active segment is rolled once it holds more than this |
//!
//! At least one of `max_bytes` and `max_messages` is required; with both, a
//! segment is deleted while either total is over its cap. Unknown keys and
//! malformed values are refused by `init`. Every deletion is logged at `info`
//! with the totals that caused it.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["max_bytes", "max_messages", "roll_bytes"];

/// The policy's settings, read from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Cap on the bytes of all segments.
    pub max_bytes: Option<u64>,
    /// Cap on the messages of all segments.
    pub max_messages: Option<u64>,
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
}

impl Segment {
    /// How many messages the segment holds.
    fn messages(&self) -> u64 {
        self.next_offset.saturating_sub(self.base_offset)
    }
}

/// The policy's answer for one tick, with the totals behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many of the oldest segments to delete (never the active one).
    pub delete_oldest: usize,
    /// Whether to roll the active segment.
    pub roll_active: bool,
    /// Bytes of all segments before deleting.
    pub total_bytes: u64,
    /// Messages of all segments before deleting.
    pub total_messages: u64,
    /// Bytes in the active segment.
    pub active_bytes: u64,
}

impl Policy {
    /// Reads the policy from the JSON config `init` receives.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config = Config::parse(text, KEYS)?;
        let policy = Self {
            max_bytes: config.size("max_bytes")?,
            max_messages: config.integer("max_messages")?,
            roll_bytes: config.size("roll_bytes")?,
        };
        if policy.max_bytes.is_none() && policy.max_messages.is_none() {
            return Err(ConfigError::Invalid(
                "size-cap needs \"max_bytes\", \"max_messages\" or both".to_owned(),
            ));
        }
        Ok(policy)
    }

    /// Decides what to delete and whether to roll, given the topic's segments
    /// (oldest first, the last one active).
    pub fn evaluate(&self, segments: &[Segment]) -> Plan {
        let Some(active) = segments.last() else {
            return Plan::default();
        };
        let total_bytes = segments
            .iter()
            .fold(0u64, |sum, segment| sum.saturating_add(segment.bytes));
        let total_messages = segments
            .iter()
            .fold(0u64, |sum, segment| sum.saturating_add(segment.messages()));
        let closed = segments.len() - 1;
        let (mut bytes, mut messages, mut delete_oldest) = (total_bytes, total_messages, 0);
        while delete_oldest < closed && self.is_over(bytes, messages) {
            bytes -= segments[delete_oldest].bytes;
            messages -= segments[delete_oldest].messages();
            delete_oldest += 1;
        }
        Plan {
            delete_oldest,
            roll_active: self.roll_bytes.is_some_and(|limit| active.bytes > limit),
            total_bytes,
            total_messages,
            active_bytes: active.bytes,
        }
    }

    /// Whether either total is over its cap.
    fn is_over(&self, bytes: u64, messages: u64) -> bool {
        self.max_bytes.is_some_and(|cap| bytes > cap)
            || self.max_messages.is_some_and(|cap| messages > cap)
    }
}

impl Plan {
    /// Says what the plan does and why, or `None` when it does nothing.
    pub fn explain(&self, policy: &Policy) -> Option<String> {
        let mut parts = Vec::new();
        if self.delete_oldest > 0 {
            let mut over = Vec::new();
            if let Some(cap) = policy.max_bytes.filter(|&cap| self.total_bytes > cap) {
                over.push(format!("{} bytes over max_bytes {cap}", self.total_bytes));
            }
            if let Some(cap) = policy.max_messages.filter(|&cap| self.total_messages > cap) {
                over.push(format!(
                    "{} messages over max_messages {cap}",
                    self.total_messages
                ));
            }
            parts.push(format!(
                "deleting {} oldest segment(s): {}",
                self.delete_oldest,
                over.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments with the given (messages, bytes), offsets back to back.
    fn segments(shape: &[(u64, u64)]) -> Vec<Segment> {
        let mut base = 0;
        shape
            .iter()
            .map(|&(messages, bytes)| {
                let segment = Segment {
                    base_offset: base,
                    next_offset: base + messages,
                    bytes,
                };
                base += messages;
                segment
            })
            .collect()
    }

    fn bytes_cap(cap: u64) -> Policy {
        Policy {
            max_bytes: Some(cap),
            ..Policy::default()
        }
    }

    fn messages_cap(cap: u64) -> Policy {
        Policy {
            max_messages: Some(cap),
            ..Policy::default()
        }
    }

    /// Deletes the fewest oldest segments that bring the byte total within the cap.
    #[test]
    fn byte_cap_deletes_just_enough() {
        let topic = segments(&[(10, 100), (10, 200), (10, 300), (10, 50)]);
        // Total 650: dropping 100 gives 550, dropping 200 more gives 350.
        assert_eq!(bytes_cap(600).evaluate(&topic).delete_oldest, 1);
        assert_eq!(bytes_cap(550).evaluate(&topic).delete_oldest, 1);
        assert_eq!(bytes_cap(549).evaluate(&topic).delete_oldest, 2);
        assert_eq!(bytes_cap(650).evaluate(&topic).delete_oldest, 0);
    }

    /// The message count is the sum of next-offset minus base-offset.
    #[test]
    fn message_cap_counts_offsets() {
        let topic = segments(&[(100, 1), (50, 1), (25, 1), (5, 1)]);
        let plan = messages_cap(80).evaluate(&topic);
        assert_eq!(plan.total_messages, 180);
        // 180 -> 80 after dropping 100: within the cap.
        assert_eq!(plan.delete_oldest, 1);
        assert_eq!(messages_cap(79).evaluate(&topic).delete_oldest, 2);
    }

    /// With both caps, segments go while either total is over.
    #[test]
    fn either_cap_forces_deletion() {
        let topic = segments(&[(100, 10), (100, 10), (100, 10000), (1, 1)]);
        let both = Policy {
            max_bytes: Some(20_000),
            max_messages: Some(150),
            roll_bytes: None,
        };
        let plan = both.evaluate(&topic);
        assert_eq!(plan.delete_oldest, 2);
        assert_eq!(
            plan.explain(&both).as_deref(),
            Some("deleting 2 oldest segment(s): 301 messages over max_messages 150")
        );
    }

    /// The active segment is never deleted, even when it alone is over the cap.
    #[test]
    fn never_deletes_the_active_segment() {
        let topic = segments(&[(10, 100), (10, 100), (10, 5000)]);
        assert_eq!(bytes_cap(1000).evaluate(&topic).delete_oldest, 2);
        assert_eq!(bytes_cap(0).evaluate(&topic[2..]).delete_oldest, 0);
        assert_eq!(bytes_cap(0).evaluate(&[]), Plan::default());
    }

    /// The active segment is rolled only when `roll_bytes` is set and exceeded.
    #[test]
    fn rolls_only_past_roll_bytes() {
        let topic = segments(&[(10, 100), (10, 5000)]);
        assert!(!bytes_cap(u64::MAX).evaluate(&topic).roll_active);
        let roll = Policy {
            roll_bytes: Some(4999),
            ..bytes_cap(u64::MAX)
        };
        let plan = roll.evaluate(&topic);
        assert!(plan.roll_active);
        assert_eq!(plan.delete_oldest, 0);
        assert_eq!(
            plan.explain(&roll).as_deref(),
            Some("rolling the active segment: 5000 bytes, over roll_bytes 4999")
        );
    }

    /// A topic within its caps needs nothing and logs nothing.
    #[test]
    fn within_caps_does_nothing() {
        let policy = bytes_cap(1 << 20);
        let plan = policy.evaluate(&segments(&[(10, 100), (10, 100)]));
        assert_eq!(plan.delete_oldest, 0);
        assert_eq!(plan.explain(&policy), None);
    }

    /// The log line names the byte total and the cap.
    #[test]
    fn explains_a_byte_deletion() {
        let policy = bytes_cap(150);
        let plan = policy.evaluate(&segments(&[(10, 100), (10, 100)]));
        assert_eq!(
            plan.explain(&policy).as_deref(),
            Some("deleting 1 oldest segment(s): 200 bytes over max_bytes 150")
        );
    }

    /// Config needs at least one cap; `{}` is refused.
    #[test]
    fn config_needs_a_cap() {
        let err = Policy::from_json("{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "size-cap needs \"max_bytes\", \"max_messages\" or both"
        );
        let err = Policy::from_json(r#"{"roll_bytes": "64MiB"}"#).unwrap_err();
        assert!(err.to_string().contains("needs"), "{err}");
    }

    /// Every key parses, sizes as strings or integers.
    #[test]
    fn config_reads_every_key() {
        assert_eq!(
            Policy::from_json(
                r#"{"max_bytes": "10GiB", "max_messages": 1000000, "roll_bytes": 65536}"#
            ),
            Ok(Policy {
                max_bytes: Some(10 << 30),
                max_messages: Some(1_000_000),
                roll_bytes: Some(65536),
            })
        );
        assert_eq!(
            Policy::from_json(r#"{"max_messages": 5}"#),
            Ok(messages_cap(5))
        );
    }

    /// Unknown keys and bad values are refused, naming key (and value).
    #[test]
    fn config_errors_name_the_key() {
        let err = Policy::from_json(r#"{"max_age": "7day"}"#).unwrap_err();
        assert!(err.to_string().contains("\"max_age\""), "{err}");
        let err = Policy::from_json(r#"{"max_messages": "1000"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for \"max_messages\": \"1000\" (expected a non-negative integer)"
        );
        let err = Policy::from_json(r#"{"max_bytes": "10 TB"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad value for \"max_bytes\": \"10 TB\""),
            "{err}"
        );
    }
}
