//! Token-accounting filter configuration: prices, tokenizers and per-key limits.
//!
//! A price of P USD per million tokens is P micro-USD per token, so a cost is a plain sum of
//! tokens times prices. Prices are kept in nano-USD per token (three decimals of a micro-USD) to
//! stay integral; the request total is rounded up to whole micro-USD, so a budget is never
//! under-charged.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// What a price is applied to: `(input, cached input, output)` tokens of one request (the
/// accounting's `Usage`, which lives with the filter logic).
pub trait TokenCounts {
    /// `(input, cached_input, output)`; cached input is part of input.
    fn token_counts(&self) -> (u64, u64, u64);
    /// Of the input, tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`); disjoint from the cached input.
    fn cache_write_tokens(&self) -> u64 {
        0
    }
}

/// Price of a model's tokens, USD per million.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Input tokens served from the provider's prompt cache; `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Input tokens written to the provider's prompt cache (Anthropic's cache writes cost more
    /// than plain input); `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Output tokens (reasoning included).
    pub output: f64,
}

/// Prices by model name; a key ending in `*` matches by prefix (longest prefix wins).
pub type PriceTable = BTreeMap<String, Price>;

fn nano(usd_per_million: f64) -> u128 {
    // Rounded to the nano-USD per token; prices are validated non-negative and finite.
    (usd_per_million * 1000.0).round().max(0.0) as u128
}

impl Price {
    /// Checks the figures; `Err` names the one that is wrong (`input`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("input", Some(self.input)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("output", Some(self.output)),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=1_000_000.0).contains(&v) {
                    return Err(ConfigError::invalid(
                        name,
                        "must be a number of USD per million tokens between 0 and 1000000",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Cost of `u` in micro-USD, rounded up.
    pub fn cost_micro_usd(&self, u: &impl TokenCounts) -> u64 {
        let (input, cached, output) = u.token_counts();
        let cached = cached.min(input);
        let written = u.cache_write_tokens().min(input - cached);
        let nanos = u128::from(input - cached - written) * nano(self.input)
            + u128::from(cached) * nano(self.cached_input.unwrap_or(self.input))
            + u128::from(written) * nano(self.cache_write.unwrap_or(self.input))
            + u128::from(output) * nano(self.output);
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// The price of `model`: exact name, else the longest `prefix*` entry.
pub fn lookup<'a>(table: &'a PriceTable, model: &str) -> Option<&'a Price> {
    if let Some(p) = table.get(model) {
        return Some(p);
    }
    table
        .iter()
        .filter_map(|(k, p)| {
            let prefix = k.strip_suffix('*')?;
            model.starts_with(prefix).then_some((prefix.len(), p))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GPT-4, GPT-3.5 and most open models' closest OpenAI match.
    Cl100kBase,
    /// GPT-4o, GPT-4.1, GPT-5 and the o-series.
    O200kBase,
}

impl Encoding {
    /// The encoding OpenAI uses for `model` (cl100k for anything not known to be newer).
    pub fn for_model(model: &str) -> Encoding {
        let m = model.rsplit('/').next().unwrap_or(model);
        let o200k = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "chatgpt-4o",
            "gpt-oss",
        ]
        .iter()
        .any(|p| m.starts_with(p))
            || (m.starts_with('o') && m[1..].starts_with(|c: char| c.is_ascii_digit()));
        if o200k {
            Encoding::O200kBase
        } else {
            Encoding::Cl100kBase
        }
    }

    /// Stable name, as in tiktoken.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }
}

/// Filter configuration (JSON in the Wasm `PluginConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenAccountingConfig {
    /// Prices in USD per million tokens by model; `prefix*` keys match by prefix.
    #[serde(default)]
    pub prices: PriceTable,
    /// Tokenizer per model (`prefix*` keys allowed) for estimates; by default o200k_base for
    /// gpt-4o/4.1/5 and o-series models, cl100k_base otherwise.
    #[serde(default)]
    pub encodings: BTreeMap<String, Encoding>,
    /// Read every request body so prompt tokens can be estimated when a provider reports no
    /// usage. Off by default: the body is then read only when it must be (include_usage
    /// injection, limits, no `x-aimesh-*` facts), and prompts are estimated only in those cases.
    #[serde(default)]
    pub estimate_prompt: bool,
    /// Per-key tokens-per-minute and budgets.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Bytes of a non-streaming response kept to read its `usage` (default 16 MiB); the usage of
    /// a larger body is estimated.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// `gen_ai.provider.name` of each backend (provider account name or upstream cluster), the
    /// `provider` label of the GenAI histograms; a backend not listed is `unknown`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, String>,
    /// Fleet-wide limits on the limits service (`limits.store: redis`); replaces `limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// Custom request metadata (a header's JSON object) for the audit log and metric labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::metadata::MetadataConfig>,
}

/// Default `max_response_bytes`: 16 MiB.
pub fn default_max_response_bytes() -> usize {
    16 << 20
}

/// Limits by key id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Limits of keys not listed in `keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<KeyLimits>,
    /// Limits by key id (`x-aimesh-key-id`).
    #[serde(default)]
    pub keys: BTreeMap<String, KeyLimits>,
}

/// Limits of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Tokens (prompt + completion) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Spend per UTC day, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Spend per UTC month, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<f64>,
}

impl Default for TokenAccountingConfig {
    fn default() -> Self {
        Self {
            prices: PriceTable::new(),
            encodings: BTreeMap::new(),
            estimate_prompt: false,
            limits: LimitsConfig::default(),
            max_response_bytes: default_max_response_bytes(),
            providers: BTreeMap::new(),
            fleet: None,
            metadata: None,
        }
    }
}

impl KeyLimits {
    fn check(&self, at: &str) -> Result<(), ConfigError> {
        if self.tpm == Some(0) {
            return Err(ConfigError::invalid(
                format!("{at}.tpm"),
                "must be at least 1",
            ));
        }
        for (name, v) in [
            ("daily_usd", self.daily_usd),
            ("monthly_usd", self.monthly_usd),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=1e12).contains(&v) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{name}"),
                        "must be a non-negative number of USD",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Validate for TokenAccountingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (model, p) in &self.prices {
            let at = format!("prices[{model:?}]");
            let star = model.find('*');
            if model.is_empty() || star.is_some_and(|i| i != model.len() - 1) {
                return Err(ConfigError::invalid(
                    at,
                    "must be a model name or 'prefix*'",
                ));
            }
            p.validate().map_err(|e| e.within(&at))?;
        }
        if let Some(d) = &self.limits.default {
            d.check("limits.default")?;
        }
        for (k, l) in &self.limits.keys {
            if k.is_empty() {
                return Err(ConfigError::invalid(
                    "limits.keys",
                    "key ids must not be empty",
                ));
            }
            l.check(&format!("limits.keys[{k:?}]"))?;
        }
        if let Some(f) = &self.fleet {
            f.validate().map_err(|e| e.within("fleet"))?;
        }
        if let Some(m) = &self.metadata {
            m.validate().map_err(|e| e.within("metadata"))?;
        }
        if self.max_response_bytes == 0 {
            return Err(ConfigError::invalid(
                "max_response_bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TokenAccountingConfig, String> {
        let c: TokenAccountingConfig = serde_json::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map(|()| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates_fields_by_name() {
        assert!(parse("{}").is_ok());
        let e = parse(r#"{"prices":{"m":{"input":-1,"output":1}}}"#).unwrap_err();
        assert!(e.starts_with("prices[\"m\"].input"), "{e}");
        let e = parse(r#"{"prices":{"a*b":{"input":1,"output":1}}}"#).unwrap_err();
        assert!(e.starts_with("prices[\"a*b\"]"), "{e}");
        let e = parse(r#"{"limits":{"keys":{"a":{"tpm":0}}}}"#).unwrap_err();
        assert!(e.starts_with("limits.keys[\"a\"].tpm"), "{e}");
        assert!(parse(r#"{"bogus":1}"#).unwrap_err().contains("bogus"));
        assert!(parse(r#"{"encodings":{"x":"p50k"}}"#).is_err());
    }
}
