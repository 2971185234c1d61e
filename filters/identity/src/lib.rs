//! Warden identity filter: the proxy-wasm glue around `warden_policy::identity`.
//!
//! The root context compiles the policy once and keeps remote key sets fresh; each HTTP
//! context captures its request and lets the shared flow decide. Requests that arrive before
//! an issuer's keys are fetched are paused (bounded by `keyWait`) and resumed by the root.

mod filter;

use proxy_wasm::types::LogLevel;

// The SDK's entry point is an exported `#[no_mangle]` function, which the workspace-wide
// `unsafe_code` lint flags; it is the only such item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(super::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::filter::root::IdentityRoot::default()));
    }}
}
