//! Prices per million tokens and the cost of one request in micro-USD.
//!
//! A price of P USD per million tokens is P micro-USD per token, so a cost is a plain sum of
//! tokens times prices. Prices are kept in nano-USD per token (three decimals of a micro-USD) to
//! stay integral; the request total is rounded up to whole micro-USD, so a budget is never
//! under-charged.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::usage::Usage;

/// Prices of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Cached input tokens; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Output tokens.
    pub output: f64,
}

/// Prices by model name; a key ending in `*` matches by prefix (longest prefix wins).
pub type PriceTable = BTreeMap<String, Price>;

fn nano(usd_per_million: f64) -> u128 {
    // Rounded to the nano-USD per token; prices are validated non-negative and finite.
    (usd_per_million * 1000.0).round().max(0.0) as u128
}

impl Price {
    /// Checks the figures; `Err` says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("input", Some(self.input)),
            ("cached_input", self.cached_input),
            ("output", Some(self.output)),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=1_000_000.0).contains(&v) {
                    return Err(format!(
                        "{name}: must be a number of USD per million tokens between 0 and 1000000"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Cost of `u` in micro-USD, rounded up.
    pub fn cost_micro_usd(&self, u: &Usage) -> u64 {
        let cached = u.cached_input.min(u.input);
        let nanos = u128::from(u.input - cached) * nano(self.input)
            + u128::from(cached) * nano(self.cached_input.unwrap_or(self.input))
            + u128::from(u.output) * nano(self.output);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_and_rounded_up() {
        let p = Price {
            input: 2.5,
            cached_input: Some(1.25),
            output: 10.0,
        };
        let u = Usage {
            input: 1000,
            cached_input: 400,
            output: 100,
        };
        // 600 * 2.5 + 400 * 1.25 + 100 * 10 = 1500 + 500 + 1000
        assert_eq!(p.cost_micro_usd(&u), 3000);
        let tiny = Price {
            input: 0.15,
            cached_input: None,
            output: 0.6,
        };
        let one = Usage {
            input: 1,
            cached_input: 0,
            output: 0,
        };
        assert_eq!(tiny.cost_micro_usd(&one), 1);
        assert_eq!(tiny.cost_micro_usd(&Usage::default()), 0);
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix() {
        let p = |x| Price {
            input: x,
            cached_input: None,
            output: x,
        };
        let t: PriceTable = [
            ("gpt-4o".to_string(), p(1.0)),
            ("gpt-4o*".to_string(), p(2.0)),
            ("gpt-4o-mini*".to_string(), p(3.0)),
            ("*".to_string(), p(9.0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(lookup(&t, "gpt-4o").unwrap().input, 1.0);
        assert_eq!(lookup(&t, "gpt-4o-2024").unwrap().input, 2.0);
        assert_eq!(lookup(&t, "gpt-4o-mini-x").unwrap().input, 3.0);
        assert_eq!(lookup(&t, "llama").unwrap().input, 9.0);
        assert!(lookup(&PriceTable::new(), "x").is_none());
        assert!(Price {
            input: -1.0,
            cached_input: None,
            output: 0.0
        }
        .validate()
        .is_err());
    }
}
