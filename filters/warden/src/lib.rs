//! `warden.wasm`: every Warden filter in one module, each selected by its plugin's `root_id`.
//!
//! Envoy runs the plugins that name the same `vm_id` and the same code in one VM per worker, so
//! a chain configured with this module has one VM per worker instead of one per filter: one
//! copy of the compiled code, one heap, one set of tokenizers. Each plugin keeps its own root
//! context (its own policy, caches and timers). The per-filter modules stay, for a filter used
//! alone. The glue is each filter crate's own `filter` module, compiled here as well.

#[path = "../../identity/src/filter/mod.rs"]
mod identity;
#[path = "../../router/src/filter/mod.rs"]
mod router;
#[path = "../../token-budget/src/filter/mod.rs"]
mod token_budget;
#[path = "../../tool-acl/src/filter/mod.rs"]
mod tool_acl;

use log::error;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use warden_policy::host::Host;
use warden_proxy_host::ProxyHost;

/// The `root_id`s this module answers to, as the shipped configs name them.
pub const ROOT_IDS: [&str; 5] =
    ["warden.identity", "warden.tool_acl", "warden.token_budget", "warden.router", "warden.router_attempt"];

/// The root context for the plugin being created, chosen by its `root_id` (which Envoy reports
/// for the context being created).
fn root_for(_context_id: u32) -> Box<dyn RootContext> {
    let root_id = match ProxyHost.property(&["plugin_root_id"]) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => String::new(),
        Err(e) => format!("(unreadable: {e})"),
    };
    match root_id.as_str() {
        "warden.identity" => Box::new(identity::root::IdentityRoot::default()),
        "warden.tool_acl" => Box::new(tool_acl::root::ToolAclRoot::default()),
        "warden.token_budget" => Box::new(token_budget::root::BudgetRoot::default()),
        id => match router::root::role_of(id) {
            Some(role) => Box::new(router::root::RouterRoot::new(role)),
            None => Box::new(UnknownRoot { root_id }),
        },
    }
}

/// A plugin whose `root_id` names no filter: it refuses its configuration, so Envoy refuses
/// the listener instead of running a filter that does nothing.
struct UnknownRoot {
    root_id: String,
}

impl Context for UnknownRoot {}

impl RootContext for UnknownRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        error!("warden: unknown root_id {:?}: warden.wasm runs {}", self.root_id, ROOT_IDS.join(", "));
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
