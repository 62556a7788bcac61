//! The component glue: WIT bindings (`netlog:plugin@0.2.0`) and the
//! conversion of each message to a rejection naming its parts.

use crate::describe;

mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "validator" });
}

use bindings::exports::netlog::plugin::validation::{self, Message, Verdict};

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        match config.trim() {
            "{}" => Ok(()),
            other => Err(format!("metadata-probe takes no config, got {other}")),
        }
    }
}

impl validation::Guest for Component {
    fn validate(_topic: String, batch: Vec<Message>) -> Vec<Verdict> {
        batch
            .iter()
            .map(|m| {
                Verdict::Reject(describe(
                    &m.payload,
                    m.key.as_deref(),
                    &m.headers,
                    m.timestamp,
                ))
            })
            .collect()
    }
}

bindings::export!(Component with_types_in bindings);
