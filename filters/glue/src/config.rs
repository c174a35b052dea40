//! Plugin configuration: JSON in the `PluginConfig.configuration` field, validated once.

use serde::de::DeserializeOwned;

/// Semantic checks a config runs after it deserializes.
pub trait Validate {
    /// `Err` names the offending field (`keys[2].allowed_models`) and what is wrong with it.
    fn validate(&self) -> Result<(), String>;
}

/// Parses and validates a filter config. An absent or empty configuration is `{}`.
///
/// On failure logs one line naming the field and returns `None`; `on_configure` then returns
/// false and Envoy rejects the filter config instead of running with a wrong one.
pub fn load_config<T: DeserializeOwned + Validate>(filter: &str, raw: Option<&[u8]>) -> Option<T> {
    let raw = match raw {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => b"{}".as_slice(),
    };
    let parsed: Result<T, String> = serde_json::from_slice::<T>(raw)
        .map_err(|e| e.to_string())
        .and_then(|c| c.validate().map(|()| c));
    match parsed {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("{filter}: invalid configuration: {e}");
            None
        }
    }
}
