//! Metric names of the token-budget filter (Envoy prefixes Wasm metrics with `wasmcustom.`).

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
