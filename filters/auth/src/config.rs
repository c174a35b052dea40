//! Glue between the core auth config and `aimesh_glue::load_config`.

use aimesh_core::auth::AuthConfig;
use aimesh_glue::Validate;
use serde::Deserialize;

/// The core config, wrapped so the glue's `Validate` can be implemented here.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Config(pub AuthConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.0.check()
    }
}
