//! Token-accounting filter configuration.

use std::collections::{BTreeMap, HashMap};

use aimesh_core::accounting::admission::Limits;
use aimesh_core::accounting::estimate::Encoding;
use aimesh_core::accounting::price::{self, Price, PriceTable};
use aimesh_host::Validate;
use serde::Deserialize;

/// Filter configuration (JSON in the Wasm `PluginConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
}

fn default_max_response_bytes() -> usize {
    16 << 20
}

/// Limits by key id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Limits of keys not listed in `keys`.
    #[serde(default)]
    pub default: Option<KeyLimits>,
    /// Limits by key id (`x-aimesh-key-id`).
    #[serde(default)]
    pub keys: BTreeMap<String, KeyLimits>,
}

/// Limits of one key.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Tokens (prompt + completion) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Spend per UTC day, USD.
    #[serde(default)]
    pub daily_usd: Option<f64>,
    /// Spend per UTC month, USD.
    #[serde(default)]
    pub monthly_usd: Option<f64>,
}

fn micro(usd: Option<f64>) -> Option<u64> {
    usd.map(|u| (u * 1_000_000.0).round() as u64)
}

impl KeyLimits {
    fn check(&self, at: &str) -> Result<(), String> {
        if self.tpm == Some(0) {
            return Err(format!("{at}.tpm: must be at least 1"));
        }
        for (name, v) in [
            ("daily_usd", self.daily_usd),
            ("monthly_usd", self.monthly_usd),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=1e12).contains(&v) {
                    return Err(format!("{at}.{name}: must be a non-negative number of USD"));
                }
            }
        }
        Ok(())
    }

    /// In core units.
    pub fn compile(&self) -> Limits {
        Limits {
            tpm: self.tpm,
            daily_micro_usd: micro(self.daily_usd),
            monthly_micro_usd: micro(self.monthly_usd),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        for (model, p) in &self.prices {
            p.validate().map_err(|e| format!("prices[{model:?}].{e}"))?;
        }
        if let Some(d) = &self.limits.default {
            d.check("limits.default")?;
        }
        for (k, l) in &self.limits.keys {
            if k.is_empty() {
                return Err("limits.keys: key ids must not be empty".into());
            }
            l.check(&format!("limits.keys[{k:?}]"))?;
        }
        if self.max_response_bytes == 0 {
            return Err("max_response_bytes: must be at least 1".into());
        }
        Ok(())
    }
}

/// The config in the form requests use.
#[derive(Debug)]
pub struct Compiled {
    /// Raw config.
    pub config: Config,
    /// Limits by key id.
    pub limits: HashMap<String, Limits>,
    /// Limits of other keys.
    pub default_limits: Limits,
}

impl Compiled {
    /// Compiles a validated config.
    pub fn new(config: Config) -> Self {
        let limits = config
            .limits
            .keys
            .iter()
            .map(|(k, l)| (k.clone(), l.compile()))
            .collect();
        let default_limits = config
            .limits
            .default
            .map(|d| d.compile())
            .unwrap_or_default();
        Compiled {
            config,
            limits,
            default_limits,
        }
    }

    /// Limits that apply to `key_id`.
    pub fn limits_for(&self, key_id: &str) -> Limits {
        self.limits
            .get(key_id)
            .copied()
            .unwrap_or(self.default_limits)
    }

    /// Price of a model.
    pub fn price(&self, model: &str) -> Option<&Price> {
        price::lookup(&self.config.prices, model)
    }

    /// Tokenizer for a model.
    pub fn encoding(&self, model: &str) -> Encoding {
        if let Some(e) = self.config.encodings.get(model) {
            return *e;
        }
        self.config
            .encodings
            .iter()
            .filter_map(|(k, e)| {
                let p = k.strip_suffix('*')?;
                model.starts_with(p).then_some((p.len(), *e))
            })
            .max_by_key(|(n, _)| *n)
            .map_or_else(|| Encoding::for_model(model), |(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        let c: Config = serde_json::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn validates_fields_by_name() {
        assert!(parse("{}").is_ok());
        let e = parse(r#"{"prices":{"m":{"input":-1,"output":1}}}"#).unwrap_err();
        assert!(e.starts_with("prices[\"m\"].input"), "{e}");
        let e = parse(r#"{"limits":{"keys":{"a":{"tpm":0}}}}"#).unwrap_err();
        assert!(e.starts_with("limits.keys[\"a\"].tpm"), "{e}");
        assert!(parse(r#"{"bogus":1}"#).unwrap_err().contains("bogus"));
        assert!(parse(r#"{"encodings":{"x":"p50k"}}"#).is_err());
    }

    #[test]
    fn encodings_override_by_prefix() {
        let c = Compiled::new(
            parse(r#"{"encodings":{"llama*":"o200k_base","gpt-4o-old":"cl100k_base"}}"#).unwrap(),
        );
        assert_eq!(c.encoding("llama-3"), Encoding::O200kBase);
        assert_eq!(c.encoding("gpt-4o-old"), Encoding::Cl100kBase);
        assert_eq!(c.encoding("gpt-4o"), Encoding::O200kBase);
    }

    #[test]
    fn limits_fall_back_to_default() {
        let c = Compiled::new(
            parse(r#"{"limits":{"default":{"tpm":5},"keys":{"a":{"daily_usd":1.5}}}}"#).unwrap(),
        );
        assert_eq!(c.limits_for("a").daily_micro_usd, Some(1_500_000));
        assert_eq!(c.limits_for("a").tpm, None);
        assert_eq!(c.limits_for("b").tpm, Some(5));
    }
}
