//! Root context: the policy is compiled and the tokenizers are built once per VM (so the
//! first request pays for neither); a bad policy is refused. On its tick it sends the settle
//! calls that requests queued for the rate-limit service.

use crate::http::BudgetHttp;
use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;
use warden_policy::budget::compile::CompiledTokenBudget;
use warden_policy::budget::metrics;
use warden_policy::budget::rls;
use warden_policy::budget::tokenizer::Tokenizers;
use warden_policy::host::Host;
use warden_policy::policy::parse_document;
use warden_proxy_host::{define_counter, grpc_call, plugin_configuration, ProxyHost};

/// How often queued settle calls are sent.
const SETTLE_TICK: Duration = Duration::from_millis(50);
/// Settle calls are not on any request's path: they may wait longer than reservations.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Settle calls kept when the service is down; older ones are dropped (and counted).
const MAX_QUEUED_SETTLES: usize = 4096;

/// What every HTTP context of this VM shares.
pub struct Vm {
    pub policy: CompiledTokenBudget,
    /// Request headers are held until the request is reserved (`requestHeaders: hold`).
    pub hold: bool,
    pub tokenizers: Tokenizers,
    settles: RefCell<VecDeque<Vec<u8>>>,
    /// Random per VM (the host's `random_get`), so reservation ids never meet across VMs and
    /// gateways; `reservations` counts within it.
    seed: u64,
    reservations: Cell<u64>,
}

impl Vm {
    /// A new reservation id for the rate-limit service: `<VM seed>-<counter>`.
    pub fn next_reservation(&self) -> String {
        let n = self.reservations.get().wrapping_add(1);
        self.reservations.set(n);
        format!("{:016x}-{n:x}", self.seed)
    }

    /// Queues a settle call for the root to send on its next tick.
    pub fn queue_settle(&self, message: Vec<u8>) {
        let mut queue = self.settles.borrow_mut();
        if queue.len() >= MAX_QUEUED_SETTLES {
            queue.pop_front();
            let _ = ProxyHost.increment(metrics::RLS_ERRORS, 1);
        }
        queue.push_back(message);
    }
}

#[derive(Default)]
pub struct BudgetRoot {
    vm: Option<Rc<Vm>>,
}

impl BudgetRoot {
    fn configure(&mut self, config: &[u8]) -> Result<(), String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        let section = document.token_budget.ok_or("tokenBudget: the policy has no tokenBudget section")?;
        let policy = CompiledTokenBudget::compile(&section).map_err(|e| e.to_string())?;
        let tokenizers = Tokenizers::load(&policy.encodings())?;
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
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        self.vm = Some(Rc::new(Vm {
            policy,
            hold: document.request_headers.held(),
            tokenizers,
            settles: RefCell::new(VecDeque::new()),
            seed,
            reservations: Cell::new(0),
        }));
        Ok(())
    }
}

impl Context for BudgetRoot {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, _response_size: usize) {
        let metric = if status_code == 0 { metrics::RLS_SETTLES } else { metrics::RLS_ERRORS };
        if status_code != 0 {
            warn!("warden token-budget: a settle call failed with gRPC status {status_code}");
        }
        let _ = ProxyHost.increment(metric, 1);
    }
}

impl RootContext for BudgetRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let config = match plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(message) => {
                error!("warden token-budget: {message}");
                return false;
            }
        };
        match self.configure(&config) {
            Ok(()) => true,
            Err(message) => {
                error!("warden token-budget: invalid policy: {message}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(vm) = &self.vm else { return };
        let Some(rls_config) = &vm.policy.rate_limit_service else { return };
        loop {
            let Some(message) = vm.settles.borrow_mut().pop_front() else { break };
            if let Err(e) = grpc_call(&rls_config.cluster, rls::SERVICE, rls::METHOD, &message, SETTLE_TIMEOUT) {
                error!("warden token-budget: cannot send a settle call: {e}");
                let _ = ProxyHost.increment(metrics::RLS_ERRORS, 1);
                vm.settles.borrow_mut().push_front(message);
                break;
            }
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
