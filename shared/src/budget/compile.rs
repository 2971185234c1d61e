//! The `tokenBudget` section compiled once at configure time: globs, prices in micro-USD,
//! limits as whole units, and every cross-field rule checked so the request path never is.

use super::config::{
    BudgetConfig, BudgetFailureMode, Encoding, ModelConfig, PriceConfig, ScopePart, Store, TokenBudgetConfig,
    ToolPriceConfig, Unit, Window,
};
use super::tool_call::ToolCall;
use crate::decision::Mode;
use crate::glob::{Glob, GlobSet};
use crate::model_api::ModelPaths;
use crate::policy::PolicyError;
use crate::principal::Caller;
use crate::tool_acl::risk::Risk;
use crate::when::PrincipalMatch;
use std::time::Duration;

/// Prices in micro-USD per token (the policy's USD per million tokens, unchanged in value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

impl From<PriceConfig> for Price {
    fn from(p: PriceConfig) -> Self {
        Price { input: p.input, cached_input: p.cached_input.unwrap_or(p.input), output: p.output }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: Glob,
    pub encoding: Encoding,
    pub price: Option<Price>,
    /// The router's provider it prices the model at; `None`: any.
    pub provider: Option<String>,
}

/// What the policy knows about one requested model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    pub encoding: Encoding,
    pub price: Option<Price>,
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub id: String,
    pub scope: Vec<ScopePart>,
    pub unit: Unit,
    /// Whole tokens or requests, or micro-USD.
    pub limit: u64,
    pub window: Window,
    pub store: Store,
    pub failure_mode: BudgetFailureMode,
    pub fallback_model: Option<String>,
    /// Whose requests it counts (`when`).
    who: PrincipalMatch,
    models: GlobSet,
    /// Which tool calls it counts (`when.tools`, `.servers`, `.risks`).
    tools: GlobSet,
    servers: GlobSet,
    risks: Vec<Risk>,
    /// Counts MCP tool calls and no model request (`BudgetConfig::counts_calls_only`).
    calls_only: bool,
}

impl Budget {
    /// Whether this budget counts a request by `caller` for `model`.
    pub fn applies(&self, caller: &Caller, model: &str) -> bool {
        !self.calls_only && self.who.matches(caller) && (self.models.is_any() || self.models.matches(model))
    }

    /// Whether this budget counts `call` by `caller`: a tool-call budget whose conditions it
    /// meets, or a cost budget for every model (at the tool's price).
    pub fn applies_to_call(&self, caller: &Caller, call: &ToolCall) -> bool {
        // A cost budget counted per model has no counter a tool call could fall in.
        let counts = self.unit == Unit::ToolCalls
            || (self.unit == Unit::CostUsd && self.models.is_any() && !self.scope.contains(&ScopePart::Model));
        counts
            && self.who.matches(caller)
            && (self.tools.is_any() || self.tools.matches(&call.tool))
            && (self.servers.is_any() || self.servers.matches(&call.server))
            && (self.risks.is_empty() || self.risks.contains(&call.risk))
    }

    /// The values this budget is counted per, in scope order; the missing part's name when
    /// the caller lacks one (no session on a session budget): such a request is refused.
    pub fn scope_values<'a>(
        &self,
        caller: &'a Caller,
        model: &'a str,
        call: Option<&'a ToolCall>,
    ) -> Result<Vec<(&'static str, &'a str)>, &'static str> {
        self.scope
            .iter()
            .map(|part| {
                let value = match part {
                    ScopePart::Request => Some("-"),
                    ScopePart::Session => caller.session.as_deref(),
                    ScopePart::Agent => caller.agent.as_deref(),
                    ScopePart::User => caller.user.as_deref(),
                    ScopePart::Tenant => caller.tenant.as_deref(),
                    ScopePart::Model => Some(model),
                    ScopePart::Tool => call.map(|c| c.tool.as_str()),
                    ScopePart::Server => call.map(|c| c.server.as_str()),
                };
                value.map(|v| (part.key(), v)).ok_or(part.key())
            })
            .collect()
    }
}

impl ScopePart {
    pub fn key(self) -> &'static str {
        match self {
            ScopePart::Request => "request",
            ScopePart::Session => "session",
            ScopePart::Agent => "agent",
            ScopePart::User => "user",
            ScopePart::Tenant => "tenant",
            ScopePart::Model => "model",
            ScopePart::Tool => "tool",
            ScopePart::Server => "server",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout: Duration,
    pub release: bool,
}

#[derive(Debug, Clone)]
pub struct CompiledTokenBudget {
    pub mode: Mode,
    pub paths: ModelPaths,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub default_max_output_tokens: Option<u32>,
    pub models: Vec<Model>,
    pub budgets: Vec<Budget>,
    pub rate_limit_service: Option<RateLimitService>,
    pub slots: usize,
    pub session_idle: Duration,
    /// The router's aliases and their targets (provider, model), when the document routes:
    /// a request for an alias is reserved at the dearest target it may reach.
    pub routes: Vec<(String, Vec<(String, String)>)>,
    /// Tool-call prices, first match wins.
    pub tool_prices: Vec<ToolPrice>,
}

/// What one MCP tool call costs, in micro-USD.
#[derive(Debug, Clone)]
pub struct ToolPrice {
    pub name: Glob,
    pub server: Option<String>,
    pub micro_usd: u64,
}

impl CompiledTokenBudget {
    pub fn compile(config: &TokenBudgetConfig) -> Result<CompiledTokenBudget, PolicyError> {
        let models = config
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| compile_model(m, &format!("tokenBudget.models[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut budgets: Vec<Budget> = Vec::with_capacity(config.budgets.len());
        for (i, b) in config.budgets.iter().enumerate() {
            let path = format!("tokenBudget.budgets[{i}]");
            if budgets.iter().any(|other| other.id == b.id) {
                return Err(PolicyError::at(format!("{path}.id"), format!("budget id {:?} is used twice", b.id)));
            }
            budgets.push(compile_budget(b, &path, config, &models)?);
        }
        let tool_prices = config
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| compile_tool_price(t, &format!("tokenBudget.tools[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if config.budgets.is_empty() {
            return Err(PolicyError::at("tokenBudget.budgets", "name at least one budget"));
        }
        if config.slots == 0 {
            return Err(PolicyError::at("tokenBudget.slots", "must be at least 1"));
        }
        if config.default_max_output_tokens == Some(0) {
            return Err(PolicyError::at("tokenBudget.defaultMaxOutputTokens", "must be at least 1"));
        }
        let rate_limit_service = config.rate_limit_service.as_ref().map(|r| RateLimitService {
            cluster: r.cluster.clone(),
            domain: r.domain.clone(),
            timeout: r.timeout.as_duration(),
            release: r.release,
        });
        if let Some(rls) = &rate_limit_service {
            if rls.cluster.is_empty() || rls.domain.is_empty() {
                return Err(PolicyError::at("tokenBudget.rateLimitService", "cluster and domain must not be empty"));
            }
            if rls.timeout.is_zero() {
                return Err(PolicyError::at("tokenBudget.rateLimitService.timeout", "must be above zero"));
            }
        }
        if config.paths.is_empty() {
            return Err(PolicyError::at("tokenBudget.paths", "name at least one model path"));
        }
        if let Some(i) = config.paths.iter().position(|p| !p.starts_with('/')) {
            return Err(PolicyError::at(format!("tokenBudget.paths[{i}]"), "a path starts with `/`"));
        }
        Ok(CompiledTokenBudget {
            mode: config.mode,
            paths: ModelPaths::new(&config.paths),
            max_body_bytes: config.max_body_bytes,
            max_response_bytes: config.max_response_bytes,
            default_max_output_tokens: config.default_max_output_tokens,
            models,
            budgets,
            rate_limit_service,
            slots: config.slots,
            session_idle: config.session_idle.as_duration(),
            routes: Vec::new(),
            tool_prices,
        })
    }

    /// A tool call's price in micro-USD (zero when the policy prices no such call).
    pub fn tool_price(&self, call: &ToolCall) -> u64 {
        self.tool_prices
            .iter()
            .find(|p| p.name.matches(&call.tool) && p.server.as_ref().is_none_or(|s| *s == call.server))
            .map_or(0, |p| p.micro_usd)
    }

    /// The tokenizer and price of a model: the first configured entry that matches, else the
    /// encoding of its family and no price. A router alias is priced at the dearest of its
    /// targets (each component at its highest), so its reservation covers whichever serves it.
    pub fn model(&self, name: &str) -> ModelInfo {
        if let Some((_, targets)) = self.routes.iter().find(|(alias, _)| alias == name) {
            let mut price: Option<Price> = None;
            for (provider, model) in targets {
                let Some(p) = self.model_at(Some(provider), model).price else {
                    // A target with no price: the alias cannot be priced.
                    return ModelInfo { encoding: self.model_at(None, name).encoding, price: None };
                };
                price = Some(match price {
                    None => p,
                    Some(q) => Price {
                        input: q.input.max(p.input),
                        cached_input: q.cached_input.max(p.cached_input),
                        output: q.output.max(p.output),
                    },
                });
            }
            return ModelInfo { encoding: self.model_at(None, name).encoding, price };
        }
        self.model_at(None, name)
    }

    /// The entry for `name` at `provider` (an entry for that provider first, then one for any
    /// provider); without a provider, only entries for any provider.
    pub fn model_at(&self, provider: Option<&str>, name: &str) -> ModelInfo {
        let at_provider = provider
            .and_then(|p| self.models.iter().find(|m| m.provider.as_deref() == Some(p) && m.name.matches(name)));
        match at_provider.or_else(|| self.models.iter().find(|m| m.provider.is_none() && m.name.matches(name))) {
            Some(m) => ModelInfo { encoding: m.encoding, price: m.price },
            None => ModelInfo { encoding: family_encoding(name), price: None },
        }
    }

    pub fn has_global(&self) -> bool {
        self.budgets.iter().any(|b| b.store == Store::Global)
    }
}

/// The encoding OpenAI uses for a model family; anything else is estimated.
pub fn family_encoding(model: &str) -> Encoding {
    const O200K: [&str; 8] = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"];
    const CL100K: [&str; 4] = ["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
    if O200K.iter().any(|p| model.starts_with(p)) || model.starts_with("gpt-oss") {
        Encoding::O200k
    } else if CL100K.iter().any(|p| model.starts_with(p)) {
        Encoding::Cl100k
    } else {
        Encoding::Estimate
    }
}

fn compile_model(config: &ModelConfig, path: &str) -> Result<Model, PolicyError> {
    if config.name.is_empty() {
        return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
    }
    if let Some(p) = config.price {
        let prices = [("input", Some(p.input)), ("cachedInput", p.cached_input), ("output", Some(p.output))];
        for (field, value) in prices {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(PolicyError::at(format!("{path}.price.{field}"), "must be a price of zero or more"));
            }
        }
    }
    Ok(Model {
        name: Glob::new(&config.name),
        encoding: config.encoding.unwrap_or_else(|| family_encoding(&config.name)),
        price: config.price.map(Price::from),
        provider: config.provider.clone(),
    })
}

fn compile_tool_price(config: &ToolPriceConfig, path: &str) -> Result<ToolPrice, PolicyError> {
    if config.name.is_empty() {
        return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
    }
    if !config.price.is_finite() || config.price < 0.0 {
        return Err(PolicyError::at(format!("{path}.price"), "must be a price of zero or more (USD per call)"));
    }
    Ok(ToolPrice {
        name: Glob::new(&config.name),
        server: config.server.clone(),
        micro_usd: (config.price * 1e6).round() as u64,
    })
}

fn compile_budget(
    b: &BudgetConfig,
    path: &str,
    config: &TokenBudgetConfig,
    models: &[Model],
) -> Result<Budget, PolicyError> {
    if b.id.is_empty() || !b.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(PolicyError::at(format!("{path}.id"), "use letters, digits, `-` and `_` only"));
    }
    if b.scope.is_empty() {
        return Err(PolicyError::at(format!("{path}.scope"), "name what the budget is counted per"));
    }
    let mut seen = Vec::new();
    for part in &b.scope {
        if seen.contains(part) {
            return Err(PolicyError::at(format!("{path}.scope"), format!("`{}` is named twice", part.key())));
        }
        seen.push(*part);
    }
    let per_request = b.scope.contains(&ScopePart::Request);
    if per_request != (b.window == Window::Request) {
        return Err(PolicyError::at(
            format!("{path}.window"),
            "a per-request maximum has `scope: [request]` and `window: request`, and only it",
        ));
    }
    if per_request && b.scope.len() > 1 {
        return Err(PolicyError::at(format!("{path}.scope"), "`request` cannot be combined with other parts"));
    }
    if b.window == Window::Session && !b.scope.contains(&ScopePart::Session) {
        return Err(PolicyError::at(format!("{path}.window"), "a session window needs `session` in the scope"));
    }
    if !(b.limit.is_finite() && b.limit > 0.0) {
        return Err(PolicyError::at(format!("{path}.limit"), "must be above zero"));
    }
    let limit = if b.unit == Unit::CostUsd {
        (b.limit * 1e6).round() as u64
    } else if b.limit.fract() == 0.0 {
        b.limit as u64
    } else {
        return Err(PolicyError::at(format!("{path}.limit"), "tokens and requests are whole numbers"));
    };
    if b.store == Store::Global {
        let Some(_) = &config.rate_limit_service else {
            return Err(PolicyError::at(
                format!("{path}.store"),
                "a global budget needs `tokenBudget.rateLimitService`",
            ));
        };
        if matches!(b.window, Window::Request | Window::Session) {
            return Err(PolicyError::at(
                format!("{path}.window"),
                "a global budget has a minute, hour, day or month window (sessions are counted locally)",
            ));
        }
        if super::rls::hits(b.unit, limit) > u64::from(u32::MAX) {
            return Err(PolicyError::at(format!("{path}.limit"), "too large for the rate-limit API (2^32 units)"));
        }
    } else if b.failure_mode != BudgetFailureMode::Deny {
        return Err(PolicyError::at(format!("{path}.failureMode"), "only a global budget has a failure mode"));
    }
    let calls_only = b.counts_calls_only();
    if calls_only {
        if !matches!(b.unit, Unit::ToolCalls | Unit::CostUsd) {
            return Err(PolicyError::at(
                format!("{path}.unit"),
                "a budget of tool calls (`when.tools`, `.servers`, `.risks`) counts `toolCalls` or `costUsd`",
            ));
        }
        if !b.when.models.is_empty() {
            return Err(PolicyError::at(format!("{path}.when.models"), "a budget of tool calls counts no model"));
        }
        if b.fallback_model.is_some() {
            return Err(PolicyError::at(
                format!("{path}.fallbackModel"),
                "a budget of tool calls has no fallback model",
            ));
        }
        if b.scope.contains(&ScopePart::Model) {
            return Err(PolicyError::at(format!("{path}.scope"), "a tool call has no model to be counted per"));
        }
        if b.unit == Unit::CostUsd && config.tools.is_empty() {
            return Err(PolicyError::at(
                format!("{path}.unit"),
                "a cost budget of tool calls needs their prices in `tokenBudget.tools`",
            ));
        }
    } else if let Some(part) = b.scope.iter().find(|p| matches!(p, ScopePart::Tool | ScopePart::Server)) {
        return Err(PolicyError::at(
            format!("{path}.scope"),
            format!("`{}` is a part of tool calls: give the budget `unit: toolCalls` or a `when` on tools", part.key()),
        ));
    }
    if b.unit == Unit::CostUsd && !calls_only && models.iter().all(|m| m.price.is_none()) {
        return Err(PolicyError::at(format!("{path}.unit"), "a cost budget needs prices in `tokenBudget.models`"));
    }
    if let Some(fallback) = &b.fallback_model {
        if fallback.is_empty() || fallback.contains(['*', '?']) {
            return Err(PolicyError::at(format!("{path}.fallbackModel"), "name one model"));
        }
        if b.unit == Unit::CostUsd && !models.iter().any(|m| m.name.matches(fallback) && m.price.is_some()) {
            return Err(PolicyError::at(
                format!("{path}.fallbackModel"),
                format!("{fallback:?} has no price in `tokenBudget.models`"),
            ));
        }
        if per_request {
            return Err(PolicyError::at(format!("{path}.fallbackModel"), "a per-request maximum has no fallback"));
        }
    }
    Ok(Budget {
        id: b.id.clone(),
        scope: b.scope.clone(),
        unit: b.unit,
        limit,
        window: b.window,
        store: b.store,
        failure_mode: b.failure_mode,
        fallback_model: b.fallback_model.clone(),
        who: PrincipalMatch::new(&b.when.agents, &b.when.users, &b.when.tenants),
        models: GlobSet::new(&b.when.models),
        tools: GlobSet::new(&b.when.tools),
        servers: GlobSet::new(&b.when.servers),
        risks: b.when.risks.clone(),
        calls_only,
    })
}
