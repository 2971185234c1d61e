//! Warden token-budget filter: the proxy-wasm glue around `warden_policy::budget`.
//!
//! The root context compiles the policy and builds the tokenizers once per VM, and sends the
//! settle calls of global budgets on its tick (a call sent from a request would be cancelled
//! with the request). Each HTTP context holds a model request until its prompt is counted and
//! reserved in every budget that applies (local counters in shared data, global ones through
//! the rate-limit service), then meters the answer and settles the real usage.

mod filter;

use proxy_wasm::types::LogLevel;

// The SDK's entry point is an exported `#[no_mangle]` function, which the workspace-wide
// `unsafe_code` lint flags; it is the only such item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(super::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::filter::root::BudgetRoot::default()));
    }}
}
