//! Stage configuration: JSON, parsed and validated once, with aimesh-config's types and rules
//! (the same ones aimesh-xds checks a gateway.yaml against).

use serde::de::DeserializeOwned;

pub use aimesh_config::{ConfigError, Validate};

use crate::StageError;

/// Parses and validates a stage config. An empty configuration is `{}`.
pub fn load_config<T: DeserializeOwned + Validate>(raw: &[u8]) -> Result<T, StageError> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    let c: T = serde_json::from_slice(raw).map_err(|e| StageError::Config(e.to_string()))?;
    c.validate()
        .map_err(|e| StageError::Config(e.to_string()))?;
    Ok(c)
}
