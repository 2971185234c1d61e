//! Root context: the policy is compiled and the tokenizers are built once per VM (so the
//! first request pays for neither); a bad policy is refused. On its tick it sends the settle
//! calls that requests queued for the rate-limit service.

use super::http::BudgetHttp;
use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;
use warden_policy::attributes;
use warden_policy::budget::metrics;
use warden_policy::budget::vm::BudgetVm;
use warden_policy::policy::{parse_document, AuditFormat};
use warden_proxy_host::{define_counter, on_configure, ProxyHost};

/// How often queued settle calls are sent.
const SETTLE_TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct BudgetRoot {
    vm: Option<Rc<BudgetVm>>,
}

impl BudgetRoot {
    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        // Random per VM (the host's `random_get`): reservation ids never meet across VMs.
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let vm = BudgetVm::configure(&document, seed)?;
        let policy = &vm.policy;
        info!(
            "warden token-budget: policy loaded with {} budgets ({} global), {} priced models",
            policy.budgets.len(),
            policy.budgets.iter().filter(|b| b.store == warden_policy::budget::config::Store::Global).count(),
            policy.models.iter().filter(|m| m.price.is_some()).count()
        );
        for metric in metrics::ALL {
            define_counter(metric).map_err(|e| format!("cannot define metric {metric}: {e}"))?;
        }
        if policy.has_global() {
            proxy_wasm::hostcalls::set_tick_period(SETTLE_TICK)
                .map_err(|s| format!("cannot start the settle timer: {s:?}"))?;
        }
        let format = vm.audit_format;
        self.vm = Some(Rc::new(vm));
        Ok(format)
    }
}

impl Context for BudgetRoot {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _response_size: usize) {
        if status_code != 0 {
            warn!("warden token-budget: a settle call failed with gRPC status {status_code}");
        }
        if let Some(vm) = &self.vm {
            vm.settle_answered(&ProxyHost, token_id, status_code);
        }
    }
}

impl RootContext for BudgetRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        on_configure("token-budget", plugin_configuration_size, &[(attributes::AUDIT, false)], |config| {
            self.configure(config)
        })
    }

    fn on_tick(&mut self) {
        if let Some(why) = self.vm.as_ref().and_then(|vm| vm.send_settles(&ProxyHost)) {
            error!("warden token-budget: {why}");
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no HTTP context before a successful configure; if it ever did, every
        // model request would be refused rather than let through uncounted.
        Some(Box::new(BudgetHttp::new(self.vm.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
