//! The component glue: WIT bindings giving [`crate::answer`] to every call.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "retention-policy" });
}

use bindings::exports::netlog::plugin::retention::{self, Decision, State};
use bindings::netlog::plugin::host::{self, Level};

struct Component;

impl bindings::Guest for Component {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }
}

impl retention::Guest for Component {
    fn evaluate(state: State) -> Decision {
        host::log(
            Level::Debug,
            &format!(
                "topic {}: asking to delete all {} segments and roll",
                state.topic,
                state.segments.len()
            ),
        );
        let (delete_oldest, roll_active) = crate::answer();
        Decision {
            delete_oldest,
            roll_active,
        }
    }
}

bindings::export!(Component with_types_in bindings);
