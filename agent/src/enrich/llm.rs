//! Calls to model providers: from a response body to the model it names
//! and the tokens its usage object reports. Pure; the body is dropped by
//! the caller afterwards.
use crate::{
    enrich::{
        endpoint::Template,
        rules::{
            FieldPath,
            body::documents,
            eval::{RuleError, Usage},
        },
    },
    protocols::http1::exchange::BodyBytes,
};

/// Which calls are model calls, and where their answers keep the model
/// and the usage (the `[llm]` section).
#[derive(Clone, Debug)]
pub struct LlmConfig {
    pub paths: Vec<Template>,
    pub hosts: Vec<String>,
    pub usage: Vec<FieldPath>,
    pub model: Vec<FieldPath>,
    pub max_body: usize,
    pub max_models: usize,
}

impl LlmConfig {
    /// Whether a call on `path` is a model call (its response is kept).
    pub fn is_model_call(&self, path: &str) -> bool {
        self.paths.iter().any(|t| t.matches_path(path))
    }

    /// Whether a call to `host` (its `Host` header) counts as a model call.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h.strip_prefix("*.") {
                Some(domain) => name
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.')),
                None => name == h,
            })
    }
}

/// `host` without its port (`[::1]:8443` -> `[::1]`).
pub fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

/// Longest model name exported; longer ones are cut.
const MAX_MODEL_LEN: usize = 100;

/// What a model call's response says.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelCall {
    /// As the response names it (`unknown` when it does not).
    pub model: String,
    /// Token counts by type; for a stream, the last value of each type.
    pub tokens: Vec<(String, u64)>,
}

/// A model name fit for a label: printable characters only, bounded.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_MODEL_LEN)
        .collect()
}

/// Reads a model call's response (JSON, or a `text/event-stream` of JSON
/// events). An error says why no usage could be read.
pub fn read_call(body: &BodyBytes, config: &LlmConfig) -> Result<ModelCall, RuleError> {
    let (docs, err) = documents(body, config.max_body);
    let model = docs
        .iter()
        .find_map(|doc| config.model.iter().find_map(|path| path.get(doc)?.as_str()))
        .map(clean)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let mut usage = Usage::default();
    let paths: Vec<&FieldPath> = config.usage.iter().collect();
    usage.read(&docs, &paths);
    if !usage.found {
        return Err(err.unwrap_or(RuleError::MissingField));
    }
    if usage.bad {
        return Err(RuleError::NotNumeric);
    }
    usage.tokens.retain(|(_, n)| *n > 0);
    Ok(ModelCall {
        model,
        tokens: usage.tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, event_stream: bool) -> BodyBytes {
        let mut body = BodyBytes::whole(text.as_bytes());
        body.event_stream = event_stream;
        body
    }

    /// By token type.
    fn tokens(call: &ModelCall) -> Vec<(&str, u64)> {
        let mut tokens: Vec<(&str, u64)> =
            call.tokens.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        tokens.sort_unstable();
        tokens
    }

    #[test]
    fn openai_json() {
        let text = r#"{"id":"c1","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        let call = read_call(&body(text, false), &LlmConfig::default()).unwrap();
        assert_eq!(call.model, "gpt-4o-mini");
        assert_eq!(tokens(&call), [("input", 12), ("output", 30)]);
    }

    #[test]
    fn anthropic_stream_keeps_the_last_value_of_each_type() {
        let text = "event: message_start\n\
            data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":7}}}\n\n\
            event: content_block_delta\n\
            data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n\n\
            event: message_delta\n\
            data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        let call = read_call(&body(text, true), &LlmConfig::default()).unwrap();
        assert_eq!(call.model, "claude-sonnet-4");
        assert_eq!(
            tokens(&call),
            [("cache_read_input", 7), ("input", 25), ("output", 15)]
        );
    }

    #[test]
    fn openai_stream_with_usage_in_its_last_chunk() {
        let text = "data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
            data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\n\n\
            data: [DONE]\n\n";
        let call = read_call(&body(text, true), &LlmConfig::default()).unwrap();
        assert_eq!(tokens(&call), [("input", 5), ("output", 9)]);
    }

    #[test]
    fn responses_without_usage_say_why() {
        let config = LlmConfig::default();
        assert_eq!(
            read_call(&body(r#"{"model":"m"}"#, false), &config),
            Err(RuleError::MissingField)
        );
        assert_eq!(
            read_call(&body("{\"usage\":", false), &config),
            Err(RuleError::MalformedJson)
        );
        let text = r#"{"model":"m\u0000\nx","usage":{"input_tokens":"many"}}"#;
        assert_eq!(
            read_call(&body(text, false), &config),
            Err(RuleError::NotNumeric)
        );
    }
}
