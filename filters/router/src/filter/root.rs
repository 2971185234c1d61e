//! Root contexts: the policy is compiled once per VM; the attempt filter also reads each
//! provider's credential from the proxy's environment once (a variable the policy names but
//! Envoy does not expose refuses the configuration, naming the field). A bad policy is refused.

use super::http::{AttemptHttp, RouterHttp};
use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use warden_policy::attributes;
use warden_policy::policy::{parse_document, AuditFormat};
use warden_policy::router::metrics;
use warden_policy::router::vm::{Role, RouterVm};
use warden_proxy_host::{define_counter, on_configure};

/// The `root_id`s of the two plugins.
pub const ROUTER_ROOT_ID: &str = warden_policy::root_ids::ROUTER;
pub const ATTEMPT_ROOT_ID: &str = warden_policy::root_ids::ROUTER_ATTEMPT;

/// Which plugin a `root_id` names; the router's own module also takes an empty one.
pub fn role_of(root_id: &str) -> Option<Role> {
    match root_id {
        ROUTER_ROOT_ID => Some(Role::Router),
        ATTEMPT_ROOT_ID => Some(Role::Attempt),
        _ => None,
    }
}

pub struct RouterRoot {
    role: Role,
    vm: Option<Rc<RouterVm>>,
}

impl RouterRoot {
    pub fn new(role: Role) -> Self {
        RouterRoot { role, vm: None }
    }

    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        // WASI's environment: only what `vm_config.environment_variables` exposes.
        let env = |name: &str| std::env::var(name).ok();
        let vm = RouterVm::configure(&document, self.role, &env)?;
        info!(
            "warden router ({:?}): policy loaded with {} providers, {} model aliases, {} rules",
            self.role,
            vm.router.providers.len(),
            vm.router.models.len(),
            vm.router.rules.len()
        );
        if document.redaction.is_none() && vm.router.rules.iter().any(|r| !r.data_classes.is_empty()) {
            // Without a redaction section, no filter of this policy records a request's classes.
            warn!(
                "warden router: rules on dataClasses apply only to requests whose data classes a filter \
                 recorded ({}); a request with none recorded matches no such rule",
                warden_policy::attributes::DATA_CLASSES
            );
        }
        for metric in metrics::ALL {
            define_counter(metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
        }
        for provider in &vm.router.providers {
            for what in metrics::PER_PROVIDER {
                let metric = metrics::provider(&provider.name, what);
                define_counter(&metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
            }
        }
        let format = vm.audit_format;
        self.vm = Some(Rc::new(vm));
        Ok(format)
    }
}

impl Context for RouterRoot {}

impl RootContext for RouterRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let records: &[(&str, bool)] = match self.role {
            Role::Router => &[(attributes::AUDIT, false)],
            Role::Attempt => &[],
        };
        on_configure("router", plugin_configuration_size, records, |config| self.configure(config))
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.role {
            Role::Router => Box::new(RouterHttp::new(self.vm.clone())),
            Role::Attempt => Box::new(AttemptHttp::new(self.vm.clone())),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
