//! Metric names of the redaction filter (Envoy prefixes Wasm metrics with `wasmcustom.`).
//! Findings are counted per direction, class and action:
//! `warden.redaction.findings.request.email.placeholder`, `warden.redaction.findings.answer.jwt.mask`.

use super::redactor::Redactor;
use crate::host::{Host, HostError};

/// Requests refused, by reason: `warden.redaction.refused.sensitive_data`, `.body_too_large`,
/// `.unsupported_encoding`, `.unreadable_body`, `.method_not_read`, `.host_error`.
pub const REFUSED: &str = "warden.redaction.refused";
/// Bodies that could not be read as JSON (refused, or passed with `failureMode: allow`).
pub const UNREADABLE: &str = "warden.redaction.unreadable";
/// Answers (or their tails) that could not be read and were withheld from the agent.
pub const ANSWERS_WITHHELD: &str = "warden.redaction.answers_withheld";
/// Host calls that failed mid-request.
pub const FAULTS: &str = "warden.redaction.faults";

pub const ALL: [&str; 3] = [UNREADABLE, ANSWERS_WITHHELD, FAULTS];

pub fn refused(reason: &str) -> String {
    format!("{REFUSED}.{reason}")
}

/// Each (class, action) found in one direction, counted once per request and direction.
pub fn count(host: &dyn Host, redactor: &Redactor, direction: &str) -> Result<(), HostError> {
    for ((class, action), n) in &redactor.counts {
        host.increment(
            &format!("warden.redaction.findings.{direction}.{class}.{action}"),
            i64::try_from(*n).unwrap_or(i64::MAX),
        )?;
    }
    Ok(())
}
