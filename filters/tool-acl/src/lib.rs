//! Warden tool-acl filter: the proxy-wasm glue around `warden_policy::tool_acl`.
//!
//! The root context compiles the policy once. Each HTTP context buffers the body of a
//! request to a governed MCP server or model route (bounded by `maxBodyBytes`), lets the
//! shared code decide, and either forwards it unchanged or answers in the caller's protocol;
//! answers that must be filtered (`tools/list`, model tool calls) are rewritten as they pass,
//! event by event when streamed.

mod filter;

use proxy_wasm::types::LogLevel;

// The SDK's entry point is an exported `#[no_mangle]` function, which the workspace-wide
// `unsafe_code` lint flags; it is the only such item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(super::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::filter::root::ToolAclRoot::default()));
    }}
}
