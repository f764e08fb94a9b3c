//! The `[semantic]` section and the `[[rules]]` tables: route rules for the
//! business metrics, validated into a [`RuleSet`]. Errors name the rule's
//! line and say how to write it.
use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use crate::{
    enrich::{
        endpoint::Template,
        rules::{
            DEFAULT_MAX_BODY, DEFAULT_MAX_LABEL_VALUES, Family, LabelSource, Rule, RuleSet,
            Semantic, Side, Source, Tokens, default_rules, default_tokens,
        },
    },
    protocols::http1::head::Method,
};

/// Largest body limit accepted (the probes copy at most this per response).
const MAX_BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSemantic {
    /// Use the built-in rules when no `[[rules]]` are given (default true).
    pub default_rules: Option<bool>,
    /// Body bytes read for a matched rule (default 16384).
    pub max_body: Option<usize>,
    /// Distinct values per label fed from request data (default 100).
    pub max_label_values: Option<usize>,
    /// Failed-attempt reasons by status, e.g. `{ 401 = "invalid_credentials" }`.
    pub failure_statuses: Option<BTreeMap<String, String>>,
    /// A body field naming the failure reason, e.g. `"response:detail"`.
    pub failure_reason: Option<String>,
    /// The reasons taken from that field; any other value is not exported.
    #[serde(default)]
    pub failure_reasons: Vec<String>,
}

/// Token sources: one usage-object path (or several), or named fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileTokens {
    One(String),
    Many(Vec<String>),
    Named(BTreeMap<String, String>),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    pub name: Option<String>,
    pub family: String,
    /// Default: any method.
    pub method: Option<String>,
    pub route: String,
    #[serde(default)]
    pub services: Vec<String>,
    pub provider: Option<String>,
    pub agent_name: Option<String>,
    pub tool_name: Option<String>,
    pub success: Option<String>,
    pub tokens: Option<FileTokens>,
}

fn body_field(
    origin: &str,
    text: &str,
) -> Result<(Side, crate::enrich::rules::FieldPath), ConfigError> {
    let bad = |reason: String| ConfigError::Rule {
        origin: origin.to_owned(),
        reason,
    };
    match LabelSource::parse(text).map_err(bad)?.source {
        Source::Body(side, path) => Ok((side, path)),
        _ => Err(bad(format!(
            "tokens come from a body: write \"response:usage\", not `{text}`"
        ))),
    }
}

fn rule(origin: &str, raw: FileRule) -> Result<Rule, ConfigError> {
    let bad = |reason: String| ConfigError::Rule {
        origin: origin.to_owned(),
        reason,
    };
    let family = Family::ALL
        .into_iter()
        .find(|f| f.as_str() == raw.family)
        .ok_or_else(|| {
            bad(format!(
                "unknown family `{}`; use login, token_refresh, agent or tool",
                raw.family
            ))
        })?;
    let route = Template::parse(&raw.route).ok_or_else(|| {
        bad(format!(
            "route `{}` must start with `/`, e.g. \"/agents/{{agent_name}}/invoke\"",
            raw.route
        ))
    })?;
    let method = match &raw.method {
        None => None,
        Some(text) => match Method::parse(&text.to_ascii_uppercase()) {
            Method::Other => return Err(bad(format!("unknown method `{text}`; use e.g. POST"))),
            method => Some(method),
        },
    };
    let label = family.label();
    let (given, others) = match family {
        Family::Login | Family::TokenRefresh => (raw.provider, [raw.agent_name, raw.tool_name]),
        Family::Agent => (raw.agent_name, [raw.provider, raw.tool_name]),
        Family::Tool => (raw.tool_name, [raw.provider, raw.agent_name]),
    };
    if others.iter().any(Option::is_some) {
        return Err(bad(format!(
            "a {} rule labels `{label}` only",
            family.as_str()
        )));
    }
    let subject = match given {
        Some(text) => LabelSource::parse(&text).map_err(bad)?,
        // A route parameter of the label's name is the obvious source.
        None if route.param_names().any(|p| p == label) => {
            LabelSource::parse(&format!("path:{label}")).map_err(bad)?
        }
        None => {
            return Err(bad(format!(
                "say where `{label}` comes from, e.g. {label} = \"path:{label}\" or \"value:NAME\""
            )));
        }
    };
    if let Source::Path(name) = &subject.source
        && !route.param_names().any(|p| p == name)
    {
        return Err(bad(format!(
            "route `{}` has no parameter `{{{name}}}`",
            raw.route
        )));
    }
    let success = raw
        .success
        .as_deref()
        .map(LabelSource::parse)
        .transpose()
        .map_err(bad)?;
    let tokens = match (family, raw.tokens) {
        (Family::Agent, None) => Some(default_tokens()),
        (Family::Agent, Some(FileTokens::One(path))) => {
            Some(Tokens::Objects(vec![body_field(origin, &path)?]))
        }
        (Family::Agent, Some(FileTokens::Many(paths))) => Some(Tokens::Objects(
            paths
                .iter()
                .map(|p| body_field(origin, p))
                .collect::<Result<_, _>>()?,
        )),
        (Family::Agent, Some(FileTokens::Named(fields))) => Some(Tokens::Fields(
            fields
                .iter()
                .map(|(kind, p)| {
                    let (side, path) = body_field(origin, p)?;
                    Ok((kind.clone(), side, path))
                })
                .collect::<Result<_, ConfigError>>()?,
        )),
        (_, Some(_)) => return Err(bad("only agent rules count tokens".to_owned())),
        (_, None) => None,
    };
    Ok(Rule {
        name: raw
            .name
            .unwrap_or_else(|| format!("{} {}", family.as_str(), raw.route)),
        family,
        method,
        route,
        services: raw.services,
        subject,
        success,
        tokens,
    })
}

fn semantic(origin: &str, raw: FileSemantic) -> Result<Semantic, ConfigError> {
    let bad = |reason: String| ConfigError::Rule {
        origin: format!("{origin}semantic"),
        reason,
    };
    let max_body = raw.max_body.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 || max_body > MAX_BODY_LIMIT {
        return Err(bad(format!(
            "max_body must be between 1 and {MAX_BODY_LIMIT} bytes"
        )));
    }
    let max_label_values = raw.max_label_values.unwrap_or(DEFAULT_MAX_LABEL_VALUES);
    if max_label_values == 0 {
        return Err(bad("max_label_values must be at least 1".to_owned()));
    }
    let failure_statuses = match raw.failure_statuses {
        None => Semantic::default().failure_statuses,
        Some(map) => map
            .into_iter()
            .map(|(code, reason)| {
                code.parse::<u16>()
                    .ok()
                    .filter(|c| (100..600).contains(c))
                    .map(|c| (c, reason))
                    .ok_or_else(|| bad(format!("`{code}` is not an HTTP status; write e.g. 401 = \"invalid_credentials\"")))
            })
            .collect::<Result<_, _>>()?,
    };
    let failure_reason = raw
        .failure_reason
        .as_deref()
        .map(LabelSource::parse)
        .transpose()
        .map_err(bad)?;
    Ok(Semantic {
        max_body,
        max_label_values,
        failure_statuses,
        failure_reason,
        failure_reasons: raw.failure_reasons,
    })
}

/// Validates the section and the rules. `line` turns a byte offset of the
/// file into its line number.
pub fn build(
    path: &str,
    raw_semantic: FileSemantic,
    raw_rules: Vec<Spanned<FileRule>>,
    line: &dyn Fn(usize) -> usize,
) -> Result<RuleSet, ConfigError> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    let defaults = raw_semantic.default_rules.unwrap_or(true);
    let semantic = semantic(&prefix, raw_semantic)?;
    let rules = if raw_rules.is_empty() && defaults {
        default_rules()
    } else {
        raw_rules
            .into_iter()
            .map(|spanned| {
                let origin = format!("{prefix}line {}: rule", line(spanned.span().start));
                rule(&origin, spanned.into_inner())
            })
            .collect::<Result<_, _>>()?
    };
    Ok(RuleSet { rules, semantic })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<RuleSet, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            semantic: FileSemantic,
            #[serde(default)]
            rules: Vec<Spanned<FileRule>>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let line = |offset: usize| text[..offset].matches('\n').count() + 1;
        build("f.toml", file.semantic, file.rules, &line).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_without_rules_and_none_when_turned_off() {
        assert_eq!(rules("").unwrap().rules.len(), default_rules().len());
        assert!(
            rules("[semantic]\ndefault_rules = false\n")
                .unwrap()
                .rules
                .is_empty()
        );
    }

    #[test]
    fn a_rule_set_for_another_layout() {
        let set = rules(
            r#"
[semantic]
max_body = 4096
failure_statuses = { 401 = "bad_password", 429 = "throttled" }

[[rules]]
family = "login"
method = "post"
route = "/identity/session"
provider = "request:idp|password"

[[rules]]
family = "agent"
route = "/v2/runs/{run_agent}"
agent_name = "path:run_agent"
tokens = { input = "response:meta.in", output = "response:meta.out" }
"#,
        )
        .unwrap();
        assert_eq!(set.rules.len(), 2);
        assert_eq!(set.semantic.max_body, 4096);
        assert_eq!(set.semantic.failure_statuses[&429], "throttled");
        assert_eq!(set.rules[0].method, Some(Method::Post));
        assert!(
            set.rules[1]
                .to_string()
                .contains("tokens input: response:meta.in")
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let err = rules("\n\n[[rules]]\nfamily = \"signup\"\nroute = \"/x\"\n").unwrap_err();
        assert!(
            err.contains("f.toml: line 3: rule") && err.contains("use login"),
            "{err}"
        );
        let err = rules("[[rules]]\nfamily = \"tool\"\nroute = \"/run\"\n").unwrap_err();
        assert!(err.contains("tool_name = \"path:tool_name\""), "{err}");
        let err =
            rules("[[rules]]\nfamily = \"tool\"\nroute = \"/t/{id}\"\ntool_name = \"path:name\"\n")
                .unwrap_err();
        assert!(err.contains("no parameter `{name}`"), "{err}");
        let err = rules("[[rules]]\nfamily = \"tool\"\nroute = \"/t/{tool_name}\"\ntokens = \"response:usage\"\n")
            .unwrap_err();
        assert!(err.contains("only agent rules"), "{err}");
        let err = rules("[semantic]\nfailure_statuses = { abc = \"x\" }\n").unwrap_err();
        assert!(err.contains("not an HTTP status"), "{err}");
    }
}
