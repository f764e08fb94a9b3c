//! The shipped Prometheus rules and Grafana dashboards against real data: a
//! real Prometheus scrapes loupe while it watches the FastAPI agent service
//! (backed by the real PostgreSQL and Redis) under the scripted session,
//! a grpcio backend under grpcio's client, and an MCP server under an MCP
//! client (both tracked), with loupe's collectors on. Every dashboard
//! panel's query, every alert's
//! expression and every example of docs/metrics.md, without their
//! thresholds, must return data (whether an alert fires is `promtool test
//! rules`' business, in deploy.rs), and
//! `promtool check metrics` accepts the exposition but for `users_total`.
//! Root required: `cargo xtask test`.
use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use loupe_tests::{
    Agent, Fixture,
    agent_service::{
        REFUSED_PROMPT, agent_service_with, give_up, invoke_agent, model_provider, scenario,
    },
    fixture, free_port, http_get, promtool_check_metrics, served, targets, workspace,
};

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus scraping loupe every second, with loupe's rules.
fn prometheus(dir: &Path, loupe_port: u16) -> (Fixture, u16) {
    let port = free_port();
    let rules = workspace().join("deploy/prometheus");
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: loupe\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{loupe_port}']\n",
            rules.join("recording-rules.yml").display(),
            rules.join("alert-rules.yml").display(),
        ),
    )
    .unwrap();
    let server = served(
        &format!(
            "exec prometheus --config.file={} --storage.tsdb.path={} \
             --web.listen-address=127.0.0.1:{port} --log.level=warn",
            config.display(),
            dir.join("data").display()
        ),
        port,
    );
    (server, port)
}

/// The result of an instant query: `Err` for a query Prometheus refused,
/// else how many series it returned.
fn query(port: u16, expr: &str) -> Result<usize, String> {
    let response = http_get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_str(&response.body).map_err(|e| format!("{e}: {}", response.body))?;
    if json["status"] != "success" {
        return Err(response.body);
    }
    Ok(json["data"]["result"].as_array().map_or(0, Vec::len))
}

/// Waits until `expr` returns at least one series.
fn wait_for_data(port: u16, expr: &str, within: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    loop {
        match query(port, expr) {
            Ok(n) if n > 0 => return Ok(n),
            Err(err) => return Err(err),
            Ok(_) if Instant::now() > deadline => return Err("no data".into()),
            Ok(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[test]
fn every_dashboard_query_and_alert_has_data_in_a_real_prometheus() {
    let db = std::env::var("LOUPE_TEST_DATABASE_URL").expect("run with `cargo xtask test`");
    let redis = std::env::var("LOUPE_TEST_REDIS_URL").expect("run with `cargo xtask test`");
    let dir = std::env::temp_dir().join(format!("loupe-prometheus-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // Business tables for the database collector, beside the service's.
    let prefix = format!("e2e{}_", std::process::id());
    Fixture::python("business_tables.py", &["postgres", &db, &prefix]).kill();

    // A model provider the agents call, so that the model panels have data.
    let provider = free_port();
    let _provider = model_provider(provider);
    let port = free_port();
    let _service = agent_service_with(port, &format!("MODEL_URL=http://127.0.0.1:{provider}"));
    // A gRPC backend beside it, so that the gRPC panels and alert have data.
    let grpc_port = free_port();
    let _grpc = Fixture::python("grpc_app.py", &[&grpc_port.to_string()]);
    // An MCP tool server and a client calling it, so that the MCP panels
    // have data on both sides.
    let mcp_port = free_port();
    let _mcp_server = Fixture::python("mcp_py.py", &["server", &mcp_port.to_string()]);
    let mut mcp_client = Fixture::python("mcp_py.py", &["client"]);
    let config = dir.join("loupe.toml");
    fs::write(
        &config,
        format!(
            "[export]\nconventions = [\"loupe\", \"otel\"]\n\
             [collectors]\ninterval = \"1s\"\n\
             [collectors.redis]\nurl_env = \"LOUPE_TEST_REDIS_URL\"\n\
             [collectors.database]\nurl_env = \"LOUPE_TEST_DATABASE_URL\"\n\
             service = \"agent-api\"\n\
             users_table = \"{prefix}users\"\napi_keys_table = \"{prefix}api_keys\"\n\
             sessions_table = \"{prefix}sessions\"\n\
             [llm.prices]\n\"gpt-4o-mini\" = {{ input = 0.15, output = 0.6 }}\n\
             [[services]]\nname = \"agent-api\"\nports = [{port}]\n\
             exclude_paths = [\"/health\"]\n\
             [[services]]\nname = \"grpc-api\"\nports = [{grpc_port}]\n\
             [[services]]\nname = \"mcp-tools\"\nports = [{mcp_port}]\n\
             [[services]]\nname = \"mcp-caller\"\npids = [{}]\n",
            mcp_client.pid()
        ),
    )
    .unwrap();
    let agent = Agent::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[
            ("LOUPE_TEST_DATABASE_URL", &db),
            ("LOUPE_TEST_REDIS_URL", &redis),
        ],
    );
    agent.wait_for(&targets("agent-api"), 1.0);
    agent.wait_for(&targets("grpc-api"), 1.0);
    agent.wait_for(&targets("mcp-tools"), 1.0);
    agent.wait_for(&targets("mcp-caller"), 1.0);
    // A session: tools listed, 3 calls that succeed, 1 that fails, 1 error.
    let mut mcp_session = || {
        let line = format!("http://127.0.0.1:{mcp_port}/mcp 3 1 1");
        mcp_client.command(&line, "done");
    };
    let (_prometheus, prom) = prometheus(&dir, agent.port);
    let grpc_calls = || {
        // 5 Get OK, 2 NOT_FOUND, 1 past its deadline, a List, a Chat.
        let output = Command::new("python3")
            .arg(fixture("grpc_client.py"))
            .args([grpc_port.to_string().as_str(), "5", "2", "1", "1", "1", "3"])
            .output()
            .expect("python3 grpc_client.py");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(printed.starts_with("done "), "{printed}");
    };

    // A model call the provider refuses (429), so that the model-error
    // panels and alerts have data.
    let refused = || {
        let status = invoke_agent(port, "planner", REFUSED_PROMPT, false);
        assert_eq!(status, "502", "the agent fails when its model call does");
        1.0
    };
    // Two sessions, seconds apart, so that every rate has two scrapes;
    // after each, a client that gives up before its answer.
    let mut sent = scenario(port) + refused();
    give_up(port);
    grpc_calls();
    mcp_session();
    std::thread::sleep(Duration::from_secs(3));
    sent += scenario(port) + refused();
    give_up(port);
    grpc_calls();
    mcp_session();
    let total = agent.wait_for_total("agent_requests_total", "agent-api", sent);
    assert_eq!(total, sent);
    // Prometheus holds what loupe counted.
    let counted = format!("sum(agent_requests_total{{service=\"agent-api\"}}) == {sent}");
    wait_for_data(prom, &counted, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{counted}: {e}"));

    let listed = Command::new("python3")
        .arg(fixture("deploy_queries.py"))
        .arg(workspace())
        .output()
        .expect("deploy_queries.py");
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let queries: Vec<(&str, &str)> = listed
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    assert!(queries.len() > 50, "{listed}");
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|(source, expr)| {
            let checked = wait_for_data(prom, expr, Duration::from_secs(10));
            checked.err().map(|err| format!("{source}: {expr}: {err}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The exposition passes promtool's lint, but for the documented
    // users_total (a gauge whose name ends in _total).
    let (_, report) = promtool_check_metrics(&agent.scrape().text);
    let problems: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!problems.is_empty(), "users_total is reported: {report}");
    assert!(
        problems.iter().all(|l| l.starts_with("users_total")),
        "{report}"
    );

    Fixture::python("business_tables.py", &["postgres", &db, &prefix, "drop"]).kill();
    let _ = fs::remove_dir_all(&dir);
}
