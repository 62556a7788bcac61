//! The component glue: WIT bindings, the config kept between calls, and the
//! conversion from WIT records to the plain types [`Policy`] works on.

use std::cell::RefCell;

use crate::{Policy, Scanner, Segment};

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "retention-policy" });
}

use bindings::exports::netlog::plugin::retention::{self, Decision, State};
use bindings::netlog::plugin::host::{self, Level};

thread_local! {
    /// The policy `init` read; the default until then.
    static POLICY: RefCell<Policy> = RefCell::new(Policy::default());
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let policy = Policy::from_json(&config).map_err(|e| e.to_string())?;
        POLICY.with(|slot| *slot.borrow_mut() = policy);
        Ok(())
    }
}

impl retention::Guest for Component {
    fn evaluate(state: State) -> Decision {
        let segments: Vec<Segment> = state
            .segments
            .iter()
            .map(|segment| Segment {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                bytes: segment.bytes,
                modified_ms: segment.modified_ms,
            })
            .collect();
        let scanners: Vec<Scanner> = state
            .scanners
            .iter()
            .map(|scanner| Scanner {
                next_offset: scanner.next_offset,
                persistent: scanner.persistent,
            })
            .collect();
        POLICY.with(|policy| {
            let policy = policy.borrow();
            let plan = policy.evaluate(&segments, &scanners, state.now_ms);
            if let Some(why) = plan.explain(&policy) {
                let level = if plan.deletes_unread() {
                    Level::Warn
                } else {
                    Level::Info
                };
                host::log(level, &format!("topic {}: {why}", state.topic));
            }
            Decision {
                delete_oldest: u32::try_from(plan.delete_oldest).unwrap_or(u32::MAX),
                roll_active: plan.roll_active,
            }
        })
    }
}

bindings::export!(Component with_types_in bindings);
