//! Denials in the caller's protocol, each naming the rule, the reason, the request id and what
//! would make the call acceptable. Argument values are never echoed.
//!
//! A denied `tools/call` is answered by default as a tool result with `isError: true`: the MCP
//! spec reserves JSON-RPC errors for protocol faults and reports tool failures in the result,
//! so the official SDKs hand it to the model as the tool's output, and the model can read what
//! it needs (a scope, an approval) and act on it. A JSON-RPC error would surface as an
//! exception in the client instead, which many agent loops end on. Other denied methods, and
//! every protocol fault, are JSON-RPC errors.

use crate::tool_acl::approval::META_KEY;
use crate::tool_acl::evaluate::Hint;
use crate::tool_acl::jsonrpc::{self, POLICY_DENIED};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// A refusal of one message, before it is put in the protocol's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The JSON-RPC error code when answered as an error: `-32001` for policy denials,
    /// `-32602` for a `tools/call` whose params cannot be read.
    pub code: i64,
    pub rule: String,
    pub reason: &'static str,
    pub hint: Hint,
    /// For approvals: the values the approver must sign.
    pub tool: Option<String>,
    pub args_sha256: Option<String>,
}

impl Refusal {
    pub fn new(rule: impl Into<String>, reason: &'static str) -> Refusal {
        Refusal { code: POLICY_DENIED, rule: rule.into(), reason, hint: Hint::Nothing, tool: None, args_sha256: None }
    }

    /// What the agent is told, in one paragraph a model can act on.
    pub fn message(&self, request_id: &str) -> String {
        let mut text = format!("Denied by Warden policy: rule {:?}, reason {}.", self.rule, self.reason);
        match &self.hint {
            Hint::Nothing => {}
            Hint::Requirement(req) => {
                if !req.scopes.is_empty() {
                    text.push_str(&format!(" The call needs the scopes [{}]", req.scopes.join(", ")));
                }
                if !req.acr.is_empty() {
                    text.push_str(&format!(
                        " The call needs an authentication level (acr) of [{}]",
                        req.acr.join(", ")
                    ));
                }
                text.push_str(": obtain a stepped-up token and retry.");
            }
            Hint::Approval => text.push_str(&format!(
                " The call needs an approval: ask an approver for a token with tool {:?} and args_sha256 {:?}, \
                 then retry the same call with it in params._meta[{META_KEY:?}].",
                self.tool.as_deref().unwrap_or(""),
                self.args_sha256.as_deref().unwrap_or("")
            )),
        }
        text.push_str(&format!(" Request id {request_id}."));
        text
    }

    /// The same facts as data, for programs.
    pub fn data(&self, request_id: &str) -> Value {
        let mut data = json!({"rule": self.rule, "reason": self.reason, "requestId": request_id});
        match &self.hint {
            Hint::Nothing => {}
            Hint::Requirement(req) => {
                data["requires"] = json!({"scopes": req.scopes, "acr": req.acr});
            }
            Hint::Approval => {
                data["requires"] =
                    json!({"approval": {"tool": self.tool, "args_sha256": self.args_sha256, "meta": META_KEY}});
            }
        }
        data
    }

    /// An `isError` tool result for the request `id`. MCP 2026-07-28 clients refuse a result
    /// without `resultType` (that revision's results say whether they are complete); clients of
    /// earlier revisions ignore the member, as results may carry more than they know.
    pub fn tool_result(&self, id: &RawValue, request_id: &str) -> String {
        let result = json!({
            "content": [{"type": "text", "text": self.message(request_id)}],
            "isError": true,
            "resultType": "complete",
            "_meta": {"warden/denial": self.data(request_id)},
        });
        jsonrpc::result_response(id, &result.to_string())
    }

    /// A JSON-RPC error for the request `id`.
    pub fn rpc_error(&self, id: Option<&RawValue>, request_id: &str) -> String {
        crate::error_body::jsonrpc(
            id.map(RawValue::get),
            self.code,
            &self.message(request_id),
            Some(&self.data(request_id)),
        )
    }
}
