//! Arbitrary bodies through the route rules and the model-call reader:
//! de-chunking, content codings (gzip, deflate, br, zstd), event streams, JSON, field lookups and token counting
//! never panic, and what they keep stays within the limit.
use std::sync::LazyLock;

use crate::{
    config::llm::LlmConfig,
    enrich::{
        llm,
        rules::{RuleSet, Semantic, body::documents, default_rules, eval::evaluate},
    },
    protocols::http1::{
        exchange::{BodyBytes, Exchange},
        head::{Encoding, Method, Version},
    },
};

static LLM: LazyLock<LlmConfig> = LazyLock::new(LlmConfig::default);

/// A call path of each built-in provider, and one no provider knows.
const MODEL_PATHS: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
    "/api/chat",
    "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
    "/model/m/converse",
    "/v2/chat",
    "/gateway/chat",
];

pub fn run(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut body = BodyBytes::whole(bytes);
    body.chunked = mode & 1 != 0;
    if mode & 2 != 0 {
        const CODINGS: [Encoding; 5] = [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
            Encoding::Unsupported,
        ];
        body.encoding = CODINGS[usize::from(mode >> 5) % CODINGS.len()];
    }
    body.event_stream = mode & 4 != 0;
    body.complete = mode & 8 != 0;
    let limit = 4096;
    let (docs, _) = documents(&body, limit);
    // Each value takes two bytes or more of the decoded body, which is the
    // body itself or at most `limit` bytes decoded from it.
    assert!(docs.len() <= bytes.len().max(limit) / 2 + 1);
    let model_path = MODEL_PATHS[usize::from(mode >> 5) % MODEL_PATHS.len()];
    let status = if mode & 16 != 0 { 429 } else { 200 };
    let call = llm::read_call(model_path, Some(status), &body, &LLM);
    assert!(call.model.len() <= 100 && call.tokens.iter().all(|(_, n)| *n > 0));
    assert!(
        call.error_type
            .is_none_or(|t| !t.is_empty() && t.len() <= 64)
    );
    let rules = RuleSet {
        rules: default_rules(),
        semantic: Semantic::default(),
    };
    let path = if mode & 16 != 0 {
        "/agents/a/invoke"
    } else {
        "/auth/login"
    };
    let method = Method::parse("POST");
    let rule = rules
        .matching("svc", &method, path)
        .expect("a default rule");
    let exchange = Exchange {
        version: Version::Http11,
        tls: false,
        error_type: None,
        method,
        path: path.to_owned(),
        query_key: None,
        status: Some(if mode & 32 != 0 { 200 } else { 401 }),
        auth: Default::default(),
        start_ns: 0,
        first_byte_ns: 1,
        end_ns: 2,
        headers: Vec::new(),
        request_body: Some(body.clone()),
        response_body: Some(body),
        rule: None,
    };
    let seen = evaluate(rule, &rules.semantic, &exchange);
    assert!(seen.subject.chars().count() <= 64);
}
