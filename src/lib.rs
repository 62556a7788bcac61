//! netlog: a lightweight, HTTP-centric, Kafka-style message queue.
//!
//! Producers POST messages to a topic over plain HTTP; consumers open a
//! scanner and read them back by offset, long-polling or streaming. Each topic
//! is a segmented, append-only log in netlog's on-disk layout, so a data
//! directory written by the original netlog opens here unchanged. Operators
//! can assign sandboxed WebAssembly components per topic to validate what is
//! published, compress what is stored and decide what is deleted.
//!
//! # Layout
//! - [`message`]: the message format (compver, CRC-32, length, payload),
//!   message sets and the codecs that compress them.
//! - [`log`]: the segmented log: segments, memory-mapped index, readers,
//!   waiting scanners, recovery after a crash and the integrity check.
//! - [`plugin`]: the WebAssembly plugin host: loads, sandboxes and calls the
//!   components that validate, compress and retain a topic's messages.
pub mod log;
pub mod message;
pub mod plugin;
