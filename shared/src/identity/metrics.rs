//! The identity filter's metric names. Envoy shows them under the `wasmcustom.` prefix.

use crate::decision::{Decision, Verdict, FAILURE_MODE_RULE};

pub const ALLOWED: &str = "warden.identity.allowed";
/// Requests decided by the failure mode (a runtime fault), whichever way it went.
pub const FAILURE_MODE: &str = "warden.identity.failure_mode_applied";
/// Of those, the ones passed unauthenticated (`failureMode: allow`).
pub const FAILURE_MODE_ALLOWED: &str = "warden.identity.failure_mode_allowed";
pub const JWKS_FETCH_SUCCESS: &str = "warden.identity.jwks_fetch.success";
pub const JWKS_FETCH_FAILURE: &str = "warden.identity.jwks_fetch.failure";
/// Gauge: usable keys held for remote issuers by this VM.
pub const KEYS_LOADED: &str = "warden.identity.keys_loaded";

/// Every fixed counter, defined when the policy loads so that each is exported from the start.
pub const ALL: [&str; 5] = [ALLOWED, FAILURE_MODE, FAILURE_MODE_ALLOWED, JWKS_FETCH_SUCCESS, JWKS_FETCH_FAILURE];

/// The counter a decision adds to: `allowed`, `denied.<reason>` or `shadow_denied.<reason>`.
pub fn for_decision(decision: &Decision) -> String {
    match (decision.verdict, decision.shadowed) {
        (Verdict::Allow, _) if decision.rule == FAILURE_MODE_RULE => FAILURE_MODE_ALLOWED.to_string(),
        (Verdict::Allow, _) => ALLOWED.to_string(),
        (Verdict::Deny, false) => format!("warden.identity.denied.{}", decision.reason),
        (Verdict::Deny, true) => format!("warden.identity.shadow_denied.{}", decision.reason),
    }
}
