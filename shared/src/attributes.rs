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

/// The agent token's `acr` (authentication context class), for step-up requirements.
pub const ACR: &str = "warden.acr";

/// The identity filter's decision: `<verdict>;rule=<rule id>;reason=<reason>`.
pub const DECISION_IDENTITY: &str = "warden.decision.identity";

/// The tool-acl filter's decision, in the same form (for a batch: the first refusal, or the
/// last allowed message).
pub const DECISION_TOOL_ACL: &str = "warden.decision.tool_acl";
/// The JSON-RPC method(s) of an MCP request, joined by `,` for a batch.
pub const MCP_METHOD: &str = "warden.mcp.method";
/// The MCP server (or `llm` for model function tools) a tool belongs to.
pub const TOOL_SERVER: &str = "warden.tool.server";
/// The tool(s) called, joined by `,`.
pub const TOOL_NAME: &str = "warden.tool.name";
/// The risk class(es): `read`, `write`, `destructive`.
pub const TOOL_CLASS: &str = "warden.tool.class";
/// Hex SHA-256 of each call's canonical arguments: the audit trail never holds their values.
pub const TOOL_ARGS_SHA256: &str = "warden.tool.args_sha256";
/// `changed` when a called tool's definition differs from its pin.
pub const TOOL_PIN: &str = "warden.tool.pin";

/// The token-budget filter's decision, in the same form; the rule is the budget id.
pub const DECISION_TOKEN_BUDGET: &str = "warden.decision.token_budget";
/// The model the client asked for.
pub const MODEL_REQUESTED: &str = "warden.model.requested";
/// The model the request was sent to (differs after a budget fallback).
pub const MODEL_SERVED: &str = "warden.model.served";
/// Prompt tokens as counted at the gateway before forwarding.
pub const TOKENS_ESTIMATED: &str = "warden.tokens.estimated";
/// Tokens reserved: the prompt estimate plus the output cap.
pub const TOKENS_RESERVED: &str = "warden.tokens.reserved";
/// Prompt and output tokens as the provider reported them (or as counted when it did not).
pub const TOKENS_INPUT: &str = "warden.tokens.input";
pub const TOKENS_OUTPUT: &str = "warden.tokens.output";
/// The request's cost in USD from the policy's price table, e.g. `0.000415`.
pub const COST_USD: &str = "warden.cost_usd";

/// Client-sent request headers with this prefix are removed by the identity filter on entry,
/// whatever the outcome, so no later hop can mistake them for something Warden verified.
pub const RESERVED_HEADER_PREFIX: &str = "x-warden-";

/// The request header in which token-budget names the model a request is sent to (after a
/// fallback, the cheaper one), so that routes may send each model to its own cluster. Set,
/// and the route chosen again, only while the request headers are held.
pub const MODEL_HEADER: &str = "x-warden-model";

/// The request id Envoy assigns, echoed in every denial so an operator can find the log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
