//! aimesh virtual-model stage: one logical model name, many backends.
//!
//! The same stage runs in two places (see README):
//! - downstream (the listener's filter chain): reads the requested model, picks the primary
//!   target (weighted, latency or priority; sticky sessions), routes through the `cluster` fact
//!   and tells the client which target served it;
//! - upstream (`role: upstream`, in the `http_filters` of a virtual model's aggregate cluster):
//!   runs once per attempt, learns the attempt's target from the chosen endpoint's
//!   `aimesh.cluster` metadata, rewrites the body's `model` for it and records its time per
//!   output token. Envoy's router does the retrying and the fallback between targets.
//!
//! Without fallback clusters the downstream instance rewrites the body itself. Decisions live
//! in `aimesh_core::routing`; this crate sequences them over [`aimesh_host::Host`].

mod downstream;
mod shared;
mod upstream;

#[cfg(test)]
mod downstream_tests;
#[cfg(test)]
mod strategy_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod upstream_tests;

use std::rc::Rc;

use aimesh_core::routing::config::Role;
use aimesh_core::routing::{stats, sticky, RoutingConfig};
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot, Validate};

pub use downstream::{SERVED_CLUSTER, TARGET, VIRTUAL_MODEL};

/// The virtual-model entry of the table of stages.
pub const STAGE: StageDef = StageDef {
    name: "virtual-model",
    configure,
    counters: &[
        "aimesh.virtual_model.requests",
        "aimesh.virtual_model.routed",
        "aimesh.virtual_model.pass_through",
        "aimesh.virtual_model.not_found",
        "aimesh.virtual_model.fallbacks",
        "aimesh.virtual_model.attempts",
        "aimesh.virtual_model.sample_dropped",
        "aimesh.virtual_model.upstream_unknown_cluster",
    ],
    families: aimesh_host::no_families,
};

/// Filter configuration: the routing table of `aimesh_core::routing`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Config(pub RoutingConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), aimesh_host::ConfigError> {
        self.0.validate()
    }
}

fn configure(raw: &[u8], env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let Config(cfg) = load_config::<Config>(raw)?;
    // Envoy ignores CAS on absent keys: create every sample key and every sticky-session
    // bucket before traffic.
    for vm in &cfg.virtual_models {
        for t in &vm.targets {
            let _ = stats::init(env.store(), &t.target);
        }
        // Only the downstream instance pins sessions.
        if cfg.role != Role::Downstream {
            continue;
        }
        if let Err(e) = sticky::init(env.store(), vm) {
            log::warn!(
                "virtual-model: cannot create sticky buckets of {}: {e}",
                vm.name
            );
        }
    }
    Ok(Box::new(Root {
        shared: Rc::new(shared::Shared::new(cfg, env)),
    }))
}

struct Root {
    shared: Rc<shared::Shared>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        let shared = Rc::clone(&self.shared);
        Some(match shared.config.role {
            Role::Downstream => Box::new(downstream::Downstream::new(shared)),
            Role::Upstream => Box::new(upstream::Upstream::new(shared)),
        })
    }
}
