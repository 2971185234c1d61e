//! The `router` section compiled once, every cross-reference checked with the field's path.

use super::config::{CredentialSource, ProviderKind, RouterConfig};
use crate::model_api::ModelPaths;
use crate::policy::PolicyError;
use crate::when::PrincipalMatch;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub cluster: String,
    pub base_path: String,
    pub api_version: Option<String>,
    pub private: bool,
    pub credential: Option<CredentialSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into `CompiledRouter::providers`.
    pub provider: usize,
    pub model: String,
    pub priority: u32,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub alias: String,
    /// Sorted by priority.
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub who: PrincipalMatch,
    pub scopes: Vec<String>,
    pub data_classes: Vec<String>,
    pub private_only: bool,
    /// Provider indexes; empty: any.
    pub providers: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct CompiledRouter {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub rules: Vec<Rule>,
    pub max_attempts: u32,
    pub paths: ModelPaths,
    pub max_cooldown: Duration,
}

/// The most attempts a request may make: the shipped routes' `num_retries` (4) plus the first.
pub const MAX_ATTEMPTS: u32 = 5;

/// Where each kind's API lives when the policy does not say.
fn default_base_path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => "/v1",
        ProviderKind::AzureOpenai => "/openai",
        ProviderKind::Anthropic => "/v1",
    }
}

impl CompiledRouter {
    pub fn compile(config: &RouterConfig) -> Result<CompiledRouter, PolicyError> {
        if config.providers.is_empty() {
            return Err(PolicyError::at("router.providers", "name at least one provider"));
        }
        let mut providers = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.iter().enumerate() {
            let path = format!("router.providers[{i}]");
            if p.name.is_empty() {
                return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
            }
            if config.providers[..i].iter().any(|q| q.name == p.name) {
                return Err(PolicyError::at(format!("{path}.name"), format!("provider {:?} is named twice", p.name)));
            }
            if p.cluster.is_empty() {
                return Err(PolicyError::at(format!("{path}.cluster"), "name the Envoy cluster that reaches it"));
            }
            if p.kind == ProviderKind::AzureOpenai && p.api_version.is_none() {
                return Err(PolicyError::at(format!("{path}.apiVersion"), "Azure OpenAI needs an api-version"));
            }
            let base_path = p.base_path.clone().unwrap_or_else(|| default_base_path(p.kind).to_string());
            if !base_path.starts_with('/') {
                return Err(PolicyError::at(format!("{path}.basePath"), "a path starts with `/`"));
            }
            match &p.credential {
                Some(CredentialSource { env: Some(_), sds: Some(_) } | CredentialSource { env: None, sds: None }) => {
                    return Err(PolicyError::at(format!("{path}.credential"), "name one source: env or sds"));
                }
                Some(CredentialSource { env: Some(name), .. }) if name.is_empty() || name.contains('=') => {
                    return Err(PolicyError::at(format!("{path}.credential.env"), "name an environment variable"));
                }
                Some(CredentialSource { sds: Some(name), .. }) if name.is_empty() => {
                    return Err(PolicyError::at(format!("{path}.credential.sds"), "name an SDS secret"));
                }
                _ => {}
            }
            providers.push(Provider {
                name: p.name.clone(),
                kind: p.kind,
                cluster: p.cluster.clone(),
                base_path,
                api_version: p.api_version.clone(),
                private: p.private,
                credential: p.credential.clone(),
            });
        }
        let provider_index = |name: &str, path: String| {
            providers
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| PolicyError::at(path, format!("no provider is named {name:?}")))
        };
        let mut models = Vec::with_capacity(config.models.len());
        for (i, m) in config.models.iter().enumerate() {
            let path = format!("router.models[{i}]");
            if m.alias.is_empty() {
                return Err(PolicyError::at(format!("{path}.alias"), "must not be empty"));
            }
            if config.models[..i].iter().any(|n| n.alias == m.alias) {
                return Err(PolicyError::at(format!("{path}.alias"), format!("alias {:?} is defined twice", m.alias)));
            }
            if m.targets.is_empty() {
                return Err(PolicyError::at(format!("{path}.targets"), "name at least one target"));
            }
            let mut targets = Vec::with_capacity(m.targets.len());
            for (j, t) in m.targets.iter().enumerate() {
                let target_path = format!("{path}.targets[{j}]");
                let provider = provider_index(&t.provider, format!("{target_path}.provider"))?;
                if t.model.is_empty() {
                    return Err(PolicyError::at(format!("{target_path}.model"), "must not be empty"));
                }
                if config.providers[provider].kind == ProviderKind::AzureOpenai
                    && !t.model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    // An Azure deployment is a path segment: nothing that could change the path.
                    return Err(PolicyError::at(
                        format!("{target_path}.model"),
                        "an Azure deployment name has only letters, digits, `.`, `_` and `-`",
                    ));
                }
                if t.weight == 0 {
                    return Err(PolicyError::at(format!("{target_path}.weight"), "a weight is at least 1"));
                }
                targets.push(Target { provider, model: t.model.clone(), priority: t.priority, weight: t.weight });
            }
            // Stable: targets of one priority keep the order they were written in.
            targets.sort_by_key(|t| t.priority);
            models.push(Model { alias: m.alias.clone(), targets });
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let path = format!("router.rules[{i}]");
            if r.id.is_empty() {
                return Err(PolicyError::at(format!("{path}.id"), "must not be empty"));
            }
            if !r.allow.private_only && r.allow.providers.is_empty() {
                return Err(PolicyError::at(
                    format!("{path}.allow"),
                    "say where such requests may go: privateOnly, providers, or both",
                ));
            }
            let allowed = r
                .allow
                .providers
                .iter()
                .enumerate()
                .map(|(j, name)| provider_index(name, format!("{path}.allow.providers[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                id: r.id.clone(),
                who: PrincipalMatch::new(&r.when.agents, &r.when.users, &r.when.tenants),
                scopes: r.when.scopes.clone(),
                data_classes: r.data_classes.clone(),
                private_only: r.allow.private_only,
                providers: allowed,
            });
        }
        if !(1..=MAX_ATTEMPTS).contains(&config.max_attempts) {
            return Err(PolicyError::at("router.maxAttempts", format!("between 1 and {MAX_ATTEMPTS}")));
        }
        if config.paths.is_empty() {
            return Err(PolicyError::at("router.paths", "name at least one path"));
        }
        if let Some(i) = config.paths.iter().position(|p| !p.starts_with('/')) {
            return Err(PolicyError::at(format!("router.paths[{i}]"), "a path starts with `/`"));
        }
        Ok(CompiledRouter {
            providers,
            models,
            rules,
            max_attempts: config.max_attempts,
            paths: ModelPaths::new(&config.paths),
            max_cooldown: config.max_cooldown.as_duration(),
        })
    }

    pub fn provider(&self, name: &str) -> Option<(usize, &Provider)> {
        self.providers.iter().enumerate().find(|(_, p)| p.name == name)
    }

    pub fn model(&self, alias: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.alias == alias)
    }
}
