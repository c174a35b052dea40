//! Auth stage: virtual API keys and JWT claim policies in front of every LLM request.
//!
//! The client's key is hashed (SHA-256) and compared in constant time with the configured hashes;
//! plaintext keys never appear in config, logs or stats. A request with a body pauses until the
//! whole body is in, which is parsed once to check the model against the key's allow-list; the
//! facts go into the typed request context ([`aimesh_host::Facts`]) so later stages never parse
//! the body again. Per-key request rate and concurrency limits hold across workers through the
//! shared store. The decisions live in `aimesh_core::auth`; this crate sequences them over
//! [`aimesh_host::Host`], and the Wasm entry point lives in `filters/wasm/auth`.

mod config;
pub mod jwt;
mod stage;

use std::rc::Rc;

use aimesh_core::auth::limits;
use aimesh_core::auth::Policies;
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot};

pub use config::Config;

/// This filter in the table of stages.
pub const STAGE: StageDef = StageDef {
    name: "auth",
    configure,
    counters: &[
        stat::ALLOWED,
        stat::INVALID_KEY,
        stat::MODEL,
        stat::UNKNOWN_MODEL,
        stat::CATALOGUE,
        stat::ENDPOINT,
        stat::RATE,
        stat::BODY,
        stat::JWT,
    ],
    families: aimesh_host::no_families,
};

/// Stat names (Envoy shows them with the `wasmcustom.` prefix).
mod stat {
    pub const ALLOWED: &str = "aimesh.auth.allowed";
    pub const INVALID_KEY: &str = "aimesh.auth.denied.invalid_key";
    pub const MODEL: &str = "aimesh.auth.denied.model_not_allowed";
    pub const UNKNOWN_MODEL: &str = "aimesh.auth.denied.model_not_found";
    pub const CATALOGUE: &str = "aimesh.auth.catalogue_answered";
    pub const ENDPOINT: &str = "aimesh.auth.denied.endpoint_not_allowed";
    pub const RATE: &str = "aimesh.auth.denied.rate_limited";
    pub const BODY: &str = "aimesh.auth.denied.bad_request";
    pub const JWT: &str = "aimesh.auth.jwt_authenticated";
}

fn configure(raw: &[u8], env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let Config(c) = load_config::<Config>(raw)?;
    // Keys kept in the proxy's environment (a mesh's Secret) join the configured ones.
    let c = c
        .with_env_keys(&aimesh_config::endpoints::creds::StdEnv)
        .map_err(|e| StageError::Config(e.to_string()))?;
    let policies = Policies::new(c);
    // Limit state must exist before traffic: CAS is ignored on absent keys.
    limits::init(env.store(), policies.all(), env.unix_millis()).map_err(|e| {
        StageError::Init(format!("cannot initialise limit state in shared data: {e}"))
    })?;
    Ok(Box::new(Root {
        policies: Rc::new(policies),
    }))
}

/// The configured stage: the compiled policies, shared by every request.
struct Root {
    policies: Rc<Policies>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(stage::Auth::new(Rc::clone(&self.policies))))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_body;
#[cfg(test)]
mod tests_limits;
