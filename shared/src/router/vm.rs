//! What a router plugin keeps per VM: the compiled `router` section and, for the attempt
//! filter, each provider's credential read once from the proxy's environment.

use super::compile::CompiledRouter;
use crate::policy::{AuditFormat, PolicyDocument};
use std::fmt;

/// A provider's credential. Never printed: `Debug` shows only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Which of the router's two filters a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In the HTTP filter chain: chooses the targets.
    Router,
    /// An upstream filter on the providers' cluster: shapes and authenticates each attempt.
    Attempt,
}

#[derive(Debug)]
pub struct RouterVm {
    pub router: CompiledRouter,
    pub audit_format: AuditFormat,
    /// Per provider (by index): its credential from the environment, when it names one there.
    pub credentials: Vec<Option<Secret>>,
}

impl RouterVm {
    /// `env` reads the proxy's environment as the VM sees it (only the variables Envoy's
    /// `VmConfig.environment_variables` exposes).
    pub fn configure(
        document: &PolicyDocument,
        role: Role,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RouterVm, String> {
        let config = document.router.as_ref().ok_or("the policy has no `router` section")?;
        let router = CompiledRouter::compile(config).map_err(|e| e.to_string())?;
        if role == Role::Router && !document.request_headers.held() {
            return Err("requestHeaders: the router must hold the request headers until its targets are \
                        chosen (`hold`, with the plugin's `allow_on_headers_stop_iteration: true`)"
                .into());
        }
        let mut credentials = Vec::with_capacity(router.providers.len());
        for (i, provider) in router.providers.iter().enumerate() {
            let name = provider.credential.as_ref().and_then(|c| c.env.as_deref());
            let secret = match (role, name) {
                (Role::Attempt, Some(name)) => match env(name).filter(|v| !v.is_empty()) {
                    Some(value) => Some(Secret(value)),
                    None => {
                        return Err(format!(
                            "router.providers[{i}].credential.env: the proxy's environment has no {name} \
                             (expose it with vm_config.environment_variables.host_env_keys)"
                        ))
                    }
                },
                _ => None,
            };
            credentials.push(secret);
        }
        Ok(RouterVm { router, audit_format: document.audit_format, credentials })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_document;

    const POLICY: &str = "router:\n  providers:\n    - { name: openai, kind: openai, cluster: c, credential: { env: OPENAI_KEY } }\n  models:\n    - { alias: fast, targets: [{ provider: openai, model: gpt-4o-mini }] }\n";

    #[test]
    fn the_attempt_filter_needs_each_named_variable_and_never_prints_it() {
        let document = parse_document(POLICY.as_bytes()).unwrap();
        let err = RouterVm::configure(&document, Role::Attempt, &|_| None).unwrap_err();
        assert!(err.contains("router.providers[0].credential.env") && err.contains("OPENAI_KEY"), "{err}");
        let vm = RouterVm::configure(&document, Role::Attempt, &|_| Some("sk-live-123".into())).unwrap();
        assert_eq!(vm.credentials[0].as_ref().map(Secret::expose), Some("sk-live-123"));
        assert!(!format!("{vm:?}").contains("sk-live-123"));
        // The router itself never reads it.
        let router = RouterVm::configure(&document, Role::Router, &|_| panic!("read")).unwrap();
        assert!(router.credentials[0].is_none());
    }

    #[test]
    fn the_router_refuses_released_headers() {
        let document = parse_document(format!("requestHeaders: release\n{POLICY}").as_bytes()).unwrap();
        let err = RouterVm::configure(&document, Role::Router, &|_| None).unwrap_err();
        assert!(err.contains("requestHeaders"), "{err}");
    }
}
