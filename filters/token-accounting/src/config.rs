//! Token-accounting filter configuration.

use std::collections::HashMap;

use aimesh_core::accounting::admission::Limits;
use aimesh_core::accounting::estimate::Encoding;
use aimesh_core::accounting::price::{self, Price};

/// Filter configuration (JSON in the Wasm `PluginConfig`), owned by aimesh-config.
pub use aimesh_config::accounting::TokenAccountingConfig as Config;
pub use aimesh_config::accounting::{KeyLimits, LimitsConfig};

fn micro(usd: Option<f64>) -> Option<u64> {
    usd.map(|u| (u * 1_000_000.0).round() as u64)
}

/// A key's limits in core units.
pub fn compile_limits(l: &KeyLimits) -> Limits {
    Limits {
        tpm: l.tpm,
        daily_micro_usd: micro(l.daily_usd),
        monthly_micro_usd: micro(l.monthly_usd),
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
            .map(|(k, l)| (k.clone(), compile_limits(l)))
            .collect();
        let default_limits = config
            .limits
            .default
            .as_ref()
            .map(compile_limits)
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
        aimesh_config::Validate::validate(&c)
            .map(|()| c)
            .map_err(|e| e.to_string())
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
