//! A compact monotonic time for a group's pending entries: milliseconds
//! since the first time this process asked, in a `u64`, where a
//! `tokio::time::Instant` takes 16 bytes. A pending entry holds two of them
//! and the timer index one per entry, so at a million entries this saves
//! about 40 MB. A millisecond is fine enough for leases and backoffs
//! (expiry runs every 200 ms); arithmetic saturates instead of panicking.

use std::ops::Add;
use std::sync::OnceLock;
use std::time::Duration;

/// The process's zero.
static BASE: OnceLock<std::time::Instant> = OnceLock::new();

/// A point in monotonic time, in milliseconds since [`BASE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Now.
    pub(crate) fn now() -> Tick {
        Tick::from(tokio::time::Instant::now())
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub(crate) fn saturating_duration_since(self, earlier: Tick) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The time since `self`.
    pub(crate) fn elapsed(self) -> Duration {
        Tick::now().saturating_duration_since(self)
    }

    /// As [`Tick::saturating_duration_since`].
    pub(crate) fn duration_since(self, earlier: Tick) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl From<tokio::time::Instant> for Tick {
    fn from(at: tokio::time::Instant) -> Tick {
        let base = *BASE.get_or_init(std::time::Instant::now);
        let at = at.into_std();
        Tick(at.saturating_duration_since(base).as_millis() as u64)
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;
    fn add(self, d: Duration) -> Tick {
        Tick(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Order, sums and differences as an `Instant` gives them, to the
    /// millisecond, saturating at both ends.
    #[test]
    fn ticks_behave_as_instants() {
        let a = Tick::now();
        let b = a + Duration::from_millis(1500);
        assert!(b > a);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(1500));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(a + Duration::MAX, Tick(u64::MAX));
        assert_eq!(std::mem::size_of::<Tick>(), 8);
    }
}
