//! The redaction filter's proxy-wasm glue: its own `.wasm` (this crate) and part of `warden.wasm`
//! (`filters/warden`), which compiles this module as its own.

mod http;
pub mod root;
