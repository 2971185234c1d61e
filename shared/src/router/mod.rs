//! The router: agents call one endpoint with a model alias; the policy decides which provider
//! serves it, with what credential, and where it goes when that fails.
//!
//! Two filters share this module. The router (`flow`), last in the HTTP filter chain, reads the
//! alias and chooses the targets the rules permit, in order (`select`), and leaves that plan in
//! the request's filter state (`plan`). The attempt filter (`attempt`), an upstream filter on
//! the providers' cluster that Envoy runs again for every retry, shapes and authenticates each
//! attempt for its own target (`provider`, `request`), translating between the OpenAI and
//! Anthropic APIs where the target speaks the other (`translate`), and records how it went; a
//! provider that asked for time with `Retry-After` goes last for that long (`cooldown`).

pub mod attempt;
pub mod compile;
pub mod config;
pub mod cooldown;
pub mod flow;
pub mod metrics;
pub mod plan;
pub mod provider;
pub mod request;
pub mod select;
pub mod translate;
pub mod vm;
