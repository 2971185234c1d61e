//! "What did the agent see?": for callers and routes an operator opts in, a copy of the prompt
//! and the answer (or a tool call's arguments and result) as they are **after redaction**, for a
//! sink of its own, tied to the audit line by request id and session.
//!
//! Off by default. The copy is sampled (decided by the request id, so a request is captured
//! whole or not at all) and cut at `maxBytes` per direction. It is written as filter state
//! (`wasm.warden.capture`, JSON text), which an access logger of its own prints: the chain's
//! OTLP `warden.capture` log, only for requests that have one. The answer is kept with this
//! request's placeholders, not the values they stand for: what the agent sent as personal data
//! never reaches the capture, even where the agent's own answer gets it back.

use super::config::CaptureConfig;
use crate::host::{Host, HostError};
use crate::policy::PolicyError;
use crate::principal::Caller;
use crate::when::PrincipalMatch;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The filter-state key the copy is written to.
pub const CAPTURE: &str = "warden.capture";

/// The largest `maxBytes`: a capture is a log line, not a body store.
const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct CapturePolicy {
    who: Option<PrincipalMatch>,
    paths: Vec<String>,
    /// Out of 10,000 requests.
    sample_per_10k: u64,
    pub max_bytes: usize,
}

impl CapturePolicy {
    pub fn compile(config: &CaptureConfig, who: Option<PrincipalMatch>) -> Result<CapturePolicy, PolicyError> {
        if !(0.0..=1.0).contains(&config.sample) {
            return Err(PolicyError::at("redaction.capture.sample", "a share of requests, from 0 to 1"));
        }
        if config.max_bytes == 0 || config.max_bytes > MAX_BYTES {
            return Err(PolicyError::at("redaction.capture.maxBytes", format!("from 1 to {MAX_BYTES}")));
        }
        Ok(CapturePolicy {
            who,
            paths: config.paths.clone(),
            sample_per_10k: (config.sample * 10_000.0).round() as u64,
            max_bytes: config.max_bytes,
        })
    }

    /// Whether this request is captured: its caller and path are opted in, and it is sampled.
    pub fn applies(&self, caller: &Caller, path: &str, request_id: &str) -> bool {
        let who = self.who.as_ref().is_none_or(|w| w.matches(caller));
        let path = self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str()));
        let digest = Sha256::digest(request_id.as_bytes());
        let draw = u64::from(u16::from_be_bytes([digest[0], digest[1]])) % 10_000;
        who && path && draw < self.sample_per_10k
    }
}

/// One request's copy, built as it goes.
#[derive(Debug, Clone)]
pub struct Capture {
    request_id: String,
    session: Option<String>,
    path: String,
    max_bytes: usize,
    request: Option<String>,
    answer: String,
    answer_truncated: bool,
}

/// `text` cut to at most `max` bytes on a character boundary, and whether it was cut.
fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

impl Capture {
    pub fn new(request_id: &str, session: Option<&str>, path: &str, max_bytes: usize) -> Capture {
        Capture {
            request_id: request_id.to_string(),
            session: session.map(str::to_string),
            path: path.to_string(),
            max_bytes,
            request: None,
            answer: String::new(),
            answer_truncated: false,
        }
    }

    /// The request as it left (after redaction).
    pub fn set_request(&mut self, text: &str) {
        self.request = Some(text.to_string());
    }

    /// A piece of the answer as the agent got it; `unrestore` puts this request's placeholders
    /// back in place of the values they were restored to.
    pub fn push_answer(&mut self, text: &str, unrestore: &dyn Fn(&str) -> String) {
        if self.answer_truncated {
            return;
        }
        let text = unrestore(text);
        let room = self.max_bytes.saturating_sub(self.answer.len());
        let (kept, truncated) = cut(&text, room);
        self.answer.push_str(kept);
        self.answer_truncated = truncated;
    }

    fn json(&self) -> String {
        let request = self.request.as_deref().map(|r| cut(r, self.max_bytes));
        json!({
            "v": 1,
            "request_id": self.request_id,
            "session": self.session,
            "path": self.path,
            "request": request.map(|(text, _)| text),
            "request_truncated": request.is_some_and(|(_, t)| t),
            "answer": (!self.answer.is_empty()).then_some(self.answer.as_str()),
            "answer_truncated": self.answer_truncated,
        })
        .to_string()
    }

    /// Writes the copy as it stands (after the request, and again once the answer has ended).
    pub fn write(&self, host: &dyn Host) -> Result<(), HostError> {
        host.set_property(&[CAPTURE], self.json().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(sample: f64, tenants: &[&str]) -> CapturePolicy {
        let config = CaptureConfig { when: Default::default(), paths: vec!["/v1/".into()], sample, max_bytes: 16 };
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let who = (!tenants.is_empty()).then(|| PrincipalMatch::new(&[], &[], &tenants));
        CapturePolicy::compile(&config, who).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_opted_in_callers_and_paths_are_captured_and_sampling_is_by_request() {
        let acme = Caller { tenant: Some("acme".into()), ..Caller::default() };
        let globex = Caller { tenant: Some("globex".into()), ..Caller::default() };
        let p = policy(1.0, &["acme"]);
        assert!(p.applies(&acme, "/v1/chat/completions", "r1"));
        assert!(!p.applies(&globex, "/v1/chat/completions", "r1"));
        assert!(!p.applies(&acme, "/mcp/files", "r1"));
        assert!(!policy(0.0, &[]).applies(&acme, "/v1/x", "r1"));
        let half = policy(0.5, &[]);
        let taken = (0..1000).filter(|i| half.applies(&acme, "/v1/x", &format!("req-{i}"))).count();
        assert!((400..600).contains(&taken), "{taken}");
        assert_eq!(half.applies(&acme, "/v1/x", "req-7"), half.applies(&acme, "/v1/x", "req-7"));
    }

    #[test]
    fn copies_are_cut_on_character_boundaries_and_answers_keep_placeholders() {
        let mut c = Capture::new("r", Some("s"), "/v1/chat/completions", 16);
        c.set_request("mail ⟦EMAIL_1⟧ please, now");
        c.push_answer("Sent to ann@example.com", &|t| t.replace("ann@example.com", "⟦EMAIL_1⟧"));
        let v: serde_json::Value = serde_json::from_str(&c.json()).unwrap_or_default();
        assert_eq!(v["request"], "mail ⟦EMAIL_1");
        assert_eq!(v["request_truncated"], true);
        assert_eq!(v["answer"], "Sent to ⟦EMAIL");
        assert_eq!(v["answer_truncated"], true);
        assert!(!v.to_string().contains("ann@"), "{v}");
        assert_eq!(v["session"], "s");
    }

    #[test]
    fn a_sample_or_size_out_of_range_is_refused_naming_the_field() {
        let bad = CaptureConfig { when: Default::default(), paths: vec![], sample: 1.5, max_bytes: 10 };
        assert_eq!(CapturePolicy::compile(&bad, None).unwrap_err().path, "redaction.capture.sample");
        let big = CaptureConfig { sample: 1.0, max_bytes: 0, ..bad };
        assert_eq!(CapturePolicy::compile(&big, None).unwrap_err().path, "redaction.capture.maxBytes");
    }
}
