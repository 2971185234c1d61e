//! Metric names of the tool-acl filter (Envoy prefixes Wasm metrics with `wasmcustom.`; the
//! shipped configs' `stats_tags` turn the name parts after a fixed name into labels, see
//! `docs/metrics.md`).

use crate::decision::{Decision, Verdict};
use crate::tool_acl::risk::Risk;

pub const ALLOWED: &str = "warden.tool_acl.allowed";
pub const DENIED: &str = "warden.tool_acl.denied";
pub const SHADOW_DENIED: &str = "warden.tool_acl.shadow_denied";
pub const PROTOCOL_ERRORS: &str = "warden.tool_acl.protocol_errors";
pub const BODY_TOO_LARGE: &str = "warden.tool_acl.body_too_large";
pub const TOOLS_HIDDEN: &str = "warden.tool_acl.tools_hidden";
pub const PIN_CHANGED: &str = "warden.tool_acl.pin_changed";
pub const FAILURE_MODE: &str = "warden.tool_acl.failure_mode_applied";
pub const LLM_TOOLS_REMOVED: &str = "warden.tool_acl.llm_tools_removed";
pub const LLM_CALLS_BLOCKED: &str = "warden.tool_acl.llm_calls_blocked";
/// Answers (or their tails) that could not be read and were withheld from the agent.
pub const ANSWERS_WITHHELD: &str = "warden.tool_acl.answers_withheld";

/// Every fixed counter, defined when the policy loads so that each is exported from the start.
pub const ALL: [&str; 11] = [
    ALLOWED,
    DENIED,
    SHADOW_DENIED,
    PROTOCOL_ERRORS,
    BODY_TOO_LARGE,
    TOOLS_HIDDEN,
    PIN_CHANGED,
    FAILURE_MODE,
    LLM_TOOLS_REMOVED,
    LLM_CALLS_BLOCKED,
    ANSWERS_WITHHELD,
];

/// The counter for a denial with this reason, e.g. `warden.tool_acl.denied.loop_detected`.
pub fn denied_by(reason: &str) -> String {
    format!("{DENIED}.{reason}")
}

/// Tool calls judged, by risk class and verdict:
/// `warden.tool_acl.tool_calls.<read|write|destructive>.<allow|deny|shadow_deny>`.
pub fn tool_calls(risk: Risk, decision: &Decision) -> String {
    let verdict = match (decision.verdict, decision.shadowed) {
        (Verdict::Allow, _) => "allow",
        (Verdict::Deny, false) => "deny",
        (Verdict::Deny, true) => "shadow_deny",
    };
    format!("warden.tool_acl.tool_calls.{}.{verdict}", risk.as_str())
}
