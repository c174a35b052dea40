//! Glue between the auth config (owned by aimesh-config) and `aimesh_host::load_config`.

use aimesh_core::auth::AuthConfig;
use aimesh_host::{ConfigError, Validate};
use serde::Deserialize;

/// The core config, wrapped so the filter keeps its own name for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Config(pub AuthConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.0.check()
    }
}
