//! The component glue: WIT bindings (`netlog:plugin@0.2.0`, for the
//! headers), the rules `init` compiled, kept between calls, and the
//! conversion between WIT verdicts and [`Rules::judge`]'s results.

use std::cell::RefCell;

use crate::Rules;

mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "validator" });
}

use bindings::exports::netlog::plugin::validation::{self, Message, Verdict};

thread_local! {
    /// The rules `init` compiled; none until then.
    static RULES: RefCell<Option<Rules>> = const { RefCell::new(None) };
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let rules = Rules::from_json(&config)?;
        RULES.with(|slot| *slot.borrow_mut() = Some(rules));
        Ok(())
    }
}

impl validation::Guest for Component {
    fn validate(_topic: String, batch: Vec<Message>) -> Vec<Verdict> {
        RULES.with(|rules| {
            let rules = rules.borrow();
            batch
                .iter()
                .map(|message| {
                    let verdict = match rules.as_ref() {
                        Some(rules) => rules.judge(&message.payload, &message.headers),
                        None => Err("json-schema: init was not called".to_owned()),
                    };
                    match verdict {
                        Ok(()) => Verdict::Accept,
                        Err(reason) => Verdict::Reject(reason),
                    }
                })
                .collect()
        })
    }
}

bindings::export!(Component with_types_in bindings);
