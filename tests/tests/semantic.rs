//! Business metrics from route rules, for the FastAPI agent-service fixture
//! backed by PostgreSQL and Redis: a scripted session
//! (`fixtures/agent_service/scenario.py`) gives exact values for every
//! family; a differently laid-out service works with its own rule set.
//! Root required: `cargo xtask test`.
use std::{fs, process::Command};

use loupe_tests::{
    Agent, Scrape,
    agent_service::{agent_service, agent_service_h2c, scenario_with},
    free_port, series, targets, watch_port,
};

/// The value of `name{service, labels}`.
fn value(scrape: &Scrape, service: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = vec![("service", service)];
    all.extend_from_slice(labels);
    scrape.get(&series(name, &all))
}

#[test]
fn agent_service_business_metrics_are_exact() {
    business_metrics_are_exact(false);
}

/// The same session in HTTP/2 (h2c with prior knowledge, hypercorn):
/// the rules read the same bodies from DATA frames.
#[test]
fn agent_service_business_metrics_are_exact_over_http2() {
    business_metrics_are_exact(true);
}

fn business_metrics_are_exact(http2: bool) {
    let port = free_port();
    let (_service, svc) = if http2 {
        (agent_service_h2c(port), "agents-h2")
    } else {
        (agent_service(port), "agents")
    };
    let agent = if http2 {
        // hypercorn's three processes (its parent, worker and spawner).
        let port = port.to_string();
        let agent = Agent::start(&[
            "--port",
            &port,
            "--service",
            svc,
            "--exclude-path",
            "/health",
        ]);
        agent.wait_for(&targets(svc), 3.0);
        agent
    } else {
        watch_port(port, svc, &["--exclude-path", "/health"])
    };
    let sent = scenario_with(port, http2);
    let total = agent.wait_for_total("agent_requests_total", svc, sent);
    assert_eq!(total, sent);
    agent.assert_nothing_lost();
    let scrape = agent.scrape();
    let expect = |name: &str, labels: &[(&str, &str)], expected: f64| {
        let found = value(&scrape, svc, name, labels);
        assert_eq!(found, Some(expected), "{name} {labels:?}\n{}", scrape.text);
    };
    let login = "auth_login_total";
    expect(login, &[("provider", "password"), ("success", "true")], 3.0);
    expect(
        login,
        &[("provider", "password"), ("success", "false")],
        2.0,
    );
    expect(login, &[("provider", "google"), ("success", "true")], 1.0);
    expect(login, &[("provider", "google"), ("success", "false")], 2.0);
    expect(login, &[("provider", "github"), ("success", "true")], 1.0);
    expect(login, &[("provider", "local"), ("success", "true")], 1.0);
    let refresh = "auth_token_refresh_total";
    expect(refresh, &[("provider", "local"), ("success", "true")], 2.0);
    expect(refresh, &[("provider", "local"), ("success", "false")], 1.0);
    let failed = "auth_failed_attempts_total";
    expect(failed, &[("reason", "invalid_credentials")], 3.0);
    expect(failed, &[("reason", "locked")], 1.0);
    expect(failed, &[("reason", "rate_limited")], 1.0);

    let runs = "agent_invocations_total";
    expect(
        runs,
        &[("agent_name", "planner"), ("status", "success")],
        3.0,
    );
    expect(runs, &[("agent_name", "coder"), ("status", "success")], 2.0);
    expect(runs, &[("agent_name", "ghost"), ("status", "error")], 1.0);
    expect(
        runs,
        &[("agent_name", "glitch"), ("status", "success")],
        1.0,
    );
    let tokens = "agent_tokens_used_total";
    // planner: 10 per prompt word (3 + 1 + 4 words), 30 out each.
    expect(
        tokens,
        &[("agent_name", "planner"), ("token_type", "input")],
        80.0,
    );
    expect(
        tokens,
        &[("agent_name", "planner"), ("token_type", "output")],
        90.0,
    );
    // coder, streamed: input from the first event, output from the last.
    expect(
        tokens,
        &[("agent_name", "coder"), ("token_type", "input")],
        60.0,
    );
    expect(
        tokens,
        &[("agent_name", "coder"), ("token_type", "output")],
        160.0,
    );
    expect(
        tokens,
        &[("agent_name", "verbose"), ("token_type", "output")],
        5.0,
    );
    // Durations: planner thinks 0.12 s, coder streams for about 0.4 s.
    let duration = "agent_execution_duration_seconds_bucket";
    expect(duration, &[("agent_name", "planner"), ("le", "0.1")], 0.0);
    expect(duration, &[("agent_name", "planner"), ("le", "0.25")], 3.0);
    expect(duration, &[("agent_name", "coder"), ("le", "0.25")], 0.0);
    expect(duration, &[("agent_name", "coder"), ("le", "1")], 2.0);

    let tools = "tool_invocations_total";
    expect(
        tools,
        &[("tool_name", "search"), ("status", "success")],
        4.0,
    );
    expect(tools, &[("tool_name", "broken"), ("status", "error")], 2.0);
    expect(
        "tool_execution_duration_seconds_count",
        &[("tool_name", "search")],
        4.0,
    );

    // What could not be read is counted, and nothing else of the bodies
    // shows up anywhere.
    let errors = "loupe_rule_errors_total";
    let rule = "default agent /agents/{agent_name}/invoke";
    expect(errors, &[("rule", rule), ("reason", "malformed_json")], 1.0);
    expect(errors, &[("rule", rule), ("reason", "not_numeric")], 1.0);
    let all_errors: f64 = scrape.matching(errors).iter().map(|(_, v)| v).sum();
    assert_eq!(
        all_errors, 2.0,
        "defaults cover missing providers: {}",
        scrape.text
    );
    for secret in ["alice-password", "lk_demo_", "refresh_token", "eyJ"] {
        assert!(!scrape.text.contains(secret), "{secret} leaked");
        assert!(!agent.log().contains(secret), "{secret} in the log");
    }
}

#[test]
fn another_layout_needs_only_rules() {
    // The same service seen through a proxy-like layout: nginx maps
    // /v2/identity/session to the password login and /v2/runs/{agent} to the
    // agent route; the provider comes from a header, tokens from fields.
    let port = free_port();
    let _service = agent_service(port);
    let dir = std::env::temp_dir().join(format!("loupe-rules-{port}"));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("loupe.toml");
    fs::write(
        &config,
        r#"
[semantic]
failure_statuses = { 401 = "bad_password" }

[[rules]]
family = "login"
method = "POST"
route = "/auth/{method}/login"
provider = "header:x-idp|unknown"

[[rules]]
name = "runs"
family = "agent"
route = "/agents/{name}/invoke"
agent_name = "path:name"
tokens = { prompt = "response:usage.input_tokens" }
"#,
    )
    .unwrap();
    let checked = Command::new(loupe_tests::loupe_bin())
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{text}");
    assert!(
        text.contains("provider: request header `x-idp`, else `unknown`"),
        "{text}"
    );
    let svc = "layout";
    let agent = watch_port(port, svc, &["--config", config.to_str().unwrap()]);
    let base = format!("http://127.0.0.1:{port}");
    let curl = |args: &[&str]| {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&status.stdout).into_owned()
    };
    let login = |idp: &str, password: &str| {
        curl(&[
            "-H",
            &format!("X-IdP: {idp}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"username":"alice","password":"{password}"}}"#),
            &format!("{base}/auth/password/login"),
        ])
    };
    assert_eq!(login("okta", "alice-password"), "200");
    assert_eq!(login("okta", "nope"), "401");
    assert_eq!(login("azure", "alice-password"), "200");
    let key = "X-API-Key: lk_demo_0123456789abcdef";
    let run = |prompt: &str| {
        curl(&[
            "-H",
            key,
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"prompt":"{prompt}"}}"#),
            &format!("{base}/agents/planner/invoke"),
        ])
    };
    assert_eq!(run("one two"), "200");
    assert_eq!(run("three"), "200");
    assert_eq!(agent.wait_for_total("agent_requests_total", svc, 5.0), 5.0);
    let scrape = agent.scrape();
    let get = |name: &str, labels: &[(&str, &str)]| value(&scrape, svc, name, labels);
    let login = "auth_login_total";
    assert_eq!(
        get(login, &[("provider", "okta"), ("success", "true")]),
        Some(1.0)
    );
    assert_eq!(
        get(login, &[("provider", "okta"), ("success", "false")]),
        Some(1.0)
    );
    assert_eq!(
        get(login, &[("provider", "azure"), ("success", "true")]),
        Some(1.0)
    );
    assert_eq!(
        get("auth_failed_attempts_total", &[("reason", "bad_password")]),
        Some(1.0)
    );
    let tokens = "agent_tokens_used_total";
    assert_eq!(
        get(
            tokens,
            &[("agent_name", "planner"), ("token_type", "prompt")]
        ),
        Some(30.0)
    );
    assert_eq!(
        get(
            tokens,
            &[("agent_name", "planner"), ("token_type", "output")]
        ),
        None,
        "only the named fields are read"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn label_budgets_and_body_limits_hold() {
    let port = free_port();
    let _service = agent_service(port);
    let dir = std::env::temp_dir().join(format!("loupe-budget-{port}"));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("loupe.toml");
    // Default rules; two agent names per service; bodies cut at 48 bytes
    // (the usage object sits past them).
    fs::write(&config, "[semantic]\nmax_label_values = 2\nmax_body = 48\n").unwrap();
    let svc = "budget";
    let agent = watch_port(port, svc, &["--config", config.to_str().unwrap()]);
    let base = format!("http://127.0.0.1:{port}");
    for name in ["planner", "researcher", "coder", "ghost"] {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "X-API-Key: lk_demo_0123456789abcdef", "-X", "POST"])
            .arg(format!("{base}/agents/{name}/invoke"))
            .output()
            .unwrap();
        let expected = if name == "ghost" { "404" } else { "200" };
        assert_eq!(String::from_utf8_lossy(&status.stdout), expected);
    }
    assert_eq!(agent.wait_for_total("agent_requests_total", svc, 4.0), 4.0);
    agent.assert_nothing_lost();
    let scrape = agent.scrape();
    let get = |name: &str, labels: &[(&str, &str)]| value(&scrape, svc, name, labels);
    let runs = "agent_invocations_total";
    assert_eq!(
        get(runs, &[("agent_name", "planner"), ("status", "success")]),
        Some(1.0)
    );
    assert_eq!(
        get(runs, &[("agent_name", "researcher"), ("status", "success")]),
        Some(1.0)
    );
    assert_eq!(
        get(runs, &[("agent_name", "__other__"), ("status", "success")]),
        Some(1.0)
    );
    assert_eq!(
        get(runs, &[("agent_name", "__other__"), ("status", "error")]),
        Some(1.0)
    );
    assert_eq!(
        get("loupe_label_overflow_total", &[("label", "agent_name")]),
        Some(2.0)
    );
    assert!(
        scrape.matching("agent_tokens_used_total").is_empty(),
        "usage lies past the body limit:\n{}",
        scrape.text
    );
    let rule = "default agent /agents/{agent_name}/invoke";
    assert_eq!(
        get(
            "loupe_rule_errors_total",
            &[("reason", "truncated"), ("rule", rule)]
        ),
        Some(3.0)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn sighup_applies_new_rules_and_a_broken_file_changes_nothing() {
    let port = free_port();
    let _service = agent_service(port);
    let dir = std::env::temp_dir().join(format!("loupe-reload-{port}"));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("loupe.toml");
    let rule = |header: &str| {
        format!(
            "[[rules]]\nfamily = \"login\"\nmethod = \"POST\"\nroute = \"/auth/{{method}}/login\"\n\
             provider = \"header:{header}|unknown\"\n"
        )
    };
    fs::write(&config, rule("x-idp")).unwrap();
    let svc = "reloaded";
    let agent = watch_port(port, svc, &["--config", config.to_str().unwrap()]);
    let login = |header: &str| {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", header, "-H", "Content-Type: application/json"])
            .args(["-d", r#"{"username":"alice","password":"alice-password"}"#])
            .arg(format!("http://127.0.0.1:{port}/auth/password/login"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "200");
    };
    let hangup = || {
        // SAFETY: a plain syscall on the agent this test started.
        assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    };
    let logins = |provider: &str| {
        series(
            "auth_login_total",
            &[
                ("service", svc),
                ("provider", provider),
                ("success", "true"),
            ],
        )
    };
    let reloads = |result: &str| series("loupe_config_reloads_total", &[("result", result)]);
    login("X-IdP: okta");
    agent.wait_for(&logins("okta"), 1.0);

    // A rule naming a family that does not exist: the file does not load,
    // the error names its line, and the old rules go on.
    fs::write(
        &config,
        format!(
            "{}\n[[rules]]\nfamily = \"nope\"\nroute = \"/x\"\n",
            rule("x-realm")
        ),
    )
    .unwrap();
    hangup();
    agent.wait_for(&reloads("failure"), 1.0);
    let log = agent.wait_for_log("the configuration did not load");
    assert!(log.contains("loupe.toml: line 7"), "{log}");
    login("X-IdP: okta");
    agent.wait_for(&logins("okta"), 2.0);

    // A good file: its rules apply from the next request on.
    fs::write(&config, rule("x-realm")).unwrap();
    hangup();
    agent.wait_for(&reloads("success"), 1.0);
    login("X-Realm: corp");
    login("X-IdP: okta");
    agent.wait_for(&logins("corp"), 1.0);
    agent.wait_for(&logins("unknown"), 1.0);
    assert_eq!(agent.wait_for_total("agent_requests_total", svc, 4.0), 4.0);
    let scrape = agent.scrape();
    assert_eq!(scrape.get(&logins("okta")), Some(2.0));
    assert_eq!(scrape.get(&reloads("failure")), Some(1.0));
    agent.assert_nothing_lost();
    let _ = fs::remove_dir_all(&dir);
}
