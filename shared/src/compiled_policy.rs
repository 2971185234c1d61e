//! The whole policy document compiled section by section, each with the compile step its filter
//! runs at configure time. `wardenctl validate` and `explain` use it, so the CLI refuses exactly
//! what Envoy would refuse, with the same message naming the field.

use crate::budget::vm::BudgetVm;
use crate::identity::compile::CompiledIdentity;
use crate::policy::{parse_document, PolicyDocument};
use crate::redaction::compile::CompiledRedaction;
use crate::router::vm::{Role, RouterVm};
use crate::tool_acl::compile::CompiledToolAcl;

/// Every section the document has, compiled.
pub struct CompiledPolicy {
    pub document: PolicyDocument,
    pub identity: Option<CompiledIdentity>,
    pub tool_acl: Option<CompiledToolAcl>,
    pub token_budget: Option<BudgetVm>,
    pub router: Option<RouterVm>,
    pub redaction: Option<CompiledRedaction>,
}

impl CompiledPolicy {
    /// Parses and compiles `text`. `env` stands for the proxy's environment (the redaction hash
    /// key); the router is compiled as its chain plugin is, which reads no credential, so a
    /// provider key missing from this process's environment is not an error here.
    pub fn compile(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<CompiledPolicy, String> {
        let document = parse_document(text).map_err(|e| e.to_string())?;
        let identity = match &document.identity {
            Some(section) => {
                let mut compiled = CompiledIdentity::compile(section).map_err(|e| e.to_string())?;
                compiled.audit_format = document.audit_format;
                Some(compiled)
            }
            None => None,
        };
        let tool_acl = match &document.tool_acl {
            Some(section) => {
                let mut compiled = CompiledToolAcl::compile(section).map_err(|e| e.to_string())?;
                compiled.audit_format = document.audit_format;
                Some(compiled)
            }
            None => None,
        };
        let token_budget = match document.token_budget {
            Some(_) => Some(BudgetVm::configure(&document, 0)?),
            None => None,
        };
        let router = match document.router {
            Some(_) => Some(RouterVm::configure(&document, Role::Router, env)?),
            None => None,
        };
        let redaction = match &document.redaction {
            Some(section) => {
                let mut compiled = CompiledRedaction::compile(section, env).map_err(|e| e.to_string())?;
                compiled.audit_format = document.audit_format;
                Some(compiled)
            }
            None => None,
        };
        Ok(CompiledPolicy { document, identity, tool_acl, token_budget, router, redaction })
    }

    /// The environment variables the proxy must expose to the filters' VMs for this policy
    /// (`vm_config.environment_variables.host_env_keys`): provider credentials and the
    /// redaction hash key.
    pub fn environment(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(router) = &self.router {
            names.extend(router.router.providers.iter().filter_map(|p| p.credential.as_ref()?.env.clone()));
        }
        if let Some(source) = self.document.redaction.as_ref().and_then(|r| r.hash_key.as_ref()) {
            names.push(source.env.clone());
        }
        names.sort();
        names.dedup();
        names
    }
}
