//! Stage configuration: JSON, parsed and validated once.

use serde::de::DeserializeOwned;

use crate::StageError;

/// Semantic checks a config runs after it deserializes.
pub trait Validate {
    /// `Err` names the offending field (`keys[2].allowed_models`) and what is wrong with it.
    fn validate(&self) -> Result<(), String>;
}

/// Parses and validates a stage config. An empty configuration is `{}`.
pub fn load_config<T: DeserializeOwned + Validate>(raw: &[u8]) -> Result<T, StageError> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    let c: T = serde_json::from_slice(raw).map_err(|e| StageError::Config(e.to_string()))?;
    c.validate().map_err(StageError::Config)?;
    Ok(c)
}
