//! Prices per million tokens and the cost of one request in micro-USD.
//!
//! A price of P USD per million tokens is P micro-USD per token, so a cost is a plain sum of
//! tokens times prices. Prices are kept in nano-USD per token (three decimals of a micro-USD) to
//! stay integral; the request total is rounded up to whole micro-USD, so a budget is never
//! under-charged.

pub use aimesh_config::accounting::{lookup, Price, PriceTable, TokenCounts};

use super::usage::Usage;

impl TokenCounts for Usage {
    fn token_counts(&self) -> (u64, u64, u64) {
        (self.input, self.cached_input, self.output)
    }

    fn cache_write_tokens(&self) -> u64 {
        self.cache_write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_and_rounded_up() {
        let p = Price {
            input: 2.5,
            cached_input: Some(1.25),
            cache_write: None,
            output: 10.0,
        };
        let u = Usage {
            input: 1000,
            cached_input: 400,
            output: 100,
            cache_write: 0,
        };
        // 600 * 2.5 + 400 * 1.25 + 100 * 10 = 1500 + 500 + 1000
        assert_eq!(p.cost_micro_usd(&u), 3000);
        let tiny = Price {
            input: 0.15,
            cached_input: None,
            cache_write: None,
            output: 0.6,
        };
        let one = Usage {
            input: 1,
            cached_input: 0,
            output: 0,
            cache_write: 0,
        };
        assert_eq!(tiny.cost_micro_usd(&one), 1);
        assert_eq!(tiny.cost_micro_usd(&Usage::default()), 0);
    }

    #[test]
    fn cache_reads_and_writes_have_their_own_prices() {
        // Anthropic's claude-sonnet-4: 3 input, 0.3 cache read, 3.75 cache write, 15 output.
        let p = Price {
            input: 3.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            output: 15.0,
        };
        let u = Usage {
            input: 1000,
            cached_input: 500,
            output: 10,
            cache_write: 200,
        };
        // 300 * 3 + 500 * 0.3 + 200 * 3.75 + 10 * 15 = 900 + 150 + 750 + 150
        assert_eq!(p.cost_micro_usd(&u), 1950);
        // Without a cache-write price, writes cost plain input.
        let plain = Price {
            cache_write: None,
            ..p
        };
        assert_eq!(plain.cost_micro_usd(&u), 1950 - 750 + 600);
        assert_eq!(
            Price {
                cache_write: Some(-1.0),
                ..p
            }
            .validate()
            .unwrap_err()
            .field,
            "cache_write"
        );
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix() {
        let p = |x| Price {
            input: x,
            cached_input: None,
            cache_write: None,
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
            cache_write: None,
            output: 0.0
        }
        .validate()
        .is_err());
    }
}
