//! The contract between filters and with the access log: one set of keys, defined here only.
//!
//! Each key holds one structured value (JSON text, or for the audit record a
//! `google.protobuf.Struct` under `auditFormat: struct`; see [`crate::audit`] and
//! `docs/audit.md`), written with `proxy_set_property`. Envoy stores it as filter state under
//! `wasm.<key>`, where later Wasm filters read it with `proxy_get_property` and the access log
//! prints it with `%FILTER_STATE(wasm.<key>:PLAIN)%` (`:TYPED` for a `Struct`). A client cannot set filter state,
//! so these values can be trusted; the headers Warden forwards upstream are a copy, and the
//! identity filter strips any client-sent header of those names on entry.

/// The verified principal (agent, user, tenant, session, how it authenticated, scopes, actor
/// chain, `acr`): written once by the identity filter, read-only after, read by every later
/// filter in one host call.
pub const PRINCIPAL: &str = "warden.principal";

/// The request's audit record: the principal and one section per filter (its decision and what
/// it learned), which the access log prints whole. See [`crate::audit`] and `docs/audit.md`.
pub const AUDIT: &str = "warden.audit";

/// Client-sent request headers with this prefix are removed by the identity filter on entry,
/// whatever the outcome, so no later hop can mistake them for something Warden verified.
pub const RESERVED_HEADER_PREFIX: &str = "x-warden-";

/// The request header in which token-budget names the model a request is sent to (after a
/// fallback, the cheaper one), so that routes may send each model to its own cluster. Set,
/// and the route chosen again, only while the request headers are held.
pub const MODEL_HEADER: &str = "x-warden-model";

/// The request id Envoy assigns, echoed in every denial so an operator can find the log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The route a model request takes: the targets the router chose, in order, and each attempt
/// as it went (written by the router's attempt filter, which runs once per attempt as an
/// upstream filter and shares the request's filter state). See [`crate::router::plan`].
pub const ROUTE: &str = "warden.route";

/// The data classes found in the request (a JSON array of class names, e.g. `["pii"]`),
/// written by the redaction filter; the router's rules read it.
pub const DATA_CLASSES: &str = "warden.data_classes";

/// The MCP tool calls tool-acl let through in a request: a JSON object `{batch, calls: [{id,
/// server, tool, risk}], other_ids}`, written for every MCP request it forwards when the
/// document has budgets that count tool calls; token-budget counts the calls against them. See
/// [`crate::budget::tool_call`].
pub const TOOL_CALLS: &str = "warden.tool_calls";

/// The request header the router's attempt filter names the attempt's provider cluster in;
/// the providers' listener routes on it (`cluster_header`) and removes it.
pub const CLUSTER_HEADER: &str = "x-warden-cluster";

/// The response header the providers' listener puts on a reply it made itself (no provider
/// answered: a reset, a refused connection), with Envoy's response flags; the attempt filter
/// reads it as "no answer" and removes it.
pub const NO_ANSWER_HEADER: &str = "x-warden-no-answer";
