//! The policy document: any bytes parse and compile without panicking, deterministically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::budget::compile::CompiledTokenBudget;
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::policy::parse_document;
use warden_policy::tool_acl::compile::CompiledToolAcl;

fn compile_all(data: &[u8]) -> String {
    let document = match parse_document(data) {
        Ok(document) => document,
        Err(e) => return format!("parse: {e}"),
    };
    let identity =
        document.identity.as_ref().map(|s| CompiledIdentity::compile(s).map(|_| ()).map_err(|e| e.to_string()));
    let tools = document.tool_acl.as_ref().map(|s| CompiledToolAcl::compile(s).map(|_| ()).map_err(|e| e.to_string()));
    let budget =
        document.token_budget.as_ref().map(|s| CompiledTokenBudget::compile(s).map(|_| ()).map_err(|e| e.to_string()));
    format!("{identity:?} {tools:?} {budget:?}")
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(compile_all(data), compile_all(data));
});
