//! The model APIs loupe knows: how to tell their calls by the request path,
//! where their answers keep the model, and which of their usage fields is
//! which token type. A new provider is one entry of [`PROVIDERS`].
//!
//! Token types, named alike for every provider:
//! - `input`: the prompt's tokens as the provider reports them (OpenAI and
//!   Gemini include cached tokens in it, Anthropic does not);
//! - `output`: generated tokens (OpenAI and Anthropic include reasoning
//!   tokens in it, Gemini does not);
//! - `cache_read`: prompt tokens served from the provider's cache;
//! - `cache_creation`: prompt tokens written to the cache (Anthropic);
//! - `reasoning`: tokens the model spent thinking.
use serde_json::Value;

/// A usage object: where it is in an answer (`""`: the answer itself), and
/// which of its fields (dotted paths below it) count which token type.
pub struct UsageObject {
    pub at: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
}

pub struct Provider {
    /// As OpenTelemetry's `gen_ai.provider.name` names it, where it does.
    pub name: &'static str,
    /// Whether a request path (without its query) is a call to this API.
    pub is_call: fn(&str) -> bool,
    /// The model a call's path names, if any.
    pub model_in_path: fn(&str) -> Option<String>,
    /// Whether the answer to a call on this path comes in AWS's binary
    /// event-stream framing (`eventstream`).
    pub framed: fn(&str) -> bool,
    /// Answer fields naming the model, first found wins.
    pub model: &'static [&'static str],
    pub usage: &'static [UsageObject],
    /// Its `input` count includes the `cache_read` tokens.
    pub cached_in_input: bool,
    /// Its `output` count includes the `reasoning` tokens.
    pub reasoning_in_output: bool,
    /// Answer fields reporting how long the provider spent on the call, in
    /// nanoseconds, and the phase each is (`llm_provider_duration_seconds`).
    pub durations: &'static [(&'static str, &'static str)],
    /// Fields of an unsuccessful answer naming the error's type, first
    /// found wins.
    pub error_type: &'static [&'static str],
}

const fn no_model_in_path(_: &str) -> Option<String> {
    None
}

const fn never(_: &str) -> bool {
    false
}

/// The OpenAI API, and the servers that copy its paths (Azure OpenAI,
/// vLLM, LiteLLM, Groq, Mistral, Together, OpenRouter, Ollama's `/v1`).
fn openai_call(path: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/embeddings",
    ];
    SUFFIXES.iter().any(|s| path.ends_with(s)) || azure_deployment(path)
}

/// `/openai/deployments/{deployment}/(chat/completions|completions|embeddings)`.
fn azure_deployment(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/openai/deployments/") else {
        return false;
    };
    let Some((deployment, action)) = rest.split_once('/') else {
        return false;
    };
    !deployment.is_empty() && matches!(action, "chat/completions" | "completions" | "embeddings")
}

fn anthropic_call(path: &str) -> bool {
    path.ends_with("/v1/messages")
}

/// `.../models/{model}:generateContent` or `:streamGenerateContent`
/// (Gemini API and Vertex AI).
fn gemini_model(path: &str) -> Option<&str> {
    let (rest, last) = path.rsplit_once('/')?;
    let (model, action) = last.split_once(':')?;
    (rest.ends_with("/models")
        && !model.is_empty()
        && matches!(action, "generateContent" | "streamGenerateContent"))
    .then_some(model)
}

fn gemini_call(path: &str) -> bool {
    gemini_model(path).is_some()
}

fn gemini_model_in_path(path: &str) -> Option<String> {
    gemini_model(path).map(str::to_owned)
}

/// `/model/{modelId}/(converse|converse-stream|invoke|invoke-with-response-stream)`
/// (Bedrock runtime): the model id, and the action.
fn bedrock_parts(path: &str) -> Option<(&str, &str)> {
    let (model, action) = path.strip_prefix("/model/")?.split_once('/')?;
    (!model.is_empty()
        && matches!(
            action,
            "converse" | "converse-stream" | "invoke" | "invoke-with-response-stream"
        ))
    .then_some((model, action))
}

fn bedrock_call(path: &str) -> bool {
    bedrock_parts(path).is_some()
}

/// The model id, percent-decoded (`anthropic.claude-3-haiku-20240307-v1%3A0`
/// is `...-v1:0`; an ARN's slashes are encoded too).
fn bedrock_model(path: &str) -> Option<String> {
    let (model, _) = bedrock_parts(path)?;
    let bytes = model.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn bedrock_framed(path: &str) -> bool {
    bedrock_parts(path).is_some_and(|(_, action)| action.ends_with("-stream"))
}

fn cohere_call(path: &str) -> bool {
    path.ends_with("/v2/chat")
}

/// Cohere's billed tokens: what OpenTelemetry asks for where a provider
/// reports both those used and those billed.
const COHERE_USAGE: &[(&str, &str)] = &[("input_tokens", "input"), ("output_tokens", "output")];

fn ollama_call(path: &str) -> bool {
    matches!(path, "/api/chat" | "/api/generate" | "/api/embed")
}

pub static PROVIDERS: &[Provider] = &[
    Provider {
        name: "cohere",
        is_call: cohere_call,
        model_in_path: no_model_in_path,
        framed: never,
        // Its answers name no model: the one asked for stands
        // (`requested_model`).
        model: &[],
        // `{"id": ..., "message": "..."}`: a sentence, not a type.
        error_type: &[],
        cached_in_input: false,
        durations: &[],
        reasoning_in_output: false,
        // A JSON answer's `usage`, a stream's `message-end` event.
        usage: &[
            UsageObject {
                at: "usage.billed_units",
                fields: COHERE_USAGE,
            },
            UsageObject {
                at: "delta.usage.billed_units",
                fields: COHERE_USAGE,
            },
        ],
    },
    Provider {
        name: "openai",
        is_call: openai_call,
        model_in_path: no_model_in_path,
        framed: never,
        model: &["model", "response.model"],
        // `{"error": {"type": "insufficient_quota", "code": ...}}`; some
        // copies give only a code.
        error_type: &["error.type", "error.code"],
        cached_in_input: true,
        durations: &[],
        reasoning_in_output: true,
        usage: &[
            UsageObject {
                at: "usage",
                fields: &[
                    ("prompt_tokens", "input"),
                    ("completion_tokens", "output"),
                    ("prompt_tokens_details.cached_tokens", "cache_read"),
                    ("completion_tokens_details.reasoning_tokens", "reasoning"),
                    // The Responses API.
                    ("input_tokens", "input"),
                    ("output_tokens", "output"),
                    ("input_tokens_details.cached_tokens", "cache_read"),
                    ("output_tokens_details.reasoning_tokens", "reasoning"),
                ],
            },
            // The Responses API's stream: `response.completed`.
            UsageObject {
                at: "response.usage",
                fields: &[
                    ("input_tokens", "input"),
                    ("output_tokens", "output"),
                    ("input_tokens_details.cached_tokens", "cache_read"),
                    ("output_tokens_details.reasoning_tokens", "reasoning"),
                ],
            },
        ],
    },
    Provider {
        name: "anthropic",
        is_call: anthropic_call,
        model_in_path: no_model_in_path,
        framed: never,
        model: &["model", "message.model"],
        // `{"type": "error", "error": {"type": "overloaded_error", ...}}`
        error_type: &["error.type"],
        cached_in_input: false,
        durations: &[],
        reasoning_in_output: false,
        usage: &[
            // A JSON answer's `usage`, a stream's `message_delta` (output so
            // far) after its `message_start`'s `message.usage`.
            UsageObject {
                at: "usage",
                fields: ANTHROPIC_USAGE,
            },
            UsageObject {
                at: "message.usage",
                fields: ANTHROPIC_USAGE,
            },
        ],
    },
    Provider {
        name: "gcp.gemini",
        is_call: gemini_call,
        model_in_path: gemini_model_in_path,
        framed: never,
        model: &["modelVersion"],
        // `{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", ...}}`
        error_type: &["error.status"],
        cached_in_input: true,
        durations: &[],
        // Thinking is reported apart, and billed as output.
        reasoning_in_output: false,
        usage: &[UsageObject {
            at: "usageMetadata",
            fields: &[
                ("promptTokenCount", "input"),
                ("candidatesTokenCount", "output"),
                ("cachedContentTokenCount", "cache_read"),
                ("thoughtsTokenCount", "reasoning"),
            ],
        }],
    },
    Provider {
        name: "ollama",
        is_call: ollama_call,
        model_in_path: no_model_in_path,
        framed: never,
        model: &["model"],
        // `{"error": "model 'x' not found"}`: a sentence, not a type.
        error_type: &[],
        cached_in_input: false,
        // Nanoseconds, in the answer or a stream's last line.
        durations: &[
            ("total_duration", "total"),
            ("load_duration", "load"),
            ("prompt_eval_duration", "prompt_eval"),
            ("eval_duration", "eval"),
        ],
        reasoning_in_output: false,
        // The answer, or a stream's last line (`"done": true`).
        usage: &[UsageObject {
            at: "",
            fields: &[("prompt_eval_count", "input"), ("eval_count", "output")],
        }],
    },
    Provider {
        name: "aws.bedrock",
        is_call: bedrock_call,
        model_in_path: bedrock_model,
        framed: bedrock_framed,
        // The path names the model id the call asked for.
        model: &[],
        // `{"message": "..."}`: the type is in the `x-amzn-errortype`
        // header (`Exchange::error_type`).
        error_type: &["__type"],
        cached_in_input: false,
        durations: &[],
        reasoning_in_output: false,
        usage: &[
            // Converse's answer, converse-stream's `metadata` event, and
            // `invoke` of an Anthropic model.
            UsageObject {
                at: "usage",
                fields: BEDROCK_USAGE,
            },
            UsageObject {
                at: "message.usage",
                fields: BEDROCK_USAGE,
            },
            // The last chunk of invoke-with-response-stream, any model.
            UsageObject {
                at: "amazon-bedrock-invocationMetrics",
                fields: &[
                    ("inputTokenCount", "input"),
                    ("outputTokenCount", "output"),
                    ("cacheReadInputTokenCount", "cache_read"),
                    ("cacheWriteInputTokenCount", "cache_creation"),
                ],
            },
        ],
    },
];

/// Bedrock's Converse usage (camelCase), and the Anthropic models' own
/// usage that `invoke` passes through.
const BEDROCK_USAGE: &[(&str, &str)] = &[
    ("inputTokens", "input"),
    ("outputTokens", "output"),
    ("cacheReadInputTokens", "cache_read"),
    ("cacheWriteInputTokens", "cache_creation"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_input_tokens", "cache_read"),
    ("cache_creation_input_tokens", "cache_creation"),
];

const ANTHROPIC_USAGE: &[(&str, &str)] = &[
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_input_tokens", "cache_read"),
    ("cache_creation_input_tokens", "cache_creation"),
];

/// The provider whose API `path` belongs to.
pub fn provider_of(path: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| (p.is_call)(path))
}

/// The value at a dotted `path` below `value` (`""`: `value` itself).
pub fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.')
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(path: &str) -> Option<&'static str> {
        provider_of(path).map(|p| p.name)
    }

    #[test]
    fn calls_are_told_by_their_path() {
        assert_eq!(name("/v1/chat/completions"), Some("openai"));
        assert_eq!(name("/openai/v1/chat/completions"), Some("openai"), "Groq");
        assert_eq!(
            name("/api/v1/chat/completions"),
            Some("openai"),
            "OpenRouter"
        );
        assert_eq!(
            name("/openai/deployments/gpt4o/chat/completions"),
            Some("openai")
        );
        assert_eq!(name("/openai/deployments//chat/completions"), None);
        assert_eq!(name("/v1/messages"), Some("anthropic"));
        assert_eq!(
            name("/v1beta/models/gemini-2.0-flash:generateContent"),
            Some("gcp.gemini")
        );
        assert_eq!(
            name(
                "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent"
            ),
            Some("gcp.gemini")
        );
        assert_eq!(name("/v1beta/models/gemini:countTokens"), None);
        assert_eq!(name("/v1beta/models/:generateContent"), None);
        assert_eq!(name("/api/chat"), Some("ollama"));
        assert_eq!(
            name("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Some("aws.bedrock")
        );
        assert_eq!(name("/model//converse"), None);
        assert_eq!(name("/model/m/list"), None);
        assert_eq!(name("/api/chat/x"), None);
        assert_eq!(name("/v1/models"), None);
    }

    #[test]
    fn gemini_names_its_model_in_the_path() {
        assert_eq!(
            gemini_model("/v1beta/models/gemini-2.0-flash:streamGenerateContent"),
            Some("gemini-2.0-flash")
        );
        assert_eq!(gemini_model("/v1beta/tunedModels/x:generateContent"), None);
    }

    #[test]
    fn bedrock_names_its_model_in_the_path_percent_encoded() {
        assert_eq!(
            bedrock_model("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke").as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        assert_eq!(
            bedrock_model(
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.m/converse"
            )
            .as_deref(),
            Some("arn:aws:bedrock:us-east-1:1:inference-profile/us.m")
        );
        assert_eq!(
            bedrock_model("/model/a%zz%4/converse").as_deref(),
            Some("a%zz%4")
        );
        assert!(bedrock_framed("/model/m/converse-stream"));
        assert!(!bedrock_framed("/model/m/converse"));
    }
}
