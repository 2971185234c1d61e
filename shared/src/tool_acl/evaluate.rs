//! Who may call which tool: every rule that applies, combined by `decision::combine`, then the
//! escalation a write or destructive call needs.

use crate::decision::{combine, RuleEffect, Verdict};
use crate::principal::Caller;
use crate::tool_acl::arguments::Check;
use crate::tool_acl::compile::{CompiledToolAcl, Rule};
use crate::tool_acl::config::{Escalation, Requirement, RuleEffectConfig};
use crate::tool_acl::risk::Risk;
use serde_json::Value;

/// The call being decided.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub risk: Risk,
    /// `None` while filtering a `tools/list` answer: no arguments exist yet.
    pub arguments: Option<&'a Value>,
}

/// What the policy says about a call, before any state (approvals, limits) is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow {
        rule: String,
    },
    /// Allowed once a valid, unused approval for exactly this call is presented.
    NeedsApproval {
        rule: String,
    },
    Deny {
        rule: String,
        reason: &'static str,
        hint: Hint,
    },
}

/// What would make a denied call acceptable, told to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    Nothing,
    /// The principal needs these (a step-up).
    Requirement(Requirement),
    /// An approval token for this call.
    Approval,
}

impl Outcome {
    pub fn rule(&self) -> &str {
        match self {
            Outcome::Allow { rule } | Outcome::NeedsApproval { rule } | Outcome::Deny { rule, .. } => rule,
        }
    }

    /// Whether a `tools/list` answer shows the tool: the agent can call it now or after a
    /// step-up or an approval; a tool it can never call is hidden.
    pub fn visible(&self) -> bool {
        !matches!(self, Outcome::Deny { hint: Hint::Nothing, .. })
    }
}

/// Default rule id when no rule allowed the call.
pub const DEFAULT_RULE: &str = "default";

fn applies(rule: &Rule, caller: &Caller, call: &Call) -> bool {
    rule.servers.matches(call.server) && rule.tools.matches(call.tool) && about(rule, caller)
}

/// Whether the rule's `when` conditions hold for the caller. A condition on a part of the
/// principal that is absent never holds.
fn about(rule: &Rule, caller: &Caller) -> bool {
    rule.who.matches(caller) && caller.has_scopes(&rule.scopes)
}

/// Whether the caller may reach `server` at all (start a session, list, read): some `allow`
/// rule for the server is about it, and no server-wide `deny` (no tool or argument condition)
/// is. `Err` names the deciding rule.
pub fn reachable(acl: &CompiledToolAcl, caller: &Caller, server: &str) -> Result<(), String> {
    let for_server = || acl.rules.iter().filter(|r| r.servers.matches(server) && about(r, caller));
    if let Some(rule) =
        for_server().find(|r| r.effect == RuleEffectConfig::Deny && r.tools.is_any() && r.arguments.is_empty())
    {
        return Err(rule.id.clone());
    }
    if for_server().any(|r| r.effect == RuleEffectConfig::Allow) {
        Ok(())
    } else {
        Err(DEFAULT_RULE.to_string())
    }
}

/// Whether every argument constraint holds; unknown arguments (listing) count as holding.
fn arguments_hold(rule: &Rule, call: &Call) -> bool {
    match call.arguments {
        None => true,
        Some(arguments) => rule.arguments.iter().all(|c| c.holds(arguments)),
    }
}

/// Whether a deny rule's constraints let it apply: none of them certainly fails. A value that
/// is missing or cannot be judged makes the deny apply rather than lapse.
fn deny_applies(rule: &Rule, arguments: &Value) -> bool {
    rule.arguments.iter().all(|c| c.check(arguments) != Check::Fails)
}

pub fn meets(caller: &Caller, requirement: &Requirement) -> bool {
    caller.has_scopes(&requirement.scopes)
        && (requirement.acr.is_empty() || caller.acr.as_ref().is_some_and(|acr| requirement.acr.contains(acr)))
}

pub fn evaluate(acl: &CompiledToolAcl, caller: &Caller, call: &Call) -> Outcome {
    let mut effects = Vec::new();
    let mut first_deny = None;
    let mut first_unmet: Option<&Rule> = None;
    let mut first_allow: Option<&Rule> = None;
    let mut argument_miss: Option<&Rule> = None;
    for rule in acl.rules.iter().filter(|r| applies(r, caller, call)) {
        match rule.effect {
            // A deny with argument constraints applies unless one of them certainly fails
            // (a missing or unjudgeable value does not make it lapse); while listing,
            // arguments are unknown, so such a deny cannot hide the tool.
            RuleEffectConfig::Deny => {
                let applies_now = match call.arguments {
                    None => rule.arguments.is_empty(),
                    Some(arguments) => deny_applies(rule, arguments),
                };
                if applies_now {
                    effects.push(RuleEffect::Deny);
                    first_deny = first_deny.or(Some(rule));
                }
            }
            RuleEffectConfig::Require => {
                let met = meets(caller, &rule.require) && arguments_hold(rule, call);
                effects.push(RuleEffect::Require { met });
                if !met {
                    first_unmet = first_unmet.or(Some(rule));
                }
            }
            RuleEffectConfig::Allow => {
                if arguments_hold(rule, call) {
                    effects.push(RuleEffect::Allow);
                    first_allow = first_allow.or(Some(rule));
                } else {
                    argument_miss = argument_miss.or(Some(rule));
                }
            }
        }
    }

    // Precedence lives in `combine`; here we only name the rule that decided and the reason.
    if combine(effects) == Verdict::Deny {
        return match (first_deny, first_unmet, argument_miss) {
            (Some(rule), _, _) => deny(rule, "denied_by_rule", Hint::Nothing),
            // An unmet scope or acr can be fixed by a step-up; failed arguments cannot.
            (None, Some(rule), _) if !meets(caller, &rule.require) => {
                deny(rule, "requirement_unmet", Hint::Requirement(rule.require.clone()))
            }
            (None, Some(rule), _) => deny(rule, "argument_constraint", Hint::Nothing),
            (None, None, Some(rule)) if first_allow.is_none() => deny(rule, "argument_constraint", Hint::Nothing),
            _ => Outcome::Deny { rule: DEFAULT_RULE.into(), reason: "no_rule_allows", hint: Hint::Nothing },
        };
    }
    let Some(rule) = first_allow else {
        // `combine` allowed on met requirements alone: requirements narrow, they never grant.
        return Outcome::Deny { rule: DEFAULT_RULE.into(), reason: "no_rule_allows", hint: Hint::Nothing };
    };
    let escalation = match call.risk {
        Risk::Read => return Outcome::Allow { rule: rule.id.clone() },
        Risk::Write => &rule.escalation.write,
        Risk::Destructive => &rule.escalation.destructive,
    };
    let step_up = rule.escalation.step_up.clone().unwrap_or_default();
    match escalation {
        Escalation::Allow => Outcome::Allow { rule: rule.id.clone() },
        Escalation::StepUp if meets(caller, &step_up) => Outcome::Allow { rule: rule.id.clone() },
        Escalation::StepUp => deny(rule, "step_up_required", Hint::Requirement(step_up)),
        Escalation::Approval => Outcome::NeedsApproval { rule: rule.id.clone() },
        Escalation::Deny => deny(rule, "risk_not_allowed", Hint::Nothing),
    }
}

fn deny(rule: &Rule, reason: &'static str, hint: Hint) -> Outcome {
    Outcome::Deny { rule: rule.id.clone(), reason, hint }
}
