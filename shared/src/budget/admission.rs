//! What token-budget does with a request once its headers are read: meter it, let it pass,
//! or refuse it before any of it goes upstream.

use super::compile::CompiledTokenBudget;
use crate::encoding;
use crate::model_api::{Api, Route};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Not model traffic of this policy, or a request that cannot generate tokens.
    Pass,
    /// Hold the body, count it and reserve.
    Meter(Api),
    /// Refused in the API's error shape: nothing goes upstream.
    Refuse { status: u32, kind: &'static str, code: &'static str, rule: &'static str, message: String },
}

/// Methods that read or delete what exists, and generate no tokens.
const READ_ONLY: [&str; 4] = ["GET", "HEAD", "OPTIONS", "DELETE"];

pub fn admit(policy: &CompiledTokenBudget, method: &str, path: &str, headers: &[(String, String)]) -> Admission {
    let upgrade = headers.iter().any(|(k, _)| k == "upgrade");
    let generates = upgrade || !READ_ONLY.contains(&method);
    let api = match policy.paths.classify(path) {
        Route::Other | Route::Free => return Admission::Pass,
        Route::Api(_) | Route::Unreadable if !generates => return Admission::Pass,
        Route::Api(api) if method == "POST" && !upgrade => api,
        Route::Api(_) | Route::Unreadable => {
            let endpoint = path.split('?').next().unwrap_or(path);
            return Admission::Refuse {
                status: 403,
                kind: "permission_error",
                code: "unmetered_api",
                rule: "paths",
                message: format!(
                    "{method} {endpoint} cannot be metered: on this route Warden meters Chat Completions, Responses \
                     and Messages, so other model APIs are refused"
                ),
            };
        }
    };
    if let Some(encoding) = encoding::of_request(headers) {
        return Admission::Refuse {
            status: 415,
            kind: "invalid_request_error",
            code: "unsupported_encoding",
            rule: "protocol",
            message: encoding::refusal_message(&encoding),
        };
    }
    Admission::Meter(api)
}
