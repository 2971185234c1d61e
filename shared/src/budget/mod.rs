//! Token and cost budgets: count a model request's prompt, reserve it (with its output cap)
//! against every budget that applies, and settle with the usage the provider reports.
//!
//! `config` is the policy section, `compile` checks and prepares it, `tokenizer` and
//! `request` count prompts, `window` aligns budgets to the UTC calendar, `ledger` keeps local
//! counters in shared data, `rls` speaks the Envoy rate-limit API for global ones, `plan`
//! reserves and settles one request, `usage` reads answers, `reply` words refusals.

pub mod admission;
pub mod compile;
pub mod config;
pub mod flow;
pub mod ledger;
pub mod meter;
pub mod metrics;
pub mod plan;
pub mod reply;
pub mod request;
pub mod rls;
pub mod tokenizer;
pub mod tool_call;
pub mod usage;
pub mod vm;
pub mod window;
