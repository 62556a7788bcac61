//! The component glue: WIT bindings, the mode kept between calls, and the
//! traps that can only happen inside a sandbox.

use std::cell::Cell;

use crate::{DECOMPRESS_REFUSAL, Mode};

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "codec" });
}

use bindings::exports::netlog::plugin::compression;
use bindings::netlog::plugin::host::{self, Level};

thread_local! {
    /// The mode `init` chose; `ok` until then.
    static MODE: Cell<Mode> = const { Cell::new(Mode::Ok) };
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let mode = crate::configure(&config).map_err(|e| e.to_string())?;
        MODE.with(|slot| slot.set(mode));
        Ok(())
    }
}

impl compression::Guest for Component {
    fn compress(data: Vec<u8>) -> Result<Vec<u8>, String> {
        if MODE.with(Cell::get) == Mode::TrapCompress {
            host::log(Level::Warn, "trapping in compress");
            core::arch::wasm32::unreachable();
        }
        Ok(crate::compress(MODE.with(Cell::get), &data))
    }

    fn decompress(data: Vec<u8>) -> Result<Vec<u8>, String> {
        match MODE.with(Cell::get) {
            Mode::TrapDecompress => {
                host::log(Level::Warn, "trapping in decompress");
                core::arch::wasm32::unreachable()
            }
            Mode::ErrorDecompress => Err(DECOMPRESS_REFUSAL.to_owned()),
            mode => crate::decompress(mode, &data),
        }
    }
}

bindings::export!(Component with_types_in bindings);
