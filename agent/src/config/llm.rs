//! The `[llm]` section: which HTTP calls of a service go to a model
//! provider, and where their responses keep the model and the token usage.
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, at_least_one, templates};
pub use crate::enrich::llm::LlmConfig;
use crate::enrich::llm::prices::{Price, Prices};
use crate::enrich::rules::FieldPath;

/// Usage objects of calls on configured paths no built-in provider knows:
/// OpenAI's `usage`, Anthropic's `usage` and the `message.usage` of its
/// stream's first event.
const DEFAULT_USAGE: &[&str] = &["usage", "message.usage"];
const DEFAULT_MODEL: &[&str] = &["model", "message.model", "response.model"];
pub const DEFAULT_MAX_BODY: usize = 64 << 10;
pub const DEFAULT_MAX_MODELS: usize = 20;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLlm {
    /// Request paths (templates) of model calls (default: those of every
    /// built-in provider: OpenAI and the servers that copy its API, Azure
    /// OpenAI, Anthropic, Gemini, Ollama, Bedrock, Cohere).
    pub paths: Option<Vec<String>>,
    /// Only calls to these hosts (the `Host` header without its port;
    /// `*.example.com` matches subdomains); empty or absent: any host.
    pub hosts: Option<Vec<String>>,
    /// Response fields holding the usage object, first found wins, for
    /// calls on paths no built-in provider knows.
    pub usage: Option<Vec<String>>,
    /// Response fields holding the model name, likewise.
    pub model: Option<Vec<String>>,
    /// Response bytes kept per call for reading the usage (default 64 KiB).
    pub max_body: Option<usize>,
    /// Distinct `model` values per service (default 20).
    pub max_models: Option<usize>,
    /// Dollars per million tokens by model (`[llm.prices]`): a name, or a
    /// prefix ending in `*`.
    pub prices: Option<BTreeMap<String, Price>>,
}

/// The price table, checked: names not empty, `*` only at the end, every
/// price a finite number of dollars, not negative.
fn prices(file: BTreeMap<String, Price>, origin: &str) -> Result<Prices, ConfigError> {
    let mut rules = Vec::new();
    for (name, price) in file {
        let refuse = |reason: String| ConfigError::Rule {
            origin: format!("{origin}.\"{name}\""),
            reason,
        };
        if name.is_empty() || name.trim_end_matches('*').contains('*') {
            return Err(refuse(
                "a model name, or a prefix ending in `*` (e.g. \"claude-sonnet-4*\")".into(),
            ));
        }
        let given = [
            ("input", Some(price.input)),
            ("output", Some(price.output)),
            ("cache_read", price.cache_read),
            ("cache_creation", price.cache_creation),
        ];
        if let Some((kind, value)) = given.iter().find_map(|(kind, value)| {
            value
                .filter(|v| !v.is_finite() || *v < 0.0)
                .map(|v| (kind, v))
        }) {
            return Err(refuse(format!(
                "{kind} = {value} is not a price; give dollars per million tokens, 0 or more"
            )));
        }
        rules.push((name, price));
    }
    Ok(Prices::new(rules))
}

pub fn build(file: FileLlm, path: &str) -> Result<LlmConfig, ConfigError> {
    let origin = |field: &str| format!("{path}: llm.{field}");
    let strings = |given: Option<Vec<String>>, defaults: &[&str]| {
        given.unwrap_or_else(|| defaults.iter().map(|s| (*s).to_owned()).collect())
    };
    let paths = file
        .paths
        .map(|paths| templates(&origin("paths"), &paths))
        .transpose()?;
    let fields = |field: &str, given, defaults| {
        strings(given, defaults)
            .iter()
            .map(|text| {
                FieldPath::parse(text).ok_or_else(|| ConfigError::Rule {
                    origin: origin(field),
                    reason: format!(
                        "`{text}` is not a field path (e.g. `usage` or `message.usage`)"
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(LlmConfig {
        paths,
        hosts: file
            .hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        usage: fields("usage", file.usage, DEFAULT_USAGE)?,
        model: fields("model", file.model, DEFAULT_MODEL)?,
        max_body: at_least_one(origin("max_body"), file.max_body, DEFAULT_MAX_BODY)?,
        max_models: at_least_one(origin("max_models"), file.max_models, DEFAULT_MAX_MODELS)?,
        prices: prices(file.prices.unwrap_or_default(), &origin("prices"))?,
    })
}

/// The defaults of the `[llm]` section.
impl Default for LlmConfig {
    fn default() -> Self {
        build(FileLlm::default(), "defaults").expect("valid defaults")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_common_providers() {
        let config = LlmConfig::default();
        assert!(config.is_model_call("/v1/chat/completions"));
        assert!(config.is_model_call("/v1/messages"));
        assert!(config.is_model_call("/openai/deployments/gpt4o/chat/completions"));
        assert!(config.is_model_call("/v1beta/models/gemini-2.0-flash:generateContent"));
        assert!(config.is_model_call("/api/chat"));
        assert!(!config.is_model_call("/v1/models"));
        let only = build(
            FileLlm {
                paths: Some(vec!["/gateway/{model}/chat".into()]),
                ..FileLlm::default()
            },
            "f",
        )
        .unwrap();
        assert!(only.is_model_call("/gateway/m1/chat"));
        assert!(
            !only.is_model_call("/v1/chat/completions"),
            "paths replace the defaults"
        );
        assert!(config.host_allowed("api.openai.com"));
    }

    #[test]
    fn hosts_match_exactly_or_by_domain() {
        let file = FileLlm {
            hosts: Some(vec!["api.openai.com".into(), "*.openai.azure.com".into()]),
            ..FileLlm::default()
        };
        let config = build(file, "f").unwrap();
        assert!(config.host_allowed("api.openai.com:443"));
        assert!(config.host_allowed("me.openai.azure.com"));
        assert!(!config.host_allowed("openai.azure.com"));
        assert!(!config.host_allowed("evil-openai.azure.com"));
        assert!(!config.host_allowed("api.anthropic.com"));
        assert_eq!(crate::enrich::llm::host_name("[::1]:8443"), "[::1]");
        assert_eq!(crate::enrich::llm::host_name("::1"), "::1");
    }

    #[test]
    fn prices_are_checked() {
        let table = |text: &str| {
            let file: FileLlm = toml::from_str(text).unwrap();
            build(file, "f.toml")
        };
        let config = table(
            "[prices]\n\"gpt-4o-mini\" = { input = 0.15, output = 0.6, cache_read = 0.075 }\n\
             \"claude-sonnet-4*\" = { input = 3, output = 15 }\n",
        )
        .unwrap();
        assert_eq!(
            config.prices.of("gpt-4o-mini").unwrap().cache_read,
            Some(0.075)
        );
        assert_eq!(config.prices.of("claude-sonnet-4-5").unwrap().output, 15.0);
        let err = table("[prices]\nm = { input = -1, output = 1 }\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("f.toml: llm.prices.\"m\": input = -1"),
            "{err}"
        );
        let err = table("[prices]\n\"a*b\" = { input = 1, output = 1 }\n").unwrap_err();
        assert!(err.to_string().contains("prefix ending in `*`"), "{err}");
        assert!(toml::from_str::<FileLlm>("[prices]\nm = { input = 1 }\n").is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let file = FileLlm {
            paths: Some(vec!["no-slash".into()]),
            ..FileLlm::default()
        };
        let err = build(file, "f.toml").unwrap_err().to_string();
        assert!(err.contains("f.toml: llm.paths"), "{err}");
        let file = FileLlm {
            max_models: Some(0),
            ..FileLlm::default()
        };
        let err = build(file, "f.toml").unwrap_err().to_string();
        assert!(err.contains("llm.max_models"), "{err}");
    }
}
