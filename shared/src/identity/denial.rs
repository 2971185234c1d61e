//! A denial as the caller sees it: status, `WWW-Authenticate`, and an OpenAI-style JSON error
//! that names the rule and carries the request id. Nothing in it echoes a credential.

use super::authenticate::Denial;
use crate::error_body;

pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Quoted-string content for an auth-param: our descriptions are plain text, but a quote or
/// backslash would end the string early, so they are dropped rather than trusted.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

pub fn reply(denial: &Denial, request_id: &str) -> Reply {
    let (kind, challenge) = match denial.status {
        401 => (
            "authentication_error",
            Some(format!(
                "Bearer realm=\"warden\", error=\"invalid_token\", error_description=\"{}\"",
                quoted(&denial.description)
            )),
        ),
        403 if denial.reason == "insufficient_scope" => (
            "permission_error",
            Some(format!(
                "Bearer realm=\"warden\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                quoted(&denial.description),
                quoted(&denial.required_scopes.join(" "))
            )),
        ),
        403 => ("permission_error", None),
        429 => ("rate_limit_error", None),
        _ => ("service_unavailable", None),
    };
    let body = error_body::openai(&denial.description, kind, denial.reason, Some(&denial.rule), request_id);
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate", challenge));
    }
    Reply { status: u32::from(denial.status), headers, body: body.into_bytes() }
}
