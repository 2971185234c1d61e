//! Metric names of the router (Envoy prefixes Wasm metrics with `wasmcustom.`). Per-provider
//! counters carry the provider's name: `warden.router.provider.<name>.<what>`.

/// Requests given an ordered list of targets and sent on.
pub const ROUTED: &str = "warden.router.routed";
/// Requests no target may serve: an unknown alias, a rule, or an endpoint no target serves.
pub const REFUSED: &str = "warden.router.refused";
/// Requests whose body or method the router cannot route (malformed JSON, no model, …).
pub const BAD_REQUEST: &str = "warden.router.bad_request";
/// Requests that ended with no provider's answer (every attempt failed), answered by Warden.
pub const EXHAUSTED: &str = "warden.router.exhausted";
/// Runtime faults (filter state, shared data) that refused a request.
pub const FAULTS: &str = "warden.router.faults";
/// Attempts the attempt filter could not prepare (filter state, body). Counted by the attempt
/// filter's own VM: on Envoy 1.36 under the providers' cluster scope
/// (`cluster.warden_providers.wasmcustom.…`).
pub const ATTEMPT_FAULTS: &str = "warden.router.attempt_faults";
/// Requests that reached an upstream without passing the attempt filter: a configuration
/// error (the route does not lead to the providers' listener).
pub const UNROUTED: &str = "warden.router.unrouted";

pub const ALL: [&str; 7] = [ROUTED, REFUSED, BAD_REQUEST, EXHAUSTED, FAULTS, ATTEMPT_FAULTS, UNROUTED];

/// What is counted per provider.
pub const PER_PROVIDER: [&str; 7] =
    ["attempts", "answered", "failovers", "rate_limited", "server_error", "no_answer", "ttfb_ms_sum"];

/// `warden.router.provider.<provider>.<what>`: `attempts` sent to it; `answered` (its answer
/// went to the client); `failovers` away from it, and by reason (`rate_limited`,
/// `server_error`, `no_answer`: its upstream errors); `ttfb_ms_sum` with `answered` gives the
/// mean time to its answers' headers.
pub fn provider(provider: &str, what: &str) -> String {
    format!("warden.router.provider.{provider}.{what}")
}
