//! The component glue: WIT bindings, the mode kept between calls, and the
//! misbehaviours that can only happen inside a sandbox (loop, hog, trap).

use std::cell::RefCell;
use std::hint::black_box;

use crate::{HOG_BLOCK_BYTES, Mode};

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "validator" });
}

use bindings::exports::netlog::plugin::validation::{self, Message, Verdict};
use bindings::netlog::plugin::host::{self, Level};

thread_local! {
    /// The mode `init` chose; `ok` until then.
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::Ok) };
}

struct Component;

impl bindings::Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let mode = crate::configure(&config)?;
        MODE.with(|slot| *slot.borrow_mut() = mode);
        Ok(())
    }
}

impl validation::Guest for Component {
    fn validate(topic: String, batch: Vec<Message>) -> Vec<Verdict> {
        let mode = MODE.with(|slot| slot.borrow().clone());
        let payloads = || batch.iter().map(|m| m.payload.as_slice());
        match &mode {
            Mode::Loop => {
                host::log(Level::Warn, &format!("{topic}: looping forever"));
                spin_forever()
            }
            Mode::Hog => {
                host::log(Level::Warn, &format!("{topic}: allocating until stopped"));
                hog_memory()
            }
            Mode::Trap => {
                host::log(Level::Warn, &format!("{topic}: trapping"));
                core::arch::wasm32::unreachable()
            }
            Mode::Slow { ms } => {
                host::log(Level::Warn, &format!("{topic}: spinning for {ms}ms"));
                spin_for(*ms);
            }
            Mode::TrapOn { marker } if crate::triggered(marker, payloads()) => {
                host::log(
                    Level::Warn,
                    &format!("{topic}: marker {marker:?} seen, trapping"),
                );
                core::arch::wasm32::unreachable()
            }
            Mode::LoopOn { marker } if crate::triggered(marker, payloads()) => {
                host::log(
                    Level::Warn,
                    &format!("{topic}: marker {marker:?} seen, looping"),
                );
                spin_forever()
            }
            Mode::LogFlood { lines } => {
                let line = crate::flood_line();
                for _ in 0..*lines {
                    host::log(Level::Error, &line);
                }
            }
            Mode::Ok
            | Mode::RejectAll
            | Mode::WrongCount
            | Mode::TrapOn { .. }
            | Mode::LoopOn { .. } => {}
        }
        crate::verdicts(&mode, batch.len())
            .into_iter()
            .map(|verdict| match verdict {
                Ok(()) => Verdict::Accept,
                Err(reason) => Verdict::Reject(reason.to_owned()),
            })
            .collect()
    }
}

/// Spins forever. `black_box` keeps the optimizer from proving the loop
/// useless, so only the host's time limit ends the call.
fn spin_forever() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks and writes every byte of each, forever; the
/// allocation that the host's memory limit refuses traps.
fn hog_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut fill: u8 = 0xA5;
    loop {
        let mut block = Vec::with_capacity(HOG_BLOCK_BYTES);
        block.resize(HOG_BLOCK_BYTES, fill);
        fill = fill.wrapping_add(1);
        hoard.push(block);
        black_box(&mut hoard);
    }
}

/// Spins until the host clock has advanced by `ms`.
fn spin_for(ms: u64) {
    let start = host::now_ms();
    while host::now_ms().saturating_sub(start) < ms {
        std::hint::spin_loop();
    }
}

bindings::export!(Component with_types_in bindings);
