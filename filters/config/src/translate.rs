//! The translate stage's configuration: which dialect each provider cluster speaks.
//!
//! The stage runs in a cluster's upstream filters, once per attempt; the attempt's endpoint
//! metadata (`aimesh.cluster`) names the cluster, this table its dialect, and the request path
//! the client's. A cluster missing from the table is never translated.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::dialect::Dialect;
use crate::{ConfigError, Validate};

/// Default `max_tokens` of an OpenAI request sent to Anthropic without one (Anthropic requires
/// it; OpenAI's default is "up to the context window").
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

/// `{"clusters": {"provider.claude": "anthropic", "provider.vllm": "openai"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslateConfig {
    /// Envoy cluster name -> the dialect its provider speaks.
    #[serde(default)]
    pub clusters: BTreeMap<String, Dialect>,
    /// `max_tokens` given to an Anthropic provider when the OpenAI request sets neither
    /// `max_tokens` nor `max_completion_tokens` (1..=1,000,000).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Most bytes of an unfinished streamed event held while translating (1 KiB..=64 MiB);
    /// an event past it ends the stream with an error event.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
}

/// Default of [`TranslateConfig::max_event_bytes`]: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

fn default_max_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}

impl Default for TranslateConfig {
    fn default() -> Self {
        Self {
            clusters: BTreeMap::new(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl Validate for TranslateConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.default_max_tokens) {
            return Err(ConfigError::invalid(
                "default_max_tokens",
                "must be between 1 and 1000000",
            ));
        }
        if !(1024..=64 << 20).contains(&self.max_event_bytes) {
            return Err(ConfigError::invalid(
                "max_event_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        for name in self.clusters.keys() {
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                return Err(ConfigError::invalid(
                    format!("clusters.{name}"),
                    "a cluster name is 1-200 printable characters",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_validates_and_refuses_unknown_fields() {
        let c: TranslateConfig =
            serde_json::from_str(r#"{"clusters": {"provider.claude": "anthropic"}}"#)
                .expect("valid");
        assert_eq!(c.clusters.get("provider.claude"), Some(&Dialect::Anthropic));
        assert_eq!(c.default_max_tokens, DEFAULT_MAX_TOKENS);
        assert!(c.validate().is_ok());
        let bad = TranslateConfig {
            default_max_tokens: 0,
            ..c.clone()
        };
        assert_eq!(
            bad.validate().expect_err("zero").field,
            "default_max_tokens"
        );
        assert!(serde_json::from_str::<TranslateConfig>(r#"{"cluster": {}}"#).is_err());
        assert!(
            serde_json::from_str::<TranslateConfig>(r#"{"clusters": {"a": "gemini"}}"#).is_err()
        );
    }
}
