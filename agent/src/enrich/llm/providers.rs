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
    pub model_in_path: fn(&str) -> Option<&str>,
    /// Answer fields naming the model, first found wins.
    pub model: &'static [&'static str],
    pub usage: &'static [UsageObject],
    /// Its `input` count includes the `cache_read` tokens.
    pub cached_in_input: bool,
    /// Its `output` count includes the `reasoning` tokens.
    pub reasoning_in_output: bool,
    /// Fields of an unsuccessful answer naming the error's type, first
    /// found wins.
    pub error_type: &'static [&'static str],
}

const fn no_model_in_path(_: &str) -> Option<&str> {
    None
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

fn ollama_call(path: &str) -> bool {
    matches!(path, "/api/chat" | "/api/generate" | "/api/embed")
}

pub static PROVIDERS: &[Provider] = &[
    Provider {
        name: "openai",
        is_call: openai_call,
        model_in_path: no_model_in_path,
        model: &["model", "response.model"],
        // `{"error": {"type": "insufficient_quota", "code": ...}}`; some
        // copies give only a code.
        error_type: &["error.type", "error.code"],
        cached_in_input: true,
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
        model: &["model", "message.model"],
        // `{"type": "error", "error": {"type": "overloaded_error", ...}}`
        error_type: &["error.type"],
        cached_in_input: false,
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
        model_in_path: gemini_model,
        model: &["modelVersion"],
        // `{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", ...}}`
        error_type: &["error.status"],
        cached_in_input: true,
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
        model: &["model"],
        // `{"error": "model 'x' not found"}`: a sentence, not a type.
        error_type: &[],
        cached_in_input: false,
        reasoning_in_output: false,
        // The answer, or a stream's last line (`"done": true`).
        usage: &[UsageObject {
            at: "",
            fields: &[("prompt_eval_count", "input"), ("eval_count", "output")],
        }],
    },
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
}
