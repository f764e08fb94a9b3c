//! Calls to model providers: from a response body to the model it names
//! and the tokens its usage object reports, read the way its provider's
//! API writes them (`providers`), or through the configured fields for
//! paths no provider knows. Pure; the body is dropped by the caller
//! afterwards.
pub mod eventstream;
pub mod prices;
mod providers;

use serde_json::Value;

use self::providers::{Provider, at, provider_of};
use crate::{
    enrich::{
        endpoint::Template,
        rules::{
            FieldPath,
            body::{documents, plain},
            eval::{RuleError, Usage, count},
        },
    },
    protocols::http1::exchange::{BodyBytes, Exchange},
};

/// Which calls are model calls, and where their answers keep the model
/// and the usage (the `[llm]` section).
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// Request paths of model calls; `None`: every known provider's.
    pub paths: Option<Vec<Template>>,
    pub hosts: Vec<String>,
    pub usage: Vec<FieldPath>,
    pub model: Vec<FieldPath>,
    pub max_body: usize,
    pub max_models: usize,
    pub prices: prices::Prices,
}

impl LlmConfig {
    /// Whether a call on `path` is a model call (its response is kept).
    pub fn is_model_call(&self, path: &str) -> bool {
        match &self.paths {
            Some(paths) => paths.iter().any(|t| t.matches_path(path)),
            None => provider_of(path).is_some(),
        }
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

/// The error type of an unsuccessful answer that names none.
const UNKNOWN_ERROR: &str = "unknown";

/// The model of a call neither its answer nor its path names.
const UNKNOWN_MODEL: &str = "unknown";

/// Longest model name exported; longer ones are cut.
const MAX_MODEL_LEN: usize = 100;

/// What a model call's response says.
#[derive(Debug, PartialEq)]
pub struct ModelCall {
    /// The API the call was made in (see `providers`), `other` for a
    /// configured path none knows.
    pub provider: &'static str,
    /// As the response names it, else as the path does (`unknown` when
    /// neither does).
    pub model: String,
    /// Token counts by type; for a stream, the last value of each type.
    pub tokens: Vec<(String, u64)>,
    /// The answer came as a stream of events (server-sent events, JSON
    /// lines, a streamed JSON array, event-stream messages), so its first
    /// byte is its first token.
    pub streamed: bool,
    /// For an unsuccessful answer (status not 2xx): the provider's error
    /// type, or `unknown` when it names none.
    pub error_type: Option<String>,
    /// For a successful answer: why its usage could not be read.
    pub unread: Option<RuleError>,
    /// The provider counts cached prompt tokens inside `input`.
    pub cached_in_input: bool,
    /// The provider counts reasoning tokens inside `output`.
    pub reasoning_in_output: bool,
    /// For a successful answer: the times the provider reports it spent,
    /// by phase, in seconds (Ollama's).
    pub durations: Vec<(&'static str, f64)>,
}

#[cfg(test)]
impl ModelCall {
    /// A successful call reporting `tokens`, for tests of what is made of
    /// its counts.
    pub fn with_tokens(
        tokens: &[(&str, u64)],
        cached_in_input: bool,
        reasoning_in_output: bool,
    ) -> Self {
        Self {
            provider: "test",
            model: "m".into(),
            tokens: tokens.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            streamed: false,
            error_type: None,
            unread: None,
            cached_in_input,
            reasoning_in_output,
            durations: Vec::new(),
        }
    }
}

/// A model name fit for a label: printable characters only, bounded.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_MODEL_LEN)
        .collect()
}

/// Where an unsuccessful answer on a configured path names its error type.
const OTHER_ERROR_TYPE: &[&str] = &["error.type", "error.code", "error.status"];
/// Longest error type exported; a longer or odd one is `unknown`.
const MAX_ERROR_TYPE_LEN: usize = 64;

/// An error type fit for a label: a word (letters, digits, `_.:-`).
fn error_type(text: &str) -> Option<String> {
    (!text.is_empty()
        && text.len() <= MAX_ERROR_TYPE_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)))
    .then(|| text.to_owned())
}

/// OpenTelemetry's `gen_ai.operation.name` of a call on `path`.
pub fn operation_of(path: &str) -> &'static str {
    if path.contains("mbed") {
        "embeddings" // /v1/embeddings, /api/embed, :embedContent
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        "generate_content"
    } else if path.ends_with("/api/generate")
        || (path.ends_with("/completions") && !path.ends_with("/chat/completions"))
    {
        "text_completion"
    } else {
        "chat"
    }
}

/// The model a call asked for (OpenTelemetry's `gen_ai.request.model`):
/// as its path names it (Gemini, Bedrock), else as the request body's
/// top-level `model` does (the other APIs), where the body was captured
/// whole enough to hold it (`limit`: bytes decoded).
pub fn requested_model(path: &str, request: Option<&BodyBytes>, limit: usize) -> Option<String> {
    let from_body = || {
        let (docs, _) = documents(request?, limit);
        docs.first()?.get("model")?.as_str().map(str::to_owned)
    };
    provider_of(path)
        .and_then(|p| (p.model_in_path)(path))
        .or_else(from_body)
        .map(|model| clean(&model))
        .filter(|model| !model.is_empty())
}

/// A model call read from its whole exchange: its answer (`body`, see
/// [`read_call`]), then what the rest of the exchange adds: the model it
/// asked for ([`requested_model`]) where the answer names none (an error,
/// Cohere's answers), and the error type the answer's headers name where
/// its body names none (Bedrock's). Also returns the model asked for.
pub fn read_exchange(
    exchange: &Exchange,
    body: &BodyBytes,
    config: &LlmConfig,
) -> (ModelCall, Option<String>) {
    let mut call = read_call(&exchange.path, exchange.status, body, config);
    let requested = requested_model(
        &exchange.path,
        exchange.request_body.as_ref(),
        config.max_body,
    );
    if let (Some(kind), Some(named)) = (&mut call.error_type, &exchange.error_type)
        && kind == UNKNOWN_ERROR
    {
        *kind = named.to_string();
    }
    if call.model == UNKNOWN_MODEL
        && let Some(asked) = &requested
    {
        call.model.clone_from(asked);
    }
    (call, requested)
}

/// Reads the response of a model call on `path` that answered `status`
/// (JSON, a stream of JSON values such as Ollama's lines, a streamed JSON
/// array such as Gemini's, a `text/event-stream` of JSON events, or
/// Bedrock's binary event-stream framing).
pub fn read_call(
    path: &str,
    status: Option<u16>,
    body: &BodyBytes,
    config: &LlmConfig,
) -> ModelCall {
    let provider = provider_of(path);
    let framed = provider.is_some_and(|p| (p.framed)(path));
    let (docs, err) = if framed {
        framed_documents(body, config.max_body)
    } else {
        documents(body, config.max_body)
    };
    let streamed =
        framed || body.event_stream || docs.len() > 1 || docs.first().is_some_and(Value::is_array);
    // A streamed JSON array's elements are the stream's events.
    let docs: Vec<Value> = docs
        .into_iter()
        .flat_map(|doc| match doc {
            Value::Array(items) => items,
            doc => vec![doc],
        })
        .collect();
    let first_str = |fields: &[&str]| {
        docs.iter()
            .find_map(|doc| fields.iter().find_map(|f| at(doc, f)?.as_str()))
    };
    let model = match provider {
        Some(provider) => first_str(provider.model)
            .map(str::to_owned)
            .or_else(|| (provider.model_in_path)(path)),
        None => docs
            .iter()
            .find_map(|doc| config.model.iter().find_map(|f| f.get(doc)?.as_str()))
            .map(str::to_owned),
    };
    let mut call = ModelCall {
        provider: provider.map_or("other", |p| p.name),
        model: model
            .as_deref()
            .map(clean)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned()),
        tokens: Vec::new(),
        streamed,
        error_type: None,
        unread: None,
        cached_in_input: provider.is_some_and(|p| p.cached_in_input),
        reasoning_in_output: provider.is_some_and(|p| p.reasoning_in_output),
        durations: Vec::new(),
    };
    if status.is_some_and(|s| !(200..300).contains(&s)) {
        let fields = provider.map_or(OTHER_ERROR_TYPE, |p| p.error_type);
        call.error_type = Some(
            first_str(fields)
                .and_then(error_type)
                .unwrap_or_else(|| UNKNOWN_ERROR.to_owned()),
        );
        return call;
    }
    let mut usage = match provider {
        Some(provider) => provider_usage(provider, &docs),
        None => {
            let mut usage = Usage::default();
            let paths: Vec<&FieldPath> = config.usage.iter().collect();
            usage.read(&docs, &paths);
            usage
        }
    };
    if !usage.found {
        call.unread = Some(err.unwrap_or(RuleError::MissingField));
    } else if usage.bad {
        call.unread = Some(RuleError::NotNumeric);
    } else {
        usage.tokens.retain(|(_, n)| *n > 0);
        call.tokens = usage.tokens;
    }
    if let Some(provider) = provider {
        call.durations = reported_durations(provider, &docs);
    }
    call
}

/// The times `provider` reports in its answer (the last value of each, for
/// a stream), in seconds; a value that is not a count of nanoseconds is
/// left out.
fn reported_durations(provider: &Provider, docs: &[Value]) -> Vec<(&'static str, f64)> {
    provider
        .durations
        .iter()
        .filter_map(|(field, phase)| {
            let nanos = docs
                .iter()
                .rev()
                .find_map(|doc| doc.get(*field)?.as_u64())?;
            Some((*phase, nanos as f64 / 1e9))
        })
        .collect()
}

/// The JSON payloads of an answer in AWS's event-stream framing, one
/// document each; a payload wrapping the model's own chunk
/// (`{"bytes": BASE64}`, invoke-with-response-stream) is that chunk. Bad
/// framing or a payload that is not JSON counts as malformed.
fn framed_documents(body: &BodyBytes, limit: usize) -> (Vec<Value>, Option<RuleError>) {
    use base64::Engine as _;
    let (bytes, complete) = match plain(body, limit) {
        Ok(plain) => plain,
        Err(err) => return (Vec::new(), Some(err)),
    };
    let (messages, framing) = eventstream::messages(&bytes);
    let mut error = match framing {
        None => None,
        Some(eventstream::FrameError::Cut) if !complete => Some(RuleError::Truncated),
        Some(_) => Some(RuleError::MalformedJson),
    };
    let mut docs = Vec::new();
    for message in messages {
        let Ok(value) = serde_json::from_slice::<Value>(message.payload) else {
            error = Some(RuleError::MalformedJson);
            continue;
        };
        let wrapped = value.get("bytes").and_then(Value::as_str).map(|text| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        });
        match wrapped {
            None => docs.push(value),
            Some(Some(chunk)) => docs.push(chunk),
            Some(None) => error = Some(RuleError::MalformedJson),
        }
    }
    (docs, error)
}

/// The token counts of `provider`'s usage objects in `docs`; a later
/// document (a stream's later event) overrides an earlier count.
fn provider_usage(provider: &Provider, docs: &[Value]) -> Usage {
    let mut usage = Usage::default();
    for doc in docs {
        for object in provider.usage {
            let Some(found) = at(doc, object.at).filter(|v| v.is_object()) else {
                continue;
            };
            for (field, kind) in object.fields {
                match at(found, field) {
                    None | Some(Value::Null) => {}
                    Some(value) => {
                        usage.found = true;
                        match count(value) {
                            Some(n) => usage.set(kind, n),
                            None => usage.bad = true,
                        }
                    }
                }
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests;
