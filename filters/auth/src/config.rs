//! The core auth config, wrapped so the host's `Validate` can be implemented here.

use aimesh_core::auth::AuthConfig;
use aimesh_host::Validate;
use serde::Deserialize;

/// The core config, checked by [`AuthConfig::check`] at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Config(pub AuthConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.0.check()
    }
}
