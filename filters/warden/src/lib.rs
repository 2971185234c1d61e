//! `warden.wasm`: every Warden filter in one module, each selected by its plugin's `root_id`.
//!
//! Envoy runs the plugins that name the same `vm_id` and the same code in one VM per worker, so
//! a chain configured with this module has one VM per worker instead of one per filter: one
//! copy of the compiled code, one heap, one set of tokenizers. Each plugin keeps its own root
//! context (its own policy, caches and timers). The per-filter modules stay, for a filter used
//! alone. The glue is each filter crate's own `filter` module, compiled here as well.

#[path = "../../identity/src/filter/mod.rs"]
mod identity;
#[path = "../../redaction/src/filter/mod.rs"]
mod redaction;
#[path = "../../router/src/filter/mod.rs"]
mod router;
#[path = "../../token-budget/src/filter/mod.rs"]
mod token_budget;
#[path = "../../tool-acl/src/filter/mod.rs"]
mod tool_acl;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;
use warden_policy::root_ids;
use warden_proxy_host::{plugin_root_id, UnknownRoot};

/// The `root_id`s this module answers to, as the shipped configs name them.
pub const ROOT_IDS: [&str; 6] = root_ids::CHAIN;

/// The root context for the plugin being created, chosen by its `root_id` (which Envoy reports
/// for the context being created).
fn root_for(_context_id: u32) -> Box<dyn RootContext> {
    let root_id = plugin_root_id();
    match root_id.as_str() {
        root_ids::IDENTITY => Box::new(identity::root::IdentityRoot::default()),
        root_ids::TOOL_ACL => Box::new(tool_acl::root::ToolAclRoot::default()),
        root_ids::REDACTION => Box::new(redaction::root::RedactionRoot::default()),
        root_ids::TOKEN_BUDGET => Box::new(token_budget::root::BudgetRoot::default()),
        id => match router::root::role_of(id) {
            Some(role) => Box::new(router::root::RouterRoot::new(role)),
            None => Box::new(UnknownRoot { module: "warden", root_id, valid: &ROOT_IDS }),
        },
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
