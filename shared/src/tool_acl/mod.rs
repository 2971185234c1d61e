//! Tool governance: which principal may call which tool, on MCP servers and as model
//! function tools, with risk classes, escalation, pinning, limits and an audit record.

pub mod answer;
pub mod approval;
pub mod approval_strip;
pub mod arguments;
pub mod compile;
pub mod config;
pub mod denial;
pub mod evaluate;
pub mod file_path;
pub mod flow;
pub mod inflight;
pub mod jsonrpc;
pub mod limits;
pub mod listing;
pub mod llm;
pub mod llm_answer;
pub mod llm_stream;
pub mod mcp;
pub mod metrics;
pub mod pins;
pub mod record;
pub mod request_id;
pub mod risk;
pub mod routing_headers;
pub mod stream;
