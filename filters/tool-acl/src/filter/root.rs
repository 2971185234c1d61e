//! Root context: the policy is parsed, validated and compiled once; a bad one is refused.

use super::http::ToolAclHttp;
use log::info;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use warden_policy::attributes;
use warden_policy::policy::{parse_document, AuditFormat, RequestHeaders};
use warden_policy::tool_acl::compile::CompiledToolAcl;
use warden_policy::tool_acl::metrics;
use warden_proxy_host::{define_counter, on_configure};

#[derive(Default)]
pub struct ToolAclRoot {
    acl: Option<Rc<CompiledToolAcl>>,
    request_headers: RequestHeaders,
}

impl ToolAclRoot {
    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        let section = document.tool_acl.ok_or("toolAcl: the policy has no toolAcl section")?;
        let mut acl = CompiledToolAcl::compile(&section).map_err(|e| e.to_string())?;
        acl.audit_format = document.audit_format;
        acl.record_calls = document.token_budget.as_ref().is_some_and(|t| t.counts_tool_calls());
        info!(
            "warden tool-acl: policy loaded with {} servers, {} rules{}",
            acl.servers.len(),
            acl.rules.len(),
            if acl.llm.is_some() { " and model routes" } else { "" }
        );
        for metric in metrics::ALL {
            define_counter(metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
        }
        self.acl = Some(Rc::new(acl));
        self.request_headers = document.request_headers;
        Ok(document.audit_format)
    }
}

impl Context for ToolAclRoot {}

impl RootContext for ToolAclRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        on_configure("tool-acl", plugin_configuration_size, &[(attributes::AUDIT, false)], |config| {
            self.configure(config)
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no HTTP context before a successful configure; if it ever did, every
        // request would be refused rather than let through unchecked.
        Some(Box::new(ToolAclHttp::new(self.acl.clone(), self.request_headers.held())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
