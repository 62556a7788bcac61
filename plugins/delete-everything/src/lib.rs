//! `delete-everything`: FOR TESTS ONLY. A retention policy whose every answer
//! asks for the impossible: delete `u32::MAX` of the oldest segments and roll
//! the active one, on every tick.
//!
//! It exists to show that the broker bounds what a policy may do: the host
//! must never delete the active segment nor more segments than exist, whatever
//! the plugin says. It takes no config and refuses none: `init` accepts any
//! text. Each answer is logged at `debug`.

#[cfg(target_arch = "wasm32")]
mod component;

/// The policy's only answer: how many of the oldest segments to delete, and
/// whether to roll the active segment.
pub fn answer() -> (u32, bool) {
    (u32::MAX, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer asks for more segments than any topic has, and a roll.
    #[test]
    fn asks_for_everything() {
        assert_eq!(answer(), (u32::MAX, true));
    }
}
