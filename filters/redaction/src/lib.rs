//! Warden redaction filter: the proxy-wasm glue around `warden_policy::redaction`.
//!
//! The root context compiles the policy (every detector into one scanner) once. Each HTTP
//! context holds the body of a model request or a governed MCP message, lets the shared code
//! rewrite it, and rewrites the answer as it flows, event by event when streamed.

mod filter;

use proxy_wasm::types::LogLevel;

// The SDK's entry point is an exported `#[no_mangle]` function, which the workspace-wide
// `unsafe_code` lint flags; it is the only such item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(super::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::filter::root::RedactionRoot::default()));
    }}
}
