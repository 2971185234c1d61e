//! Root context: configure once, then pass the root's callbacks (timer, key-set answers) to
//! `identity::vm`, which fetches remote key sets and resumes requests that waited for them.

use super::http::IdentityHttp;
use log::info;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use warden_policy::attributes;
use warden_policy::host::Host;
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::identity::metrics;
use warden_policy::identity::vm::{self, IdentityVm};
use warden_policy::policy::{parse_document, AuditFormat};
use warden_policy::trace::TraceAttributes;
use warden_proxy_host::{define_counter, on_configure, ProxyHost};

/// How often the root wakes to start due fetches and release requests that waited too long.
const TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct IdentityRoot {
    vm: Option<Rc<RefCell<IdentityVm>>>,
}

impl IdentityRoot {
    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        let identity = document.identity.ok_or("identity: the policy has no identity section")?;
        let mut policy = CompiledIdentity::compile(&identity).map_err(|e| e.to_string())?;
        policy.audit_format = document.audit_format;
        info!(
            "warden identity: policy loaded with {} routes and {} issuers",
            policy.routes.len(),
            policy.issuers.len()
        );
        for metric in metrics::ALL {
            define_counter(metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
        }
        ProxyHost.set_gauge(metrics::KEYS_LOADED, 0).map_err(|e| format!("cannot define metric: {e}"))?;
        let mut vm = IdentityVm::new(policy);
        if document.trace_attributes {
            vm.trace = Some(Rc::new(TraceAttributes::new(document.router.as_ref())));
        }
        if !vm.keys.is_empty() {
            hostcalls::set_tick_period(TICK).map_err(|s| format!("cannot start the key refresh timer: {s:?}"))?;
        }
        self.vm = Some(Rc::new(RefCell::new(vm)));
        Ok(document.audit_format)
    }
}

impl Context for IdentityRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(vm) = self.vm.clone() else { return };
        let host = ProxyHost;
        let (status, body) = host.http_call_answer(body_size).unwrap_or_default();
        let issuer = vm.borrow_mut().on_key_answer(&host, token_id, status, &body, host.now());
        if let Some(issuer) = issuer {
            vm::release(&host, &vm, |w| w.issuer == issuer);
        }
    }
}

impl RootContext for IdentityRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        on_configure(
            "identity",
            plugin_configuration_size,
            &[(attributes::PRINCIPAL, true), (attributes::AUDIT, false)],
            |config| self.configure(config),
        )
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let host = ProxyHost;
        let now = host.now();
        let unsent = vm.borrow_mut().start_fetches(&host, now);
        // Requests waiting for a fetch that could not even be sent are decided now; the others
        // when their answer arrives or their `keyWait` runs out.
        vm::release(&host, &vm, |w| now >= w.deadline || unsent.contains(&w.issuer));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.clone()?;
        Some(Box::new(IdentityHttp::new(context_id, vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
