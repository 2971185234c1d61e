//! Warden router filter: the proxy-wasm glue around `warden_policy::router`.
//!
//! One module, two plugins, chosen by `root_id`: `warden.router` in the HTTP filter chain
//! chooses a request's targets; `warden.router_attempt`, an upstream filter on the providers'
//! cluster, shapes and authenticates each attempt (Envoy runs it again on every retry).

mod filter;

use filter::root::{role_of, RouterRoot, ATTEMPT_ROOT_ID, ROUTER_ROOT_ID};
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;
use warden_policy::router::vm::Role;
use warden_proxy_host::{plugin_root_id, UnknownRoot};

/// The root context for the plugin being created, by its `root_id` (empty: the router).
fn root_for(_context_id: u32) -> Box<dyn RootContext> {
    let root_id = plugin_root_id();
    match (root_id.as_str(), role_of(&root_id)) {
        ("", _) => Box::new(RouterRoot::new(Role::Router)),
        (_, Some(role)) => Box::new(RouterRoot::new(role)),
        (_, None) => {
            Box::new(UnknownRoot { module: "warden router", root_id, valid: &[ROUTER_ROOT_ID, ATTEMPT_ROOT_ID] })
        }
    }
}

// The SDK's entry point is an exported `#[no_mangle]` function, which the workspace-wide
// `unsafe_code` lint flags; it is the only such item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(super::LogLevel::Info);
        proxy_wasm::set_root_context(super::root_for);
    }}
}
