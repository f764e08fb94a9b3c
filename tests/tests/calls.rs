//! HTTP calls a service makes, to model providers above all: the agent
//! service (FastAPI, httpx) calls a fake provider
//! (`fixtures/model_provider.py`) in the OpenAI, Anthropic, Gemini,
//! Ollama, Bedrock and Cohere formats, as JSON and as streams (server-sent
//! events, Ollama's newline-delimited JSON, AWS's event-stream framing), over HTTPS (OpenSSL uprobes) and over plain TCP
//! (syscalls), with known usage (`[http] tls = true`); in HTTP/1.1 from a
//! uvicorn provider, and in HTTP/2 from a hypercorn one (ALPN `h2` over
//! TLS, prior knowledge over TCP). Servers that copy the OpenAI API
//! (vLLM's path, Groq's) are told apart by host. Root required: `cargo
//! xtask test`.
use loupe_tests::{
    Agent, Fixture, Scrape,
    agent_service::{REFUSED_PROMPT, agent_service_with, invoke_agent, model_provider},
    fixture, free_port, scratch_file, series, served, targets,
    tls::Certificate,
    watch_port,
};

/// 5 words: 15 input tokens at the fake provider's 3 per word.
const PROMPT: &str = "summarise the quarterly numbers please";
const INPUT_TOKENS: u32 = 15;

/// `(agent, stream, invocations)`: the planner calls gpt-4o-mini through
/// the OpenAI API (17 output tokens each), the researcher
/// claude-sonnet-4 through the Anthropic API (23 each), the coder
/// gemini-2.0-flash through the Gemini API (29 each, and 4 cached and 7
/// reasoning tokens), the writer llama3.2 through Ollama's (31 each), the
/// analyst a Claude model through Bedrock's Converse API (37 each; streamed
/// in AWS's binary event-stream framing).
const PLAN: &[(&str, bool, u32)] = &[
    ("planner", false, 4),
    ("planner", true, 3),
    ("researcher", false, 2),
    ("researcher", true, 5),
    ("coder", false, 3),
    ("coder", true, 2),
    ("writer", false, 2),
    ("writer", true, 3),
    ("analyst", false, 2),
    ("analyst", true, 3),
    ("summarizer", false, 2),
    ("summarizer", true, 2),
];
/// `(agent, model, output tokens per call)`.
const MODELS: &[(&str, &str, u32)] = &[
    ("planner", "gpt-4o-mini", 17),
    ("researcher", "claude-sonnet-4", 23),
    ("coder", "gemini-2.0-flash", 29),
    ("writer", "llama3.2", 31),
    ("analyst", "anthropic.claude-3-haiku-20240307-v1:0", 37),
    ("summarizer", "command-a-03-2025", 41),
];
/// The times Ollama's answers report (the fake provider's), by phase.
const OLLAMA_PHASES: &[(&str, f64)] = &[
    ("total", 0.061),
    ("load", 0.002),
    ("prompt_eval", 0.009),
    ("eval", 0.05),
];
/// Gemini's cached and reasoning tokens per call (the fake provider's).
const GEMINI_EXTRA: &[(&str, u32)] = &[("cache_read", 4), ("reasoning", 7)];
/// Prices (dollars per million tokens) for three of the four models;
/// llama3.2 has none.
const PRICES: &str = "[llm.prices]\n\
    \"gpt-4o-mini\" = { input = 0.5, output = 2 }\n\
    \"claude-sonnet-4*\" = { input = 3, output = 15 }\n\
    \"gemini-2.0-flash\" = { input = 0.25, output = 1, cache_read = 0.0625 }\n";
/// `(model, micro-dollars per call)` at those prices: 15 input and 17
/// output tokens; 15 and 23; 11 input and 4 cached of Gemini's 15, and 29
/// output and 7 thinking tokens, which Gemini bills as output.
const COST_PER_CALL: &[(&str, f64)] = &[
    ("gpt-4o-mini", 15.0 * 0.5 + 17.0 * 2.0),
    ("claude-sonnet-4", 15.0 * 3.0 + 23.0 * 15.0),
    (
        "gemini-2.0-flash",
        11.0 * 0.25 + 4.0 * 0.0625 + (29.0 + 7.0) * 1.0,
    ),
];
/// `(agent, refused calls, provider, model, status, error type)`: the
/// error answers name no model, but the path (Gemini, Bedrock) or the
/// request body (the others) names the one asked for.
const REFUSALS: &[(&str, u32, &str, &str, &str, &str)] = &[
    (
        "planner",
        2,
        "openai",
        "gpt-4o-mini",
        "429",
        "insufficient_quota",
    ),
    (
        "researcher",
        1,
        "anthropic",
        "claude-sonnet-4",
        "529",
        "overloaded_error",
    ),
    (
        "coder",
        3,
        "gcp.gemini",
        "gemini-2.0-flash",
        "429",
        "RESOURCE_EXHAUSTED",
    ),
    ("writer", 1, "ollama", "llama3.2", "404", "unknown"),
    (
        "analyst",
        2,
        "aws.bedrock",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "429",
        "ThrottlingException",
    ),
    (
        "summarizer",
        1,
        "cohere",
        "command-a-03-2025",
        "429",
        "unknown",
    ),
];

/// Runs the plan against a provider reached over HTTPS or plain HTTP, in
/// HTTP/1.1 or HTTP/2, its JSON answers compressed if `compress` (gzip,
/// br, zstd or deflate by API; Gemini's streams then come as a streamed
/// JSON array, not as events), and checks every call and token count.
fn model_calls(service: &str, tls: bool, http2: bool, compress: bool) {
    let certificate = tls.then(|| Certificate::new(service));
    let provider_port = free_port();
    let command = if http2 {
        let ssl = certificate.as_ref().map_or(String::new(), |c| {
            format!("--certfile {} --keyfile {}", c.cert(), c.key())
        });
        format!(
            "cd {} && python3 -m hypercorn model_provider:app --bind 127.0.0.1:{provider_port} \
             {ssl}",
            fixture("").display()
        )
    } else {
        let ssl = certificate.as_ref().map_or(String::new(), |c| {
            format!("--ssl-certfile {} --ssl-keyfile {}", c.cert(), c.key())
        });
        format!(
            "python3 -m uvicorn model_provider:app --app-dir {} --host 127.0.0.1 \
             --port {provider_port} --log-level warning {ssl}",
            fixture("").display()
        )
    };
    let command = format!("export MODEL_COMPRESS={}; {command}", u8::from(compress));
    let _provider = served(&command, provider_port);
    let scheme = if tls { "https" } else { "http" };
    let port = free_port();
    let _service = agent_service_with(
        port,
        &format!(
            "MODEL_URL={scheme}://127.0.0.1:{provider_port} MODEL_HTTP2={} GEMINI_ARRAY={}",
            u8::from(http2),
            u8::from(compress)
        ),
    );
    let config = scratch_file("calls.toml");
    std::fs::write(
        &config,
        format!("[http]\ntls = true\n[export]\nconventions = [\"loupe\", \"otel\"]\n{PRICES}"),
    )
    .expect("write the config");
    let config = config.display().to_string();
    let agent = watch_port(port, service, &["--config", &config]);
    for (name, stream, count) in PLAN {
        for _ in 0..*count {
            assert_eq!(invoke_agent(port, name, PROMPT, *stream), "200", "{name}");
        }
    }
    // The service fails when its model call does.
    for (name, count, ..) in REFUSALS {
        for _ in 0..*count {
            assert_eq!(
                invoke_agent(port, name, REFUSED_PROMPT, false),
                "502",
                "{name}"
            );
        }
    }
    let refused: u32 = REFUSALS.iter().map(|r| r.1).sum();
    let calls: u32 = PLAN.iter().map(|(_, _, n)| n).sum::<u32>() + refused;
    let host = format!("127.0.0.1:{provider_port}");
    let host = host.as_str();
    agent.wait_for(
        &series(
            "http_client_requests_total",
            &[
                ("service", service),
                ("host", host),
                ("method", "POST"),
                ("status", "200"),
            ],
        ),
        f64::from(calls - refused),
    );
    for (name, count, provider, model, status, error_type) in REFUSALS {
        let labels = [
            ("service", service),
            ("host", host),
            ("provider", *provider),
            ("model", *model),
            ("status", *status),
            ("error_type", *error_type),
        ];
        agent.wait_for(&series("llm_requests_total", &labels), f64::from(*count));
        let (_, model_ok, _) = MODELS.iter().find(|(a, ..)| a == name).unwrap();
        let runs: u32 = PLAN.iter().filter(|p| p.0 == *name).map(|p| p.2).sum();
        let labels = [
            ("service", service),
            ("host", host),
            ("provider", *provider),
            ("model", *model_ok),
            ("status", "200"),
            ("error_type", ""),
        ];
        agent.wait_for(&series("llm_requests_total", &labels), f64::from(runs));
    }
    for (name, model, output) in MODELS {
        let runs = |stream: Option<bool>| -> u32 {
            PLAN.iter()
                .filter(|(a, s, _)| a == name && stream.is_none_or(|want| *s == want))
                .map(|(_, _, n)| n)
                .sum()
        };
        let tokens = |token_type: &str| {
            series(
                "llm_tokens_used_total",
                &[
                    ("service", service),
                    ("host", host),
                    ("model", model),
                    ("token_type", token_type),
                ],
            )
        };
        agent.wait_for(&tokens("input"), f64::from(INPUT_TOKENS * runs(None)));
        agent.wait_for(&tokens("output"), f64::from(output * runs(None)));
        if *model == "gemini-2.0-flash" {
            for (token_type, per_call) in GEMINI_EXTRA {
                agent.wait_for(&tokens(token_type), f64::from(per_call * runs(None)));
            }
        }
        let per_model = [("service", service), ("host", host), ("model", model)];
        agent.wait_for(
            &series("llm_request_duration_seconds_count", &per_model),
            f64::from(runs(None)),
        );
        agent.wait_for(
            &series("llm_time_to_first_token_seconds_count", &per_model),
            f64::from(runs(Some(true))),
        );
        // The tokens are all in: so is what they cost, and what Ollama
        // says it spent.
        let scrape = agent.scrape();
        if *model == "llama3.2" {
            for (phase, seconds) in OLLAMA_PHASES {
                let mut labels = per_model.to_vec();
                labels.push(("phase", phase));
                let count = series("llm_provider_duration_seconds_count", &labels);
                assert_eq!(scrape.get(&count), Some(f64::from(runs(None))), "{count}");
                let sum = series("llm_provider_duration_seconds_sum", &labels);
                let sum = scrape.get(&sum).unwrap_or(0.0);
                assert!(
                    (sum - seconds * f64::from(runs(None))).abs() < 1e-9,
                    "{phase}: {sum}"
                );
            }
        }
        match COST_PER_CALL.iter().find(|(m, _)| m == model) {
            Some((_, micros)) => {
                let cost = scrape
                    .get(&series("llm_cost_dollars_total", &per_model))
                    .unwrap_or(0.0);
                let expected = micros * f64::from(runs(None)) / 1e6;
                assert!(
                    (cost - expected).abs() <= expected * 1e-9,
                    "{model}: {cost} {expected}"
                );
            }
            None => {
                let unpriced = [("service", service), ("model", model)];
                let series = series("loupe_llm_unpriced_calls_total", &unpriced);
                assert_eq!(scrape.get(&series), Some(f64::from(runs(None))), "{model}");
            }
        }
    }
    check_nothing_else(&agent, service, calls);
    check_otel(&agent.scrape(), service, provider_port, http2);
}

/// `(agent, gen_ai_provider_name, gen_ai_operation_name, output tokens
/// added under OpenTelemetry's counting)`: Gemini's thinking tokens count
/// as output. The model asked for (by the path or the request body) is the
/// one answered.
const OTEL: &[(&str, &str, &str, u32)] = &[
    ("planner", "openai", "chat", 0),
    ("researcher", "anthropic", "chat", 0),
    ("coder", "gcp.gemini", "generate_content", 7),
    ("writer", "ollama", "chat", 0),
    ("analyst", "aws.bedrock", "chat", 0),
    ("summarizer", "cohere", "chat", 0),
];

/// The same calls under OpenTelemetry's names (`[export] conventions`).
fn check_otel(scrape: &Scrape, service: &str, provider_port: u16, http2: bool) {
    let sum = |family: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .matching(&format!("{family}{{"))
            .iter()
            .filter(|(key, _)| {
                labels.iter().all(|(k, v)| {
                    let pair = format!("{k}=\"{v}\"");
                    key.contains(&format!("{{{pair}")) || key.contains(&format!(",{pair}"))
                })
            })
            .map(|(_, n)| n)
            .sum()
    };
    let port = provider_port.to_string();
    let answered: u32 = PLAN.iter().map(|p| p.2).sum();
    let version = if http2 { "2" } else { "1.1" };
    let client = [
        ("service", service),
        ("http_request_method", "POST"),
        ("server_address", "127.0.0.1"),
        ("server_port", port.as_str()),
        ("http_response_status_code", "200"),
        ("network_protocol_version", version),
    ];
    let counted = sum("http_client_request_duration_seconds_count", &client);
    assert_eq!(counted, f64::from(answered), "{}", scrape.text);
    for (name, provider, operation, extra) in OTEL {
        let (_, model, output) = MODELS.iter().find(|(a, ..)| a == name).expect("a model");
        let runs = |streamed: Option<bool>| -> f64 {
            PLAN.iter()
                .filter(|(a, s, _)| a == name && streamed.is_none_or(|want| *s == want))
                .map(|(_, _, n)| f64::from(*n))
                .sum()
        };
        let call = [
            ("service", service),
            ("gen_ai_provider_name", *provider),
            ("gen_ai_operation_name", *operation),
            ("gen_ai_request_model", *model),
            ("gen_ai_response_model", *model),
            ("server_address", "127.0.0.1"),
        ];
        let with = |more: (&'static str, &'static str)| {
            let mut labels = call.to_vec();
            labels.push(more);
            labels
        };
        let input = with(("gen_ai_token_type", "input"));
        let output_labels = with(("gen_ai_token_type", "output"));
        let expect = [
            ("gen_ai_client_token_usage_count", input.clone(), runs(None)),
            (
                "gen_ai_client_token_usage_sum",
                input,
                f64::from(INPUT_TOKENS) * runs(None),
            ),
            (
                "gen_ai_client_token_usage_sum",
                output_labels,
                f64::from(output + extra) * runs(None),
            ),
            (
                "gen_ai_client_operation_duration_seconds_count",
                with(("error_type", "")),
                runs(None),
            ),
            (
                "gen_ai_client_operation_time_to_first_chunk_seconds_count",
                call.to_vec(),
                runs(Some(true)),
            ),
        ];
        for (family, labels, expected) in expect {
            assert_eq!(
                sum(family, &labels),
                expected,
                "{name}: {family} {labels:?}"
            );
        }
    }
    for (_, count, provider, _, _, error_type) in REFUSALS {
        let error = if *error_type == "unknown" {
            "_OTHER"
        } else {
            error_type
        };
        let labels = [
            ("service", service),
            ("gen_ai_provider_name", *provider),
            ("error_type", error),
        ];
        let family = "gen_ai_client_operation_duration_seconds_count";
        assert_eq!(
            sum(family, &labels),
            f64::from(*count),
            "{provider} refused"
        );
    }
}

/// No other call, token type, model or provider; nothing lost; no usage
/// unread.
fn check_nothing_else(agent: &Agent, service: &str, calls: u32) {
    agent.assert_nothing_lost();
    let scrape = agent.scrape();
    assert_eq!(
        scrape.total("http_client_requests_total", service),
        f64::from(calls),
        "the service's only HTTP calls are the model calls"
    );
    let token_series = scrape.matching("llm_tokens_used_total{");
    let types = 2 * MODELS.len() + GEMINI_EXTRA.len();
    assert_eq!(token_series.len(), types, "{token_series:?}");
    assert_eq!(
        scrape.total("llm_requests_total", service),
        f64::from(calls),
        "every call is a model call"
    );
    // Per provider, a series of answered calls and one of refused calls.
    let outcomes = scrape.matching("llm_requests_total{");
    assert_eq!(outcomes.len(), 2 * REFUSALS.len(), "{outcomes:?}");
    let errors = scrape.matching("loupe_rule_errors_total{");
    assert!(errors.is_empty(), "{errors:?}");
    // Only Ollama reports its own times.
    let phases = scrape.matching("llm_provider_duration_seconds_count{");
    assert_eq!(phases.len(), OLLAMA_PHASES.len(), "{phases:?}");
}

#[test]
fn model_calls_over_https() {
    model_calls("agents-tls", true, false, false);
}

#[test]
fn model_calls_over_plain_http() {
    model_calls("agents-plain", false, false, false);
}

#[test]
fn model_calls_over_http2_with_tls() {
    model_calls("agents-h2", true, true, false);
}

#[test]
fn model_calls_over_http2_prior_knowledge() {
    model_calls("agents-h2c", false, true, false);
}

#[test]
fn compressed_model_answers() {
    model_calls("agents-compressed", false, false, true);
}

#[test]
fn compressed_model_answers_over_http2_with_tls() {
    model_calls("agents-compressed-h2", true, true, true);
}

/// The client of [`openai_compatible_servers_by_path_and_host`]: reads
/// `HOST PATH MODEL COUNT` lines and makes COUNT chat completions on PATH
/// with that `Host` header and model, through httpx, then prints `done`.
const COMPATIBLE_CLIENT: &str = r#"
import sys, httpx
client = httpx.Client(base_url=sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    host, path, model, count = line.split()
    for _ in range(int(count)):
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
        assert client.post(path, json=body, headers={"Host": host}).status_code == 200
    print("done", flush=True)
"#;

/// Servers that copy the OpenAI API are read as OpenAI's, told apart by
/// their host (`[llm] hosts`): a vLLM server at its usual path, Groq at
/// its own (`/openai/v1/...`); the same call to a host not listed is an
/// HTTP call and nothing more.
#[test]
fn openai_compatible_servers_by_path_and_host() {
    let service = "compatible";
    let provider_port = free_port();
    let _provider = model_provider(provider_port);
    let base = format!("http://127.0.0.1:{provider_port}");
    let mut client = Fixture::start("python3", &["-c", COMPATIBLE_CLIENT, &base]);
    let config = scratch_file("compatible.toml");
    std::fs::write(
        &config,
        "[llm]\nhosts = [\"api.groq.com\", \"*.internal\"]\n",
    )
    .expect("write");
    let pid = client.pid().to_string();
    let config = config.display().to_string();
    let agent = Agent::start(&["--pid", &pid, "--service", service, "--config", &config]);
    agent.wait_for(&targets(service), 1.0);
    // (Host, path, model, calls); 2 words: 6 input tokens, 11 output.
    let plan = [
        (
            "vllm.internal",
            "/v1/chat/completions",
            "meta-llama/Llama-3.1-8B-Instruct",
            4,
        ),
        (
            "api.groq.com",
            "/openai/v1/chat/completions",
            "llama-3.3-70b-versatile",
            3,
        ),
        ("example.org", "/v1/chat/completions", "not-a-model-call", 2),
    ];
    for (host, path, model, count) in plan {
        client.command(&format!("{host} {path} {model} {count}"), "done");
    }
    let calls: u32 = plan.iter().map(|p| p.3).sum();
    agent.wait_for_total("http_client_requests_total", service, f64::from(calls));
    for (host, _, model, count) in &plan[..2] {
        let labels = [
            ("service", service),
            ("host", *host),
            ("provider", "openai"),
            ("model", *model),
            ("status", "200"),
            ("error_type", ""),
        ];
        agent.wait_for(&series("llm_requests_total", &labels), f64::from(*count));
        for (token_type, per_call) in [("input", 6), ("output", 11)] {
            let labels = [
                ("service", service),
                ("host", *host),
                ("model", *model),
                ("token_type", token_type),
            ];
            let tokens = series("llm_tokens_used_total", &labels);
            agent.wait_for(&tokens, f64::from(per_call * count));
        }
    }
    let scrape = agent.scrape();
    let model_calls: u32 = plan[..2].iter().map(|p| p.3).sum();
    assert_eq!(
        scrape.total("llm_requests_total", service),
        f64::from(model_calls),
        "{}",
        scrape.text
    );
    assert!(
        !scrape.text.contains("example.org\",model"),
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}
