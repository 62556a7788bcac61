//! Rolling and deletion of one topic's segments, on the monitor's tick.
//!
//! Each tick the broker calls [`Topic::maintain`] (on the blocking pool):
//! - the active segment is rolled once its data passes `segment_size`;
//! - without a retention plugin, the oldest segments older than
//!   `segment_age` are deleted (never the active one);
//! - with one, the plugin is shown the segments and scanners and answers how
//!   many of the oldest segments to delete and whether to roll. The host
//!   clamps that answer: never the active segment, never more segments than
//!   exist, nothing on a plugin failure, and a roll only when the active
//!   segment holds at least `min_segment_bytes` (default 1 MiB) or is at
//!   least `min_segment_age` old (default 1 min, never under 1 s). So
//!   whatever a plugin answers, it rolls at most once per megabyte written
//!   or once a minute per topic, and never more than once a second;
//! - moved persistent scanners are saved.
//!
//! A topic that nothing was written to, and whose segments are not old
//! enough to delete, costs a few atomic loads per tick.
//! Every decision is logged.

use std::time::{Duration, SystemTime};

use super::{Embedded, TopicError};
use crate::config::MIN_ROLL_AGE_FLOOR;
use crate::plugin::{Retention, RetentionState, ScannerState, SegmentState};

impl Embedded {
    /// One monitor pass over this topic (see the module docs). Blocking.
    pub(crate) fn maintain(&self) -> Result<(), TopicError> {
        self.expire_idle_scanners();
        let log = self.log();
        let hooks = self.hooks();
        // The idle case, in a few atomic loads: one segment, under its size,
        // no plugin to ask. Nothing to roll or delete (the active segment
        // never is), only scanners that may have moved.
        let list = log.segment_list();
        if hooks.retention.is_none() && list.len() == 1 && list[0].data_len() <= self.segment_size()
        {
            return self.save_scanners();
        }
        drop(list);
        let settings = self.settings();
        let segments = log.segments();
        let active = segments.last().expect("a log has an active segment");
        if active.data_size > settings.segment_size && active.next_offset > active.first_offset {
            log.roll()?;
            tracing::info!(
                topic = self.name(),
                base = active.first_offset,
                data_size = active.data_size,
                segment_size = settings.segment_size,
                "segment rolled: over segment_size"
            );
        }
        // One load per tick: a reload swaps the plugin between two ticks.
        match &hooks.retention {
            Some(retention) => self.apply_retention_plugin(retention)?,
            None => self.delete_by_age()?,
        }
        self.save_scanners()?;
        Ok(())
    }

    fn delete_by_age(&self) -> Result<(), TopicError> {
        let log = self.log();
        let now = SystemTime::now();
        let max_age = self.settings().segment_age;
        for seg in log.segments().iter().rev().skip(1).rev() {
            let age = now.duration_since(seg.mod_time).unwrap_or_default();
            if age <= max_age {
                break;
            }
            if let Some(base) = log.trim_oldest()? {
                tracing::info!(
                    topic = self.name(),
                    base,
                    age_secs = age.as_secs(),
                    "segment deleted: older than segment_age"
                );
            }
        }
        Ok(())
    }

    /// Asks the topic's retention plugin, clamps its answer and applies it.
    fn apply_retention_plugin(&self, retention: &Retention) -> Result<(), TopicError> {
        let log = self.log();
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let segments = log.segments();
        let now = SystemTime::now();
        let state = RetentionState {
            topic: self.name().to_string(),
            segments: segments
                .iter()
                .map(|s| SegmentState {
                    base_offset: s.first_offset,
                    next_offset: s.next_offset,
                    bytes: s.disk_size,
                    created_ms: u64::from(s.created) * 1000,
                    modified_ms: ms(s.mod_time),
                })
                .collect(),
            scanners: self
                .scanners()
                .iter()
                .map(|s| ScannerState {
                    id: s.id.to_string(),
                    next_offset: s.next(),
                    persistent: s.persistent,
                })
                .collect(),
            now_ms: ms(now),
        };
        let decision = match retention.evaluate(&state) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(topic = self.name(), error = %e, "retention plugin failed: nothing deleted this tick");
                return Ok(());
            }
        };
        // Never the active segment (the last one the plugin saw), never more
        // than exist.
        let delete = (decision.delete_oldest as usize).min(segments.len() - 1);
        let active = segments.last().expect("a log has an active segment");
        if decision.roll_active && active.next_offset > active.first_offset {
            let created = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(active.created));
            let age = now.duration_since(created).unwrap_or_default();
            let settings = self.settings();
            let old_enough = age >= settings.min_segment_age.max(MIN_ROLL_AGE_FLOOR);
            let big_enough = active.data_size >= settings.min_segment_bytes;
            if old_enough || (big_enough && age >= MIN_ROLL_AGE_FLOOR) {
                log.roll()?;
                tracing::info!(
                    topic = self.name(),
                    base = active.first_offset,
                    "segment rolled: asked by retention plugin"
                );
            } else {
                tracing::debug!(
                    topic = self.name(),
                    data_size = active.data_size,
                    age_ms = age.as_millis() as u64,
                    "roll asked by retention plugin refused: segment too small and too young"
                );
            }
        }
        for _ in 0..delete {
            if let Some(base) = log.trim_oldest()? {
                tracing::info!(
                    topic = self.name(),
                    base,
                    plugin = retention.plugin().name(),
                    asked = decision.delete_oldest,
                    "segment deleted: retention plugin"
                );
            }
        }
        Ok(())
    }
}
