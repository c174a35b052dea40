//! The chain's configuration, owned by aimesh-config (sections typed as each stage's own
//! config); this module only loads it through the glue.

use std::ops::Deref;

pub use aimesh_config::chain::STAGES;

/// The loaded chain configuration (see [`aimesh_config::chain::ChainConfig`]).
#[derive(Debug)]
pub struct ChainConfig(aimesh_config::chain::ChainConfig);

impl Deref for ChainConfig {
    type Target = aimesh_config::chain::ChainConfig;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl ChainConfig {
    /// Parses and validates the chain configuration; logs one line naming the problem and
    /// returns `None`.
    pub fn load(raw: Option<&[u8]>) -> Option<Self> {
        aimesh_glue::load_config::<aimesh_config::chain::ChainConfig>("chain", raw).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_through_the_glue() {
        let c = ChainConfig::load(Some(br#"{"auth": {"keys": []}, "header-auth": {}}"#));
        assert!(c.expect("valid").section("header-auth").is_some());
        assert!(ChainConfig::load(Some(b"{}")).is_none());
    }
}
