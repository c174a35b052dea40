//! aimesh translate stage: OpenAI chat completions <-> Anthropic Messages, per upstream attempt.
//!
//! The stage sits in a provider cluster's upstream filters (and in each virtual model's
//! aggregate clusters), so it runs once per attempt, after Envoy chose the endpoint: a virtual
//! model whose targets and fallbacks speak different dialects gets each attempt translated for
//! the provider it reached. The client's dialect comes from the path, the provider's from the
//! attempt's endpoint metadata (`aimesh.cluster`) looked up in the config. The stages of the
//! listener (auth, PII, accounting) see the client's dialect only. Rules live in
//! `aimesh_core::translate`; this crate sequences them over [`aimesh_host::Host`].

mod stage;

#[cfg(test)]
mod tests;

use std::rc::Rc;

use aimesh_config::translate::TranslateConfig;
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot};

pub use stage::HOST_CLUSTER;

/// The translate entry of the table of stages.
pub const STAGE: StageDef = StageDef {
    name: "translate",
    configure,
    counters: &[
        "aimesh.translate.requests",
        "aimesh.translate.streams",
        "aimesh.translate.request_errors",
        "aimesh.translate.provider_errors",
        "aimesh.translate.response_errors",
    ],
    families: aimesh_host::no_families,
};

fn configure(raw: &[u8], _env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let cfg = load_config::<TranslateConfig>(raw)?;
    Ok(Box::new(Root { cfg: Rc::new(cfg) }))
}

struct Root {
    cfg: Rc<TranslateConfig>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(stage::Translate::new(Rc::clone(&self.cfg))))
    }
}
