//! The redaction filter's proxy-wasm glue: its own `.wasm` (this crate).

mod http;
pub mod root;
