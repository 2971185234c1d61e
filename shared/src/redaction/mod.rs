//! Redaction: personal data and secrets found in what agents send to models and tools, and in
//! what comes back, and masked, stood in for by placeholders restored in the answer, hashed,
//! blocked, or recorded so the router keeps the request on a private provider.
//!
//! - [`catalogue`] and [`checks`]: the built-in detectors and their confidence rules;
//! - [`scanner`]: every detector compiled once per VM into one multi-pattern search;
//! - [`redactor`]: one request's actions, placeholders and findings;
//! - [`stream`]: a streamed text rewritten with a bounded hold-back;
//! - [`json_text`]: the text values of a JSON document rewritten in place;
//! - [`answer_stream`]: a streamed answer rewritten event by event, per protocol.

pub mod answer_stream;
pub mod capture;
pub mod catalogue;
pub mod checks;
pub mod compile;
pub mod config;
pub mod flow;
pub mod json_text;
pub mod metrics;
pub mod redactor;
pub mod scanner;
pub mod stream;
