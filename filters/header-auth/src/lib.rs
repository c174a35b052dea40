//! Header-auth stage: the last stage before the router.
//!
//! Every request leaves with the provider credentials of the account that serves it and none of
//! the client's: client credential headers and internal `x-aimesh-*` headers are removed (except
//! `x-aimesh-cluster`, which the route still needs and removes with `request_headers_to_remove`).
//! Requests to `/proxy-api/{account}/{endpoint}/...` are checked, access-controlled and rewritten
//! to the endpoint's cluster, authority and base path. Only headers are touched; bodies stream
//! through unbuffered, except an error reply's, held to be scrubbed of injected secrets. The
//! decisions live in `aimesh_core::endpoints`; [`stage`] sequences them over
//! [`aimesh_host::Host`].

mod stage;

#[cfg(test)]
mod tests;

use std::rc::Rc;

use aimesh_core::endpoints::{Config, Env as Vars, Plan, Role, StdEnv};
use aimesh_host::{
    load_config, ConfigError, Env, Stage, StageDef, StageError, StageRoot, Validate,
};
use serde::Deserialize;

const NAME: &str = "header-auth";

/// The header-auth entry of the table of stages.
pub const STAGE: StageDef = StageDef {
    name: NAME,
    configure,
    counters: &[
        "aimesh.header_auth.requests",
        "aimesh.header_auth.injected",
        "aimesh.header_auth.proxied",
        "aimesh.header_auth.scrubbed",
        "aimesh.header_auth.rejected_path",
        "aimesh.header_auth.not_found",
        "aimesh.header_auth.forbidden",
        "aimesh.header_auth.unknown_backend",
        "aimesh.header_auth.account_unavailable",
    ],
    families: aimesh_host::no_families,
};

/// Filter configuration: see `aimesh_core::endpoints::Config` and the README.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct FilterConfig(pub Config);

impl Validate for FilterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.0.check()
    }
}

fn configure(raw: &[u8], _env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    // Secrets are read only now, from the VM's environment (vm_config.environment_variables).
    configure_with(raw, &StdEnv)
}

/// [`STAGE`]'s configure with the variables the secrets are read from.
fn configure_with(raw: &[u8], vars: &dyn Vars) -> Result<Box<dyn StageRoot>, StageError> {
    let FilterConfig(config) = load_config::<FilterConfig>(raw)?;
    let plan = Plan::compile(&config, vars).map_err(StageError::Config)?;
    for w in &plan.warnings {
        log::warn!("{NAME}: {w}");
    }
    let scrubber = plan.scrubber();
    // The downstream instance's: it sees every reply before the client does.
    let scrubber =
        (plan.role() == Role::Downstream && !scrubber.is_empty()).then(|| Rc::new(scrubber));
    Ok(Box::new(Root {
        plan: Rc::new(plan),
        scrubber,
    }))
}

struct Root {
    plan: Rc<Plan>,
    scrubber: Option<Rc<aimesh_core::endpoints::Scrubber>>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(stage::HeaderAuth::new(
            Rc::clone(&self.plan),
            self.scrubber.clone(),
        )))
    }
}
