//! The `root_id` of each Warden plugin, as Envoy configs and OCI images name them: one list for
//! the modules that answer to them, the CLI that checks configs and builds images, and the docs.

pub const IDENTITY: &str = "warden.identity";
pub const TOOL_ACL: &str = "warden.tool_acl";
pub const REDACTION: &str = "warden.redaction";
pub const TOKEN_BUDGET: &str = "warden.token_budget";
pub const ROUTER: &str = "warden.router";
/// The router's upstream plugin, once per attempt.
pub const ROUTER_ATTEMPT: &str = "warden.router_attempt";

/// Every plugin `warden.wasm` (the whole chain in one module) answers to, in chain order.
pub const CHAIN: [&str; 6] = [IDENTITY, TOOL_ACL, REDACTION, TOKEN_BUDGET, ROUTER, ROUTER_ATTEMPT];

/// The plugins that read request bodies, and so hold the request headers unless their policy
/// releases them.
pub const BODY_READING: [&str; 4] = [TOOL_ACL, TOKEN_BUDGET, REDACTION, ROUTER];
