//! Warden's policy crate.
//!
//! Everything that does not need a running proxy lives here: the policy document and its
//! validation, identity verification, decisions and their precedence, the keys that carry
//! what a filter learned to later filters and the access log, and the [`host::Host`] seam
//! through which the thin proxy-wasm filters act. This crate never depends on `proxy-wasm`.

pub mod attributes;
pub mod audit;
pub mod budget;
pub mod canonical;
pub mod compiled_policy;
pub mod decision;
pub mod duration;
pub mod encoding;
pub mod error_body;
pub mod glob;
pub mod host;
pub mod identity;
pub mod metric_labels;
pub mod model_api;
pub mod policy;
pub mod principal;
pub mod redaction;
pub mod root_ids;
pub mod router;
pub mod shared_slot;
pub mod sse;
pub mod strict_json;
pub mod tool_acl;
pub mod trace;
pub mod when;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
