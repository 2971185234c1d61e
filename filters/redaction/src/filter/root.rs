//! Root context: the policy is parsed, validated and compiled once; a bad one is refused.

use super::http::RedactionHttp;
use log::info;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use warden_policy::attributes;
use warden_policy::policy::{parse_document, AuditFormat, RequestHeaders};
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::metrics;
use warden_proxy_host::{define_counter, on_configure};

#[derive(Default)]
pub struct RedactionRoot {
    policy: Option<Rc<CompiledRedaction>>,
    request_headers: RequestHeaders,
}

impl RedactionRoot {
    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        let section = document.redaction.ok_or("redaction: the policy has no redaction section")?;
        // WASI's environment: only what `vm_config.environment_variables` exposes (the hash key).
        let env = |name: &str| std::env::var(name).ok();
        let mut policy = CompiledRedaction::compile(&section, &env).map_err(|e| e.to_string())?;
        policy.audit_format = document.audit_format;
        for metric in metrics::ALL {
            define_counter(metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
        }
        info!(
            "warden redaction: policy loaded with {} detectors (hold-back horizon {} bytes), {} rules",
            policy.classes.len(),
            policy.answers.horizon,
            policy.rules.len()
        );
        self.policy = Some(Rc::new(policy));
        self.request_headers = document.request_headers;
        Ok(document.audit_format)
    }
}

impl Context for RedactionRoot {}

impl RootContext for RedactionRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        on_configure("redaction", plugin_configuration_size, &[(attributes::AUDIT, false)], |config| {
            self.configure(config)
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no HTTP context before a successful configure; if it ever did, every
        // request would be refused rather than let through unscanned.
        Some(Box::new(RedactionHttp::new(self.policy.clone(), self.request_headers.held())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
