//! The component glue: WIT bindings over [`crate::compress`] and
//! [`crate::decompress`].

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "codec" });
}

use bindings::exports::netlog::plugin::compression;

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        crate::check_config(&config).map_err(|e| e.to_string())
    }
}

impl compression::Guest for Component {
    fn compress(data: Vec<u8>) -> Result<Vec<u8>, String> {
        crate::compress(&data)
    }

    fn decompress(data: Vec<u8>) -> Result<Vec<u8>, String> {
        crate::decompress(&data)
    }
}

bindings::export!(Component with_types_in bindings);
