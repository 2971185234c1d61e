//! The contract between filters and with the access log: one set of keys, defined here only.
//!
//! Each key is written with `proxy_set_property`. Envoy stores it as filter state under
//! `wasm.<key>`, where later Wasm filters read it with `proxy_get_property` and the access
//! log prints it with `%FILTER_STATE(wasm.<key>:PLAIN)%`. A client cannot set filter state,
//! so these values can be trusted; the headers Warden forwards upstream are a copy, and the
//! identity filter strips any client-sent header of those names on entry.

/// The verified agent: a SPIFFE ID, a token subject or an API key's agent name.
pub const AGENT: &str = "warden.agent";
/// The user the agent acts for, when one was verified.
pub const USER: &str = "warden.user";
/// The tenant the request belongs to.
pub const TENANT: &str = "warden.tenant";
/// The session id, bound to the agent that opened it.
pub const SESSION: &str = "warden.session";
/// How the agent proved who it is: `mtls`, `jwt` or `api_key` (joined with `+` when several).
pub const AUTH_METHOD: &str = "warden.auth_method";
/// Space-separated scopes granted to the agent.
pub const SCOPES: &str = "warden.scopes";
/// The chain of actors from an RFC 8693 `act` claim, outermost first, joined by `,`.
pub const ACTOR_CHAIN: &str = "warden.actor_chain";

/// The identity filter's decision: `<verdict>;rule=<rule id>;reason=<reason>`.
pub const DECISION_IDENTITY: &str = "warden.decision.identity";

/// Client-sent request headers with this prefix are removed by the identity filter on entry,
/// whatever the outcome, so no later hop can mistake them for something Warden verified.
pub const RESERVED_HEADER_PREFIX: &str = "x-warden-";

/// The request id Envoy assigns, echoed in every denial so an operator can find the log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
