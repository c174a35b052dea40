//! PII redaction stage: finds personal data and secrets in the text of LLM requests and masks,
//! hashes or blocks them before the request leaves; on the way back it masks PII the model
//! produced and, when the policy says `restore`, puts the user's own values back in place of
//! the placeholders the model echoes (streamed or not).
//!
//! All detection and rewriting lives in `aimesh_core::pii`; this crate only moves bytes between
//! the host ([`aimesh_host::Host`]) and core, and reports metrics and the access-log summary.
//! It is a plain library: `filters/wasm/pii-redaction` holds the Wasm entry point, and the
//! chain runs [`STAGE`] as one of its stages.

mod stage;

use std::rc::Rc;

use aimesh_core::pii::{Engine, PiiConfig};
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot, Validate};
use serde::Deserialize;

/// This filter in the table of stages.
pub const STAGE: StageDef = StageDef {
    name: "pii-redaction",
    configure,
    counters: &[
        "aimesh.pii_redaction.requests",
        "aimesh.pii_redaction.redacted_requests",
        "aimesh.pii_redaction.blocked",
    ],
    families: aimesh_host::no_families,
};

/// Filter configuration: see `aimesh_core::pii::PiiConfig` and this crate's README.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub PiiConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), aimesh_host::ConfigError> {
        self.0.validate()
    }
}

fn configure(raw: &[u8], _env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let Config(cfg) = load_config::<Config>(raw)?;
    // Patterns compile once per VM here, never per request.
    let engine = Engine::new(&cfg).map_err(StageError::Config)?;
    Ok(Box::new(Root {
        engine: Rc::new(engine),
    }))
}

struct Root {
    engine: Rc<Engine>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(stage::Filter::new(self.engine.clone())))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_chain;
#[cfg(test)]
mod tests_mcp;
#[cfg(test)]
mod tests_response;
