//! The component glue: WIT bindings, the rules kept between calls, and the
//! conversion between WIT verdicts and [`Rules::judge`]'s results.

use std::cell::RefCell;

use crate::Rules;

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "validator" });
}

use bindings::exports::netlog::plugin::validation::{self, Message, Verdict};

thread_local! {
    /// The rules `init` read; the defaults until then.
    static RULES: RefCell<Rules> = RefCell::new(Rules::default());
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let rules = Rules::from_json(&config).map_err(|e| e.to_string())?;
        RULES.with(|slot| *slot.borrow_mut() = rules);
        Ok(())
    }
}

impl validation::Guest for Component {
    fn validate(_topic: String, batch: Vec<Message>) -> Vec<Verdict> {
        RULES.with(|rules| {
            rules
                .borrow()
                .judge_batch(batch.iter().map(|message| message.payload.as_slice()))
                .into_iter()
                .map(|verdict| match verdict {
                    Ok(()) => Verdict::Accept,
                    Err(reason) => Verdict::Reject(reason),
                })
                .collect()
        })
    }
}

bindings::export!(Component with_types_in bindings);
