//! Rules applied to exchanges as the parser hands them over.
use super::*;
use crate::{
    enrich::{
        endpoint::Template,
        rules::{FieldPath, default_rules, default_tokens},
    },
    protocols::http1::{
        auth::Auth,
        head::{Method, Version},
    },
};

fn exchange(path: &str, status: u16) -> Exchange {
    Exchange {
        method: Method::parse("POST"),
        version: Version::Http11,
        tls: false,
        error_type: None,
        path: path.to_owned(),
        query_key: None,
        status: Some(status),
        auth: Auth::default(),
        start_ns: 1_000_000_000,
        first_byte_ns: 1_100_000_000,
        end_ns: 1_250_000_000,
        headers: Vec::new(),
        request_body: None,
        response_body: None,
        rule: None,
    }
}

fn body(text: &str) -> Option<BodyBytes> {
    Some(BodyBytes::whole(text.as_bytes()))
}

fn rule_for(path: &str) -> Rule {
    let rules = crate::enrich::rules::RuleSet {
        rules: default_rules(),
        semantic: Semantic::default(),
    };
    rules
        .matching("svc", &Method::parse("POST"), path)
        .expect("a default rule matches")
        .clone()
}

#[test]
fn agent_runs_report_their_tokens_and_duration() {
    let mut x = exchange("/api/v1/agents/planner/invoke", 200);
    x.response_body = body(
        r#"{"output": "done", "usage": {"prompt_tokens": 120, "completion_tokens": 30,
            "total_tokens": 150, "cached_tokens": 7, "details": {"x_tokens": 1}}}"#,
    );
    let seen = evaluate(&rule_for(&x.path), &Semantic::default(), &x);
    assert_eq!(seen.subject, "planner");
    assert!(seen.success);
    assert!((seen.seconds - 0.25).abs() < 1e-9);
    let mut tokens = seen.tokens.clone();
    tokens.sort();
    assert_eq!(
        tokens,
        [
            ("cached".into(), 7),
            ("input".into(), 120),
            ("output".into(), 30)
        ]
    );
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
}

#[test]
fn anthropic_style_streams_take_input_first_and_output_last() {
    let mut x = exchange("/agents/coder/invoke", 200);
    let mut stream = body(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":40,\"output_tokens\":1}}}\n\n\
         data: {\"type\":\"content_block_delta\"}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":77}}\n\n",
    );
    stream.as_mut().unwrap().event_stream = true;
    x.response_body = stream;
    let seen = evaluate(&rule_for(&x.path), &Semantic::default(), &x);
    let mut tokens = seen.tokens.clone();
    tokens.sort();
    assert_eq!(tokens, [("input".into(), 40), ("output".into(), 77)]);
}

#[test]
fn failed_logins_get_a_reason_from_the_body_or_the_status() {
    let rule = rule_for("/auth/google/login");
    let mut semantic = Semantic {
        failure_reason: Some(LabelSource::parse("response:detail").unwrap()),
        failure_reasons: vec!["account_locked".into()],
        ..Semantic::default()
    };
    let mut x = exchange("/auth/google/login", 401);
    x.response_body = body(r#"{"detail": "account_locked"}"#);
    let seen = evaluate(&rule, &semantic, &x);
    assert_eq!(seen.subject, "google");
    assert!(!seen.success);
    assert_eq!(seen.failure_reason.as_deref(), Some("account_locked"));
    x.response_body = body(r#"{"detail": "secret-user-name-not-allowlisted"}"#);
    let seen = evaluate(&rule, &semantic, &x);
    assert_eq!(seen.failure_reason.as_deref(), Some("invalid_credentials"));
    x.status = Some(418);
    assert_eq!(
        evaluate(&rule, &semantic, &x).failure_reason.as_deref(),
        Some("other")
    );
    semantic.failure_reason = None;
    assert_eq!(
        evaluate(&rule, &semantic, &exchange("/auth/google/login", 200)).failure_reason,
        None
    );
}

#[test]
fn provider_from_the_form_or_its_default() {
    let rule = rule_for("/auth/login");
    let mut x = exchange("/auth/login", 200);
    x.request_body = body(r#"{"username": "alice", "password": "pw", "provider": "github"}"#);
    assert_eq!(evaluate(&rule, &Semantic::default(), &x).subject, "github");
    x.request_body = body(r#"{"username": "alice", "password": "pw"}"#);
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(seen.subject, "local");
    assert!(seen.errors.is_empty(), "a default covers a missing field");
    x.request_body = body("{truncated");
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(
        (seen.subject.as_str(), seen.errors.as_slice()),
        ("local", &[RuleError::MalformedJson][..])
    );
}

#[test]
fn bad_bodies_are_reported_and_the_rest_still_counts() {
    let rule = rule_for("/agents/planner/invoke");
    let mut x = exchange("/agents/planner/invoke", 200);
    x.response_body = body("{\"usage\": ");
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(seen.subject, "planner");
    assert!(seen.tokens.is_empty());
    assert_eq!(seen.errors, [RuleError::MalformedJson]);
    x.response_body = body(r#"{"usage": {"input_tokens": "many", "output_tokens": 3}}"#);
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(seen.tokens, [("output".to_owned(), 3)]);
    assert_eq!(seen.errors, [RuleError::NotNumeric]);
    x.response_body = None;
    assert_eq!(
        evaluate(&rule, &Semantic::default(), &x).errors,
        [RuleError::NotCaptured]
    );
    x.response_body = body(r#"{"output": "no usage"}"#);
    assert_eq!(
        evaluate(&rule, &Semantic::default(), &x).errors,
        [RuleError::MissingField]
    );
    x.status = Some(404);
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert!(
        !seen.success && seen.errors.is_empty(),
        "failed runs have no usage to read"
    );
}

#[test]
fn other_layouts_use_headers_fields_and_success_overrides() {
    let rule = Rule {
        name: "sso".into(),
        family: Family::Login,
        method: None,
        route: Template::parse("/v2/session").unwrap(),
        services: Vec::new(),
        subject: LabelSource::parse("header:x-idp").unwrap(),
        success: Some(LabelSource::parse("response:ok").unwrap()),
        tokens: None,
    };
    let mut x = exchange("/v2/session", 200);
    x.headers = vec![("x-idp".into(), "okta\u{7}".into())];
    x.response_body = body(r#"{"ok": false}"#);
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(seen.subject, "okta", "control characters dropped");
    assert!(!seen.success, "the body overrides the 200");
    assert_eq!(seen.failure_reason.as_deref(), Some("other"));
    let tool = Rule {
        family: Family::Agent,
        subject: LabelSource::parse("request:agent.name").unwrap(),
        tokens: Some(Tokens::Fields(vec![(
            "reasoning".into(),
            Side::Response,
            FieldPath::parse("meta.reasoning").unwrap(),
        )])),
        success: None,
        ..rule
    };
    x.request_body = body(r#"{"agent": {"name": "triage"}}"#);
    x.response_body = body(r#"{"meta": {"reasoning": 12.0}}"#);
    let seen = evaluate(&tool, &Semantic::default(), &x);
    assert_eq!(seen.subject, "triage");
    assert_eq!(seen.tokens, [("reasoning".to_owned(), 12)]);
    assert!(matches!(default_tokens(), Tokens::Objects(_)));
}

#[test]
fn a_message_without_a_body_is_no_capture_error() {
    // The token-refresh rule reads `provider` from the request body, with
    // `local` as its fallback: a refresh that sends no body uses it.
    let rule = rule_for("/auth/refresh");
    let mut x = exchange("/auth/refresh", 200);
    x.request_body = body("");
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert_eq!(
        (seen.subject.as_str(), seen.errors.as_slice()),
        ("local", &[][..])
    );
    // An agent run answered 204: no usage to read, and nothing lost.
    let rule = rule_for("/agents/planner/invoke");
    let mut x = exchange("/agents/planner/invoke", 204);
    x.response_body = body("");
    let seen = evaluate(&rule, &Semantic::default(), &x);
    assert!(seen.success && seen.tokens.is_empty());
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    // A body that was there but not captured still is one.
    x.response_body = None;
    assert_eq!(
        evaluate(&rule, &Semantic::default(), &x).errors,
        [RuleError::NotCaptured]
    );
}
