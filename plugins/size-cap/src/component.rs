//! The component glue: WIT bindings, the config kept between calls, and the
//! conversion from WIT records to the plain types [`Policy`] works on.

use std::cell::RefCell;

use crate::{Policy, Segment};

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "retention-policy" });
}

use bindings::exports::netlog::plugin::retention::{self, Decision, State};
use bindings::netlog::plugin::host::{self, Level};

thread_local! {
    /// The policy `init` read; `None` until then, which deletes nothing.
    static POLICY: RefCell<Option<Policy>> = const { RefCell::new(None) };
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let policy = Policy::from_json(&config).map_err(|e| e.to_string())?;
        POLICY.with(|slot| *slot.borrow_mut() = Some(policy));
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
            })
            .collect();
        POLICY.with(|policy| {
            let Some(policy) = &*policy.borrow() else {
                host::log(Level::Warn, "evaluate called before init: deleting nothing");
                return Decision {
                    delete_oldest: 0,
                    roll_active: false,
                };
            };
            let plan = policy.evaluate(&segments);
            if let Some(why) = plan.explain(policy) {
                host::log(Level::Info, &format!("topic {}: {why}", state.topic));
            }
            Decision {
                delete_oldest: u32::try_from(plan.delete_oldest).unwrap_or(u32::MAX),
                roll_active: plan.roll_active,
            }
        })
    }
}

bindings::export!(Component with_types_in bindings);
