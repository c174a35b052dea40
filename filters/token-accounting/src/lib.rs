//! Token-accounting filter: usage, cost, metrics, audit fields, and per-key token and budget
//! limits.
//!
//! Request: reads the facts the auth filter published (`x-aimesh-model`, `x-aimesh-stream`,
//! `x-aimesh-include-usage`, `x-aimesh-key-id`); the body is read only to inject
//! `stream_options.include_usage`, to estimate a prompt for limits, or when those headers are
//! missing. Response: every chunk is forwarded as it arrives while an incremental SSE scanner
//! reads usage; the usage-only chunk is removed when the client did not ask for it. At the end:
//! metrics, the exact charge against the limits, and (in `on_log`, once per request, accounted
//! or not) the typed audit record for the access log.

mod config;
mod limit;
mod metrics;
mod request;
mod response;

use std::rc::Rc;
use std::time::Duration;

use aimesh_core::accounting::{admission, audit};
use aimesh_core::host::Clock;
use aimesh_glue::{load_config, HostClock, HostMetrics, HostStore};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

pub use config::{Config, KeyLimits, LimitsConfig};

/// A fresh root context of this filter: the `aimesh-chain` build runs it as one of its stages.
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root::default())
}

// `proxy_wasm::main!` defines the `_initialize` export the host calls. Off in the chain build,
// which links every filter into one module with its own entry point.
#[cfg(all(feature = "entry", target_family = "wasm"))]
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| root());
    }}
}

/// How often the limit keys of the next day are created ahead of use.
const TICK: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Root {
    config: Option<Rc<config::Compiled>>,
    metrics: Rc<HostMetrics>,
}

impl Root {
    fn init_limit_keys(&self) {
        let Some(c) = &self.config else { return };
        let now = HostClock.unix_millis();
        for (key_id, l) in &c.limits {
            if let Err(e) = admission::init_keys(&HostStore, key_id, l, now) {
                log::warn!("token-accounting: cannot create limit keys: {e}");
            }
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(c) = load_config::<Config>("token-accounting", raw.as_deref()) else {
            return false;
        };
        // Typed, so the access log shows numbers and nulls; a reconfiguration finds it declared.
        if !aimesh_glue::host::declare_property(&audit::declaration()) {
            log::debug!("token-accounting: audit record already declared");
        }
        let compiled = config::Compiled::new(c);
        let has_limits = !compiled.limits.is_empty();
        self.config = Some(Rc::new(compiled));
        self.init_limit_keys();
        if has_limits {
            self.set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        self.init_limit_keys();
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(request::Filter::new(config, self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
