//! What model calls cost: the `[llm.prices]` table (dollars per million
//! tokens, per model and token type) applied to a call's token counts. No
//! price is built in (they change); a model with none is unpriced, never
//! guessed.
use std::collections::HashMap;

use serde::Deserialize;

use super::ModelCall;

/// Dollars per million tokens of each type (as `[llm.prices]` writes
/// them). Cached and cache-writing prompt tokens cost the input price
/// unless given.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_creation: Option<f64>,
}

/// The price table: model names matched exactly, else by the longest
/// prefix rule (`"claude-sonnet-4*"`).
#[derive(Clone, Debug, Default)]
pub struct Prices {
    exact: HashMap<String, Price>,
    /// Longest prefix first.
    prefixes: Vec<(String, Price)>,
}

impl Prices {
    /// `rules`: `(model or prefix ending in '*', price)`.
    pub fn new(rules: impl IntoIterator<Item = (String, Price)>) -> Self {
        let mut prices = Self::default();
        for (name, price) in rules {
            match name.strip_suffix('*') {
                Some(prefix) => prices.prefixes.push((prefix.to_owned(), price)),
                None => {
                    prices.exact.insert(name, price);
                }
            }
        }
        prices
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        prices
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn of(&self, model: &str) -> Option<&Price> {
        self.exact.get(model).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| model.starts_with(prefix.as_str()))
                .map(|(_, price)| price)
        })
    }
}

/// The dollars `call` cost at `price`. Each token is priced once: where a
/// provider counts cached prompt tokens inside `input` (OpenAI, Gemini),
/// they are taken out of it and priced as `cache_read`; where it counts
/// reasoning inside `output` (OpenAI), reasoning is not priced again, and
/// where it does not (Gemini, which bills thinking as output), reasoning
/// costs the output price. Token types other than these are not priced.
pub fn cost(call: &ModelCall, price: &Price) -> f64 {
    let count = |kind: &str| {
        call.tokens
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0.0, |(_, n)| *n as f64)
    };
    let cache_read = count("cache_read");
    let input = if call.cached_in_input {
        (count("input") - cache_read).max(0.0)
    } else {
        count("input")
    };
    let reasoning = if call.reasoning_in_output {
        0.0
    } else {
        count("reasoning")
    };
    (input * price.input
        + cache_read * price.cache_read.unwrap_or(price.input)
        + count("cache_creation") * price.cache_creation.unwrap_or(price.input)
        + (count("output") + reasoning) * price.output)
        / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64, output: f64) -> Price {
        Price {
            input,
            output,
            cache_read: None,
            cache_creation: None,
        }
    }

    fn call(tokens: &[(&str, u64)], cached_in_input: bool, reasoning_in_output: bool) -> ModelCall {
        ModelCall::with_tokens(tokens, cached_in_input, reasoning_in_output)
    }

    #[test]
    fn exact_names_win_then_the_longest_prefix() {
        let prices = Prices::new([
            ("gpt-4o".to_owned(), price(2.5, 10.0)),
            ("gpt-4o*".to_owned(), price(1.0, 1.0)),
            ("gpt-4o-mini*".to_owned(), price(0.15, 0.6)),
            ("*".to_owned(), price(9.0, 9.0)),
        ]);
        assert_eq!(prices.of("gpt-4o").unwrap().input, 2.5);
        assert_eq!(prices.of("gpt-4o-2024-08-06").unwrap().input, 1.0);
        assert_eq!(prices.of("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(prices.of("llama3.2").unwrap().input, 9.0, "a catch-all");
        assert!(Prices::new([]).of("gpt-4o").is_none());
    }

    #[test]
    fn every_token_is_priced_once() {
        let at = Price {
            input: 2.0,
            output: 8.0,
            cache_read: Some(0.5),
            cache_creation: None,
        };
        // OpenAI: 64 of the 100 input tokens were cached; reasoning is
        // inside output.
        let openai = call(
            &[
                ("input", 100),
                ("cache_read", 64),
                ("output", 40),
                ("reasoning", 25),
            ],
            true,
            true,
        );
        let expected = (36.0 * 2.0 + 64.0 * 0.5 + 40.0 * 8.0) / 1e6;
        assert!((cost(&openai, &at) - expected).abs() < 1e-15);
        // Anthropic: cache reads and writes beside input; writes at the
        // input price when the table gives none.
        let anthropic = call(
            &[
                ("input", 10),
                ("cache_read", 30),
                ("cache_creation", 20),
                ("output", 5),
            ],
            false,
            false,
        );
        let expected = (10.0 * 2.0 + 30.0 * 0.5 + 20.0 * 2.0 + 5.0 * 8.0) / 1e6;
        assert!((cost(&anthropic, &at) - expected).abs() < 1e-15);
        // Gemini: thoughts are billed as output.
        let gemini = call(
            &[("input", 12), ("output", 30), ("reasoning", 7)],
            true,
            false,
        );
        let expected = (12.0 * 2.0 + 37.0 * 8.0) / 1e6;
        assert!((cost(&gemini, &at) - expected).abs() < 1e-15);
    }
}
