//! The router: agents call one endpoint with a model alias; the policy decides which provider
//! serves it, with what credential, and where it goes when that fails.
//!
//! This is the policy side so far: the `router` section (`config`), compiled and checked once
//! (`compile`), and the choice of targets for a request (`select`). The filter that applies it
//! (rewriting, credentials, failover, translation) is the rest of issue 11.

pub mod compile;
pub mod config;
pub mod select;
