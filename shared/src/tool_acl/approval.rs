//! Approval tokens for write and destructive calls.
//!
//! An approval is a short-lived JWT from the configured approver, bound to one call: its
//! claims name the tenant, the agent, the tool (`<server>/<tool>`), the SHA-256 of the
//! call's canonical arguments and the session, and its `jti` is usable once. Used ids are
//! kept in shared data (bounded slots) until the approval would have expired anyway.

use crate::host::{Host, HostError};
use crate::identity::jwt::{self, NoRemoteKeys};
use crate::principal::Caller;
use crate::shared_slot::{self, digest, slot_of, Change};
use crate::tool_acl::compile::Approvals;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the agent puts the approval: `params._meta["warden/approval"]` of its `tools/call`.
pub const META_KEY: &str = "warden/approval";
/// Used ids kept per slot; a full slot refuses new approvals rather than forget used ones.
const IDS_PER_SLOT: usize = 64;
const CLAIMS: [&str; 6] = ["jti", "tenant", "agent", "tool", "args_sha256", "session"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalError {
    /// Bad signature, wrong issuer or audience, expired, malformed.
    Invalid(&'static str),
    /// Valid, but for another tenant, agent, tool, argument set or session.
    NotForThisCall(&'static str),
    TooLong,
    AlreadyUsed,
    /// Too many live approvals in one slot to remember another.
    StoreFull,
}

impl ApprovalError {
    pub fn reason(self) -> &'static str {
        match self {
            ApprovalError::Invalid(_) => "approval_invalid",
            ApprovalError::NotForThisCall(_) => "approval_mismatch",
            ApprovalError::TooLong => "approval_too_long",
            ApprovalError::AlreadyUsed => "approval_reused",
            ApprovalError::StoreFull => "approval_store_full",
        }
    }
}

/// The call an approval must name.
pub struct ApprovedCall<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub args_sha256: &'a str,
}

/// An approval that holds for this call, not yet spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    pub exp: u64,
}

/// Verifies `token` for this call without spending it (nothing is written): see [`spend`].
pub fn verify(
    approvals: &Approvals,
    token: &str,
    caller: &Caller,
    call: &ApprovedCall,
    now: SystemTime,
) -> Result<Verified, ApprovalError> {
    let verified = jwt::verify(token, &approvals.verifier, &[0], &NoRemoteKeys, &CLAIMS, now)
        .map_err(|e| ApprovalError::Invalid(e.reason()))?;
    let claim = |name: &str| -> Option<&str> {
        verified.claims.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.first()).map(String::as_str)
    };
    let (Some(exp), Some(iat)) = (verified.times.exp, verified.times.iat) else {
        return Err(ApprovalError::Invalid("approval_needs_exp_and_iat"));
    };
    if exp - iat > approvals.max_age.as_secs_f64() {
        return Err(ApprovalError::TooLong);
    }
    let tool = format!("{}/{}", call.server, call.tool);
    let checks: [(&str, Option<&str>, &'static str); 5] = [
        ("tool", Some(&tool), "tool"),
        ("args_sha256", Some(call.args_sha256), "arguments"),
        ("agent", caller.agent.as_deref(), "agent"),
        ("tenant", caller.tenant.as_deref(), "tenant"),
        ("session", caller.session.as_deref(), "session"),
    ];
    for (name, want, what) in checks {
        // A part of the principal that is absent must be absent from the approval too.
        if claim(name) != want {
            return Err(ApprovalError::NotForThisCall(what));
        }
    }
    let Some(jti) = claim("jti").filter(|j| !j.is_empty()) else {
        return Err(ApprovalError::Invalid("approval_needs_jti"));
    };
    Ok(Verified { jti: jti.to_string(), exp: exp as u64 })
}

/// Marks a verified approval used, once: a second spend of the same id (a replay, or the same
/// approval raced on another worker) is `AlreadyUsed`. A host fault is returned apart, for the
/// failure mode to decide.
pub fn spend(
    host: &dyn Host,
    approvals: &Approvals,
    verified: &Verified,
    now: SystemTime,
) -> Result<Result<(), ApprovalError>, HostError> {
    mark_used(host, approvals, &verified.jti, verified.exp, now)
}

fn mark_used(
    host: &dyn Host,
    approvals: &Approvals,
    jti: &str,
    exp: u64,
    now: SystemTime,
) -> Result<Result<(), ApprovalError>, HostError> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let id = digest(&["approval", jti]);
    let key = format!("warden.tool_acl.approval.{}", slot_of(&id, approvals.nonce_slots));
    shared_slot::update(host, &key, |lines| {
        // Keep ids until their approval expires (plus the verifier's skew): after that the
        // token itself is refused, so forgetting the id is safe.
        let skew = approvals.verifier.clock_skew.as_secs();
        let mut live: Vec<String> = lines
            .into_iter()
            .filter(|line| {
                line.split_once(' ').and_then(|(_, e)| e.parse::<u64>().ok()).is_some_and(|e| e + skew >= now)
            })
            .map(String::from)
            .collect();
        if live.iter().any(|line| line.split(' ').next() == Some(id.as_str())) {
            return Change::Keep(Err(ApprovalError::AlreadyUsed));
        }
        if live.len() >= IDS_PER_SLOT {
            return Change::Keep(Err(ApprovalError::StoreFull));
        }
        live.push(format!("{id} {exp}"));
        Change::Write(live, Ok(()))
    })
}
