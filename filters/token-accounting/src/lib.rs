//! Token-accounting stage: usage, cost, metrics, audit fields, and per-key token and budget
//! limits.
//!
//! Request: reads the facts auth published ([`aimesh_host::Facts`]: model, stream,
//! include_usage, max_tokens, key id); the body is read only to inject
//! `stream_options.include_usage`, to estimate a prompt for limits, or when those facts are
//! missing. When to admit and what a store fault does are decided in
//! `aimesh_core::accounting::gate`. Response: every chunk is forwarded as it arrives while an
//! incremental SSE scanner reads usage; the usage-only chunk is removed when the client did not
//! ask for it. At the end: metrics, the exact charge against the limits, and (in `log`, once per
//! request, accounted or not) the typed audit record for the access log.
//!
//! A plain library: the Wasm module that runs it alone is a thin crate under `filters/wasm`,
//! and the one-filter chain runs it as one of its stages.

mod config;
mod fleet;
mod limit;
mod metrics;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use aimesh_core::accounting::gate::KeyDays;
use aimesh_core::accounting::{admission, audit};
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot};

pub use config::{Config, KeyLimits, LimitsConfig};

/// The token-accounting entry of the table of stages.
pub const STAGE: StageDef = StageDef {
    name: "token-accounting",
    configure,
    counters: &[
        "aimesh.token_accounting.fleet_unavailable.policy.open",
        "aimesh.token_accounting.fleet_unavailable.policy.closed",
    ],
    families: metrics::families,
};

/// How often the limit keys of the next day are created ahead of use.
const TICK: Duration = Duration::from_secs(60);

fn configure(raw: &[u8], env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let c = load_config::<Config>(raw)?;
    // Typed, so the access log shows numbers and nulls; a reconfiguration finds it declared.
    if !env.declare_property(&audit::declaration()) {
        log::debug!("token-accounting: audit record already declared");
    }
    let root = Root {
        config: Rc::new(config::Compiled::new(c)),
        key_days: Rc::default(),
    };
    root.init_limit_keys(env);
    Ok(Box::new(root))
}

struct Root {
    config: Rc<config::Compiled>,
    /// Keys under `limits.default` whose store keys this worker created, shared by its requests.
    key_days: Rc<RefCell<KeyDays>>,
}

impl Root {
    /// Listed keys' store keys, for today and tomorrow (Envoy ignores CAS on absent keys).
    fn init_limit_keys(&self, env: &dyn Env) {
        let now = env.unix_millis();
        for (key_id, l) in &self.config.limits {
            if let Err(e) = admission::init_keys(env.store(), key_id, l, now) {
                log::warn!("token-accounting: cannot create limit keys: {e}");
            }
        }
    }
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(request::Filter::new(
            self.config.clone(),
            self.key_days.clone(),
        )))
    }

    fn tick_period(&self) -> Option<Duration> {
        (!self.config.limits.is_empty()).then_some(TICK)
    }

    fn tick(&self, env: &dyn Env) {
        self.init_limit_keys(env);
    }
}
