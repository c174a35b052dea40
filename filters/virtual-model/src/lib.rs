//! aimesh virtual-model filter: one logical model name, many backends.
//!
//! The same Wasm runs in two places (see README):
//! - downstream (the listener's filter chain): reads the requested model, picks the primary
//!   target (weighted, latency or priority; sticky sessions), routes through `x-aimesh-cluster`
//!   and tells the client which target served it;
//! - upstream (`role: upstream`, in the `http_filters` of a virtual model's aggregate cluster):
//!   runs once per attempt, learns the attempt's target from the chosen endpoint's
//!   `aimesh.cluster` metadata, rewrites the body's `model` for it and records its time per
//!   output token. Envoy's router does the retrying and the fallback between targets.
//!
//! Without fallback clusters the downstream instance rewrites the body itself.

mod downstream;
mod shared;
mod upstream;

use std::rc::Rc;

use aimesh_core::routing::config::Role;
use aimesh_core::routing::{stats, sticky, RoutingConfig};
use aimesh_glue::{load_config, HostStore, Validate};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

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

/// Filter configuration: the routing table of `aimesh_core::routing`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Config(pub RoutingConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), aimesh_glue::ConfigError> {
        self.0.validate()
    }
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<shared::Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(Config(cfg)) = load_config::<Config>("virtual-model", raw.as_deref()) else {
            return false;
        };
        // Envoy ignores CAS on absent keys: create every sample key and every sticky-session
        // bucket before traffic.
        for vm in &cfg.virtual_models {
            for t in &vm.targets {
                let _ = stats::init(&HostStore, &t.target);
            }
            // Only the downstream instance pins sessions.
            if cfg.role != Role::Downstream {
                continue;
            }
            if let Err(e) = sticky::init(&HostStore, vm) {
                log::warn!(
                    "virtual-model: cannot create sticky buckets of {}: {e}",
                    vm.name
                );
            }
        }
        self.shared = Some(Rc::new(shared::Shared::new(cfg)));
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(match shared.config.role {
            Role::Downstream => Box::new(downstream::Downstream::new(shared)),
            Role::Upstream => Box::new(upstream::Upstream::new(shared)),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
