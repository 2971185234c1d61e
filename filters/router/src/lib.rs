//! Warden router filter: the proxy-wasm glue around `warden_policy::router`.
//!
//! One module, two plugins, chosen by `root_id`: `warden.router` in the HTTP filter chain
//! chooses a request's targets; `warden.router_attempt`, an upstream filter on the providers'
//! cluster, shapes and authenticates each attempt (Envoy runs it again on every retry).

mod filter;

use filter::root::{role_of, RouterRoot};
use log::error;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use warden_policy::host::Host;
use warden_policy::router::vm::Role;
use warden_proxy_host::ProxyHost;

/// The root context for the plugin being created, by its `root_id` (empty: the router).
fn root_for(_context_id: u32) -> Box<dyn RootContext> {
    let root_id = ProxyHost.property(&["plugin_root_id"]).ok().flatten().unwrap_or_default();
    let root_id = String::from_utf8_lossy(&root_id).into_owned();
    match (root_id.as_str(), role_of(&root_id)) {
        ("", _) => Box::new(RouterRoot::new(Role::Router)),
        (_, Some(role)) => Box::new(RouterRoot::new(role)),
        (_, None) => Box::new(UnknownRoot { root_id }),
    }
}

/// A `root_id` that names neither plugin: refused at configure time.
struct UnknownRoot {
    root_id: String,
}

impl Context for UnknownRoot {}

impl RootContext for UnknownRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        error!("warden router: unknown root_id {:?}: use warden.router or warden.router_attempt", self.root_id);
        false
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
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
