//! Decisions, their precedence, enforcement mode and failure mode: written once, used by all.

use crate::host::Host;
use serde::Deserialize;
use std::fmt;

/// What one rule says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEffect {
    /// The rule forbids the request outright.
    Deny,
    /// The rule allows the request only if its requirement is met; `false` when unmet.
    Require { met: bool },
    /// The rule allows the request.
    Allow,
}

/// The outcome of combining every matching rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// Combines the effects of the rules that matched a request.
///
/// Precedence, highest first:
/// 1. an explicit deny wins over everything;
/// 2. an unmet requirement denies, even when another rule allows;
/// 3. an allow (or a met requirement) allows;
/// 4. nothing matched: deny. There is no implicit allow anywhere in Warden.
///
/// A rule that could not be evaluated (a runtime fault) is the caller's to map to `Deny`
/// through its failure mode before it gets here; this function never guesses.
pub fn combine(effects: impl IntoIterator<Item = RuleEffect>) -> Verdict {
    let mut allowed = false;
    let mut unmet = false;
    for effect in effects {
        match effect {
            RuleEffect::Deny => return Verdict::Deny,
            RuleEffect::Require { met: false } => unmet = true,
            RuleEffect::Require { met: true } | RuleEffect::Allow => allowed = true,
        }
    }
    if unmet || !allowed {
        Verdict::Deny
    } else {
        Verdict::Allow
    }
}

/// Whether a policy enforces its decisions or only records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, record and count, but let every request through (Envoy RBAC's shadow rules).
    Shadow,
}

/// What to do when a decision cannot be made because of a runtime fault (a callout failed,
/// keys could not be fetched): never silently, always counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

/// The rule every failure-mode decision is recorded under.
pub const FAILURE_MODE_RULE: &str = "failure-mode";

impl FailureMode {
    /// The decision for a request that could not be decided because of a runtime fault: the
    /// failure mode's verdict, under rule `failure-mode`, with the fault as its reason, counted
    /// in `counter` (each filter's `failure_mode_applied`). Every filter takes its fault
    /// decisions from here, so they read and count alike.
    pub fn apply(self, host: &dyn Host, counter: &str, fault: &'static str) -> Decision {
        let _ = host.increment(counter, 1);
        match self {
            FailureMode::Allow => Decision::allow(FAILURE_MODE_RULE, fault),
            FailureMode::Deny => Decision::deny(FAILURE_MODE_RULE, fault),
        }
    }
}

/// One filter's recorded decision, as written to the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule that decided (a route name, `default`, `failure-mode`).
    pub rule: String,
    /// A short, stable reason code such as `token_expired`; never a secret.
    pub reason: &'static str,
    /// True when the verdict was deny but shadow mode let the request through.
    pub shadowed: bool,
}

impl Decision {
    pub fn allow(rule: impl Into<String>, reason: &'static str) -> Decision {
        Decision { verdict: Verdict::Allow, rule: rule.into(), reason, shadowed: false }
    }

    pub fn deny(rule: impl Into<String>, reason: &'static str) -> Decision {
        Decision { verdict: Verdict::Deny, rule: rule.into(), reason, shadowed: false }
    }

    /// `allow`, `deny`, or `shadow_deny` for a deny that shadow mode let through.
    pub fn verdict_str(&self) -> &'static str {
        if self.shadowed {
            "shadow_deny"
        } else {
            self.verdict.as_str()
        }
    }
}

/// The decision in one word-string for log lines: `deny;rule=mcp;reason=token_expired`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};rule={};reason={}", self.verdict_str(), self.rule, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuleEffect::*;

    #[test]
    fn deny_beats_everything() {
        assert_eq!(combine([Allow, Deny, Require { met: true }]), Verdict::Deny);
    }

    #[test]
    fn unmet_requirement_beats_allow() {
        assert_eq!(combine([Allow, Require { met: false }]), Verdict::Deny);
    }

    #[test]
    fn allow_and_met_requirements_allow() {
        assert_eq!(combine([Allow]), Verdict::Allow);
        assert_eq!(combine([Require { met: true }]), Verdict::Allow);
    }

    #[test]
    fn nothing_matched_is_deny() {
        assert_eq!(combine([]), Verdict::Deny);
    }

    #[test]
    fn decision_prints_for_the_access_log() {
        let d = Decision { verdict: Verdict::Deny, rule: "mcp".into(), reason: "token_expired", shadowed: true };
        assert_eq!(d.to_string(), "shadow_deny;rule=mcp;reason=token_expired");
    }
}
