//! `roll-storm`: FOR TESTS ONLY. A retention policy that asks to roll the
//! active segment on every tick and never deletes anything.
//!
//! It exists to show that the broker bounds how often a policy may roll: at
//! a 1 ms monitor interval, a host that obeys it makes a segment (two file
//! descriptors and a mapped index) per millisecond until descriptors or
//! memory run out. It takes no config and refuses none: `init` accepts any
//! text. Each answer is logged at `trace`, so a storm does not flood the log.

#[cfg(target_arch = "wasm32")]
mod component;

/// The policy's only answer: how many of the oldest segments to delete
/// (none), and whether to roll the active segment (always).
pub fn answer() -> (u32, bool) {
    (0, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer asks for a roll and deletes nothing, so segments pile up
    /// unless the host refuses.
    #[test]
    fn always_rolls_never_deletes() {
        assert_eq!(answer(), (0, true));
    }
}
