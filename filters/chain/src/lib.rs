//! The table of stages, and the one-filter chain that runs them all.
//!
//! [`STAGES`] is the one list of aimesh's stages, in the order they run (the order `make run`
//! configures the five filters). The chain module (`filters/wasm/chain`, `aimesh_chain.wasm`)
//! runs every configured stage inside one Wasm VM: one VM per worker and one set of host
//! callbacks per request instead of five, and the typed facts pass from stage to stage in
//! memory. Why: in Envoy each Wasm filter is its own VM with its own callbacks, and a request
//! pays for every filter's shell whatever the filter does; `make bench` prices that.

mod config;

use aimesh_host::{Configured, Env, StageDef, StageError};

pub use aimesh_config::chain::ChainConfig;

/// Every stage, in chain order.
pub const STAGES: [&StageDef; 6] = [
    &aimesh_auth::STAGE,
    &aimesh_mcp::STAGE,
    &aimesh_pii_redaction::STAGE,
    &aimesh_virtual_model::STAGE,
    &aimesh_token_accounting::STAGE,
    &aimesh_header_auth::STAGE,
];

/// The chain's configuration step: each configured section through its stage's own loader.
pub fn configure(raw: &[u8], env: &dyn Env) -> Result<Configured, StageError> {
    let cfg = config::parse(raw)?;
    let mut stages = Vec::new();
    for def in STAGES {
        let Some(section) = cfg.section(def.name) else {
            continue;
        };
        let root = (def.configure)(&section, env).map_err(|e| e.of(def.name))?;
        stages.push((def.name, root));
    }
    Ok(Configured {
        stages,
        stage_timings: cfg.stage_timings,
    })
}
