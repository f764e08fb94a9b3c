use super::*;

fn body(text: &str, event_stream: bool) -> BodyBytes {
    let mut body = BodyBytes::whole(text.as_bytes());
    body.event_stream = event_stream;
    body
}

/// By token type.
fn tokens(call: &ModelCall) -> Vec<(&str, u64)> {
    let mut tokens: Vec<(&str, u64)> = call.tokens.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    tokens.sort_unstable();
    tokens
}

#[test]
fn openai_json() {
    let text = r#"{"id":"c1","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    let call = read("/v1/chat/completions", text, false);
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
    let call = read("/v1/messages", text, true);
    assert_eq!(call.model, "claude-sonnet-4");
    assert_eq!(
        tokens(&call),
        [("cache_read", 7), ("input", 25), ("output", 15)]
    );
}

#[test]
fn openai_stream_with_usage_in_its_last_chunk() {
    let text = "data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
        data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\n\n\
        data: [DONE]\n\n";
    let call = read("/v1/chat/completions", text, true);
    assert_eq!(tokens(&call), [("input", 5), ("output", 9)]);
}

#[test]
fn responses_without_usage_say_why() {
    let unread = |text: &str| read("/v1/messages", text, false).unread;
    assert_eq!(unread(r#"{"model":"m"}"#), Some(RuleError::MissingField));
    assert_eq!(unread("{\"usage\":"), Some(RuleError::MalformedJson));
    let text = r#"{"model":"m\u0000\nx","usage":{"input_tokens":"many"}}"#;
    let call = read("/v1/messages", text, false);
    assert_eq!(call.unread, Some(RuleError::NotNumeric));
    assert_eq!(call.model, "mx", "no control characters in a label");
}

#[test]
fn unsuccessful_answers_name_their_error_type() {
    let failed = |path: &str, status: u16, text: &str| {
        let call = read_call(
            path,
            Some(status),
            &body(text, false),
            &LlmConfig::default(),
        );
        assert!(call.tokens.is_empty() && call.unread.is_none(), "{call:?}");
        (call.provider, call.model, call.error_type.unwrap())
    };
    let openai = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    assert_eq!(
        failed("/v1/chat/completions", 429, openai),
        ("openai", "unknown".into(), "insufficient_quota".into())
    );
    let anthropic =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(failed("/v1/messages", 529, anthropic).2, "overloaded_error");
    let gemini = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    assert_eq!(
        failed(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            429,
            gemini
        ),
        (
            "gcp.gemini",
            "gemini-2.0-flash".into(),
            "RESOURCE_EXHAUSTED".into()
        )
    );
    let ollama = r#"{"error":"model 'llama9' not found, try pulling it first"}"#;
    assert_eq!(failed("/api/chat", 404, ollama).2, "unknown");
    assert_eq!(
        failed("/v1/messages", 502, "<html>Bad gateway</html>").2,
        "unknown"
    );
    let odd = r#"{"error":{"type":"rate limit, try again in 20s"}}"#;
    assert_eq!(failed("/v1/chat/completions", 429, odd).2, "unknown");
    assert_eq!(
        failed("/gateway/chat", 503, r#"{"error":{"code":"busy"}}"#).2,
        "busy"
    );
}

fn read(path: &str, text: &str, event_stream: bool) -> ModelCall {
    read_call(
        path,
        Some(200),
        &body(text, event_stream),
        &LlmConfig::default(),
    )
}

#[test]
fn openai_details_are_cache_reads_and_reasoning() {
    let text = r#"{"model":"o3-mini","usage":{"prompt_tokens":100,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":25}}}"#;
    let call = read("/v1/chat/completions", text, false);
    assert_eq!(
        tokens(&call),
        [
            ("cache_read", 64),
            ("input", 100),
            ("output", 40),
            ("reasoning", 25)
        ]
    );
    // The Responses API's stream ends with `response.completed`.
    let text = "event: response.created\n\
        data: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":null}}\n\n\
        event: response.completed\n\
        data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":8,\"output_tokens\":3,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens_details\":{\"reasoning_tokens\":0}}}}\n\n";
    let call = read("/v1/responses", text, true);
    assert_eq!(call.model, "gpt-4.1");
    assert_eq!(tokens(&call), [("input", 8), ("output", 3)]);
}

#[test]
fn gemini_json_sse_and_streamed_array() {
    let usage = r#""usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":30,"cachedContentTokenCount":4,"thoughtsTokenCount":7,"totalTokenCount":49}"#;
    let json = format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"hi"}}]}}}}],{usage},"modelVersion":"gemini-2.0-flash-001"}}"#
    );
    let path = "/v1beta/models/gemini-2.0-flash:generateContent";
    let call = read(path, &json, false);
    assert_eq!(call.model, "gemini-2.0-flash-001");
    let expected = [
        ("cache_read", 4),
        ("input", 12),
        ("output", 30),
        ("reasoning", 7),
    ];
    assert_eq!(tokens(&call), expected);
    // Streamed: usage so far in every chunk; the last one counts.
    let early =
        r#"{"candidates":[],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2}}"#;
    let path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent";
    let sse = format!("data: {early}\r\n\r\ndata: {json}\r\n\r\n").replace("\r\n", "\n");
    assert_eq!(tokens(&read(path, &sse, true)), expected);
    let array = format!("[{early}\n,\r\n{json}]");
    assert_eq!(tokens(&read(path, &array, false)), expected);
    // No model in the answer: the path's.
    let bare = format!("{{{usage}}}");
    assert_eq!(read(path, &bare, false).model, "gemini-2.0-flash");
}

#[test]
fn ollama_json_and_its_lines() {
    let last = r#"{"model":"llama3.2","done":true,"total_duration":5043500667,"prompt_eval_count":26,"eval_count":290}"#;
    let call = read("/api/generate", last, false);
    assert_eq!(call.model, "llama3.2");
    assert_eq!(tokens(&call), [("input", 26), ("output", 290)]);
    let lines = format!(
        "{{\"model\":\"llama3.2\",\"message\":{{\"content\":\"a\"}},\"done\":false}}\n{last}\n"
    );
    assert_eq!(
        tokens(&read("/api/chat", &lines, false)),
        [("input", 26), ("output", 290)]
    );
    // A stream cut before its last line has no usage.
    let mut cut = body(&lines[..lines.len() - 20], false);
    cut.complete = false;
    let call = read_call("/api/chat", Some(200), &cut, &LlmConfig::default());
    assert_eq!(call.unread, Some(RuleError::Truncated));
}

#[test]
fn bedrock_converse_and_its_binary_streams() {
    let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    let json = r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42,"cacheReadInputTokens":8},"metrics":{"latencyMs":321}}"#;
    let call = read(path, json, false);
    assert_eq!(call.provider, "aws.bedrock");
    assert_eq!(call.model, "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(
        tokens(&call),
        [("cache_read", 8), ("input", 30), ("output", 12)]
    );
    assert!(!call.streamed);

    let event = |kind: &str, payload: &str| {
        eventstream::frame(
            &[(":event-type", kind), (":message-type", "event")],
            payload.as_bytes(),
        )
    };
    let stream = [
        event("messageStart", r#"{"role":"assistant"}"#),
        event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#),
        event("messageStop", r#"{"stopReason":"end_turn"}"#),
        event("metadata", r#"{"usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42},"metrics":{"latencyMs":321}}"#),
    ]
    .concat();
    let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream";
    let call = read_call(
        path,
        Some(200),
        &BodyBytes::whole(&stream),
        &LlmConfig::default(),
    );
    assert_eq!(call.unread, None);
    assert!(call.streamed);
    assert_eq!(tokens(&call), [("input", 30), ("output", 12)]);
    // Cut before its metadata event.
    let mut cut = BodyBytes::whole(&stream[..stream.len() - 10]);
    cut.complete = false;
    let call = read_call(path, Some(200), &cut, &LlmConfig::default());
    assert_eq!(call.unread, Some(RuleError::Truncated));

    // invoke-with-response-stream: each payload wraps the model's own
    // chunk; the last carries Bedrock's invocation metrics.
    use base64::Engine as _;
    let chunk = |json: &str| {
        let bytes = base64::engine::general_purpose::STANDARD.encode(json);
        event("chunk", &format!(r#"{{"bytes":"{bytes}"}}"#))
    };
    let stream = [
        chunk(r#"{"type":"message_start","message":{"model":"claude-3-haiku","usage":{"input_tokens":30,"output_tokens":1}}}"#),
        chunk(r#"{"type":"message_delta","usage":{"output_tokens":12}}"#),
        chunk(r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":30,"outputTokenCount":12,"invocationLatency":400}}"#),
    ]
    .concat();
    let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream";
    let call = read_call(
        path,
        Some(200),
        &BodyBytes::whole(&stream),
        &LlmConfig::default(),
    );
    assert_eq!(tokens(&call), [("input", 30), ("output", 12)]);
    let broken = [chunk("{}"), event("chunk", r#"{"bytes":"%%%"}"#)].concat();
    let call = read_call(
        path,
        Some(200),
        &BodyBytes::whole(&broken),
        &LlmConfig::default(),
    );
    assert_eq!(call.unread, Some(RuleError::MalformedJson));
}

#[test]
fn paths_no_provider_knows_use_the_configured_fields() {
    let text = r#"{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4,"cache_read_input_tokens":2}}"#;
    let call = read("/gateway/chat", text, false);
    assert_eq!(
        tokens(&call),
        [("cache_read", 2), ("input", 3), ("output", 4)]
    );
}

#[test]
fn operations_and_requested_models_take_the_conventions_names() {
    let cases = [
        ("/v1/chat/completions", "chat", None),
        ("/v1/completions", "text_completion", None),
        ("/v1/embeddings", "embeddings", None),
        ("/api/generate", "text_completion", None),
        ("/api/embed", "embeddings", None),
        (
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            "generate_content",
            Some("gemini-2.0-flash"),
        ),
        ("/v1/messages", "chat", None),
        (
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            "chat",
            Some("anthropic.claude-3-haiku-20240307-v1:0"),
        ),
    ];
    for (path, operation, model) in cases {
        assert_eq!(operation_of(path), operation, "{path}");
        assert_eq!(
            requested_model(path, None, 4096).as_deref(),
            model,
            "{path}"
        );
    }
    // Else the request body's model, where it was captured.
    let asked = BodyBytes::whole(br#"{"model": "command-a-03-2025", "messages": []}"#);
    let from_body = requested_model("/v2/chat", Some(&asked), 4096);
    assert_eq!(from_body.as_deref(), Some("command-a-03-2025"));
    let mut cut = BodyBytes::whole(br#"{"messages": [{"role": "user", "content": "lo"#);
    cut.complete = false;
    assert_eq!(
        requested_model("/v1/chat/completions", Some(&cut), 4096),
        None
    );
}

#[test]
fn cohere_counts_billed_tokens_and_names_no_model() {
    let json = r#"{"id":"c1","finish_reason":"COMPLETE","message":{"role":"assistant","content":[]},"usage":{"billed_units":{"input_tokens":9,"output_tokens":41},"tokens":{"input_tokens":129,"output_tokens":41}}}"#;
    let call = read("/v2/chat", json, false);
    assert_eq!(
        (call.provider, call.model.as_str()),
        ("cohere", UNKNOWN_MODEL)
    );
    assert_eq!(tokens(&call), [("input", 9), ("output", 41)]);
    let stream = "event: message-start\n\
        data: {\"id\":\"c1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\"}}}\n\n\
        event: content-delta\n\
        data: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Hi\"}}}}\n\n\
        event: message-end\n\
        data: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\",\"usage\":{\"billed_units\":{\"input_tokens\":9,\"output_tokens\":3},\"tokens\":{\"input_tokens\":129,\"output_tokens\":3}}}}\n\n";
    let call = read("/v2/chat", stream, true);
    assert!(call.streamed);
    assert_eq!(tokens(&call), [("input", 9), ("output", 3)]);
}

#[test]
fn ollama_reports_the_time_it_spent_by_phase() {
    let stream = concat!(
        r#"{"model":"llama3.2","message":{"content":"Hi"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","done":true,"total_duration":61000000,"load_duration":2000000,"prompt_eval_count":15,"prompt_eval_duration":9000000,"eval_count":31,"eval_duration":50000000}"#,
        "\n"
    );
    let call = read("/api/chat", stream, false);
    assert_eq!(
        call.durations,
        [
            ("total", 0.061),
            ("load", 0.002),
            ("prompt_eval", 0.009),
            ("eval", 0.05)
        ]
    );
    let openai =
        r#"{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2},"total_duration":5}"#;
    assert!(
        read("/v1/chat/completions", openai, false)
            .durations
            .is_empty()
    );
}
