//! Metric names of the token-budget filter (Envoy prefixes Wasm metrics with `wasmcustom.`; the
//! shipped configs' `stats_tags` turn the name parts after a fixed name into labels, see
//! `docs/metrics.md`).

use super::compile::Budget;
use super::config::ScopePart;
use crate::metric_labels::{self, LabelSets, OTHER};
use crate::principal::Caller;

pub const ALLOWED: &str = "warden.token_budget.allowed";
pub const REFUSED: &str = "warden.token_budget.refused";
pub const SHADOW_REFUSED: &str = "warden.token_budget.shadow_refused";
pub const FALLBACK: &str = "warden.token_budget.fallback";
pub const STREAM_CUT: &str = "warden.token_budget.stream_cut";
pub const INPUT_TOKENS: &str = "warden.token_budget.input_tokens";
pub const OUTPUT_TOKENS: &str = "warden.token_budget.output_tokens";
/// Tokens by which a prompt estimate fell short of the provider's count.
pub const UNDERESTIMATE_TOKENS: &str = "warden.token_budget.underestimate_tokens";
pub const COST_MICRO_USD: &str = "warden.token_budget.cost_micro_usd";
pub const BAD_REQUEST: &str = "warden.token_budget.bad_request";
pub const BODY_TOO_LARGE: &str = "warden.token_budget.body_too_large";
/// A runtime fault (shared data, rate-limit service) decided by a failure mode.
pub const FAILURE_MODE: &str = "warden.token_budget.failure_mode_applied";
pub const RLS_ERRORS: &str = "warden.token_budget.rls_errors";
pub const RLS_SETTLES: &str = "warden.token_budget.rls_settles";
/// Answers that could not be read (encoded) and were failed closed.
pub const ANSWERS_WITHHELD: &str = "warden.token_budget.answers_withheld";
/// Prompts counted exactly, because their upper bound did not fit a budget.
pub const EXACT_COUNTS: &str = "warden.token_budget.prompts_counted_exactly";

/// The counter for a refusal by this budget, e.g. `warden.token_budget.refused.tenant-daily`.
pub fn refused_by(budget: &str) -> String {
    format!("{REFUSED}.{budget}")
}

/// Every fixed counter, defined when the policy loads so that no request pays for defining it.
pub const ALL: [&str; 16] = [
    ALLOWED,
    REFUSED,
    SHADOW_REFUSED,
    FALLBACK,
    STREAM_CUT,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    UNDERESTIMATE_TOKENS,
    COST_MICRO_USD,
    BAD_REQUEST,
    BODY_TOO_LARGE,
    FAILURE_MODE,
    RLS_ERRORS,
    RLS_SETTLES,
    ANSWERS_WITHHELD,
    EXACT_COUNTS,
];

/// What is counted per tenant and served model.
pub const USAGE: [&str; 4] = ["requests", "input_tokens", "output_tokens", "cost_micro_usd"];

/// `warden.token_budget.usage.<what>.tenant.<tenant>.model.<model>`: a settled request's usage
/// by the tenant it was made for and the model that served it (labels `tenant`, `model`). A
/// model the policy does not name (`known` false: a client's free choice) is `other`, so no
/// client can fill the label sets; past the VM's bound on them, both are `other`.
pub fn usage(sets: &LabelSets, what: &str, tenant: Option<&str>, model: &str, known: bool) -> String {
    let tenant = metric_labels::value(tenant.unwrap_or_default(), false);
    let model = if known { metric_labels::value(model, true) } else { OTHER.into() };
    let (tenant, model) =
        if sets.admit(&format!("{tenant} {model}")) { (tenant, model) } else { (OTHER.into(), OTHER.into()) };
    format!("warden.token_budget.usage.{what}.tenant.{tenant}.model.{model}")
}

/// `warden.token_budget.remaining.<budget>.tenant.<tenant>` (labels `budget`, `tenant`): what a
/// budget counted per tenant had left, in its unit, after the last request this VM reserved in
/// it. Only budgets counted per tenant alone have one; a budget per session, agent, user or
/// model has too many counters for a gauge each.
pub fn remaining(sets: &LabelSets, budget: &Budget, caller: &Caller) -> Option<String> {
    if budget.scope != [ScopePart::Tenant] {
        return None;
    }
    let tenant = metric_labels::value(caller.tenant.as_deref().unwrap_or_default(), false);
    let tenant = if sets.admit(&format!("{} {tenant}", budget.id)) { tenant } else { OTHER.into() };
    Some(format!("warden.token_budget.remaining.{}.tenant.{tenant}", budget.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::compile::CompiledTokenBudget;
    use crate::policy::parse_document;

    fn budgets() -> CompiledTokenBudget {
        let doc = parse_document(
            b"tokenBudget:\n  budgets:\n    - { id: tenant-daily, scope: [tenant], unit: totalTokens, limit: 10, window: day }\n    - { id: per-model, scope: [tenant, model], unit: requests, limit: 10, window: day }\n    - { id: per-session, scope: [session], unit: totalTokens, limit: 10, window: session }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        CompiledTokenBudget::compile(&doc.token_budget.unwrap_or_else(|| panic!())).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn usage_names_carry_tenant_and_model_within_the_bound() {
        let sets = LabelSets::new(2);
        assert_eq!(
            usage(&sets, "input_tokens", Some("acme.eu"), "gpt-4.1", true),
            "warden.token_budget.usage.input_tokens.tenant.acme_eu.model.gpt-4.1"
        );
        assert_eq!(usage(&sets, "requests", None, "m", true), "warden.token_budget.usage.requests.tenant.none.model.m");
        assert_eq!(
            usage(&sets, "requests", Some("third"), "m", true),
            "warden.token_budget.usage.requests.tenant.other.model.other"
        );
        let fresh = LabelSets::new(2);
        assert_eq!(
            usage(&fresh, "requests", Some("acme"), "made-up-1", false),
            "warden.token_budget.usage.requests.tenant.acme.model.other",
            "a model the policy does not name takes no label set of its own"
        );
    }

    #[test]
    fn only_budgets_counted_per_tenant_have_a_headroom_gauge() {
        let policy = budgets();
        let sets = LabelSets::new(8);
        let caller = Caller { tenant: Some("acme".into()), session: Some("s".into()), ..Caller::default() };
        assert_eq!(
            remaining(&sets, &policy.budgets[0], &caller).as_deref(),
            Some("warden.token_budget.remaining.tenant-daily.tenant.acme")
        );
        assert_eq!(remaining(&sets, &policy.budgets[1], &caller), None);
        assert_eq!(remaining(&sets, &policy.budgets[2], &caller), None);
    }
}
