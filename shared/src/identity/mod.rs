//! AUTHN: who is calling — the agent, the user it acts for, the tenant and the session —
//! verified from mTLS, JWTs and API keys. Nothing a client sends is trusted unverified.

pub mod api_key;
pub mod authenticate;
pub mod compile;
pub mod config;
pub mod denial;
pub mod jwks_schedule;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod query;
pub mod remote_keys;
pub mod request;
pub mod session;
pub mod spiffe;
pub mod token_cache;
pub mod vm;
