//! MCP tool calls read from the wire on both sides, with both official
//! SDKs (`fixtures/mcp_py.py`: the Python SDK's FastMCP server and client;
//! `fixtures/mcp_ts.js`: the TypeScript SDK's): each client runs the same
//! session against a Python server answering in event streams, one
//! answering in JSON, and a stateless TypeScript server answering in JSON
//! (the streamable HTTP transport), then against a server of each SDK on
//! the older HTTP+SSE transport.
//! Every request is counted by method, tool and outcome at the client
//! (`mcp_client_*`, by server `host`) and at the server (`mcp_server_*`),
//! exactly. Root required: `cargo xtask test`.
use std::{collections::BTreeMap, fs};

use loupe_tests::{
    Agent, Fixture, Scrape, fixture, free_port, scratch_file, series, targets, workspace,
};

/// Per session: `add` calls (succeed), `fail` calls (the tool reports an
/// error), reads of an unknown resource (a JSON-RPC error).
const ADDS: u32 = 7;
const FAILS: u32 = 3;
const MISSING: u32 = 2;

/// `(method, tool_name, status) -> requests`, as one session makes them:
/// besides the calls, one `initialize` and one `tools/list` (the
/// `notifications/initialized` that follows `initialize` is no request).
fn session() -> BTreeMap<(String, String, String), f64> {
    [
        ("initialize", "", "ok", 1),
        ("tools/list", "", "ok", 1),
        ("tools/call", "add", "ok", ADDS),
        ("tools/call", "fail", "tool_error", FAILS),
        ("resources/read", "", "error", MISSING),
    ]
    .into_iter()
    .map(|(method, tool, status, n)| {
        (
            (method.to_owned(), tool.to_owned(), status.to_owned()),
            f64::from(n),
        )
    })
    .collect()
}

fn node(args: &str) -> Fixture {
    let command = format!(
        "exec env NODE_PATH={} node {} {args}",
        workspace().join("target/tools/node_modules").display(),
        fixture("mcp_ts.js").display()
    );
    Fixture::start("bash", &["-c", &command])
}

/// The value of label `name` in a series key.
fn label<'k>(key: &'k str, name: &str) -> &'k str {
    let start = key
        .find(&format!("{name}=\""))
        .map_or(key.len(), |i| i + name.len() + 2);
    let rest = &key[start..];
    &rest[..rest.find('"').unwrap_or(rest.len())]
}

/// `family`'s series of `service` (with `host`, for the client side) as
/// `(method, tool_name, status) -> count`.
fn counted(
    scrape: &Scrape,
    family: &str,
    service: &str,
    host: Option<&str>,
) -> BTreeMap<(String, String, String), f64> {
    scrape
        .matching(&format!("{family}{{"))
        .into_iter()
        .filter(|(key, _)| label(key, "service") == service)
        .filter(|(key, _)| host.is_none_or(|host| label(key, "host") == host))
        .map(|(key, n)| {
            let key = (
                label(key, "method").to_owned(),
                label(key, "tool_name").to_owned(),
                label(key, "status").to_owned(),
            );
            (key, n)
        })
        .collect()
}

/// `family`'s series of `service` (to the server on `port`, for the
/// client side) as `(mcp_method_name, gen_ai_tool_name, error_type) ->
/// count`.
fn otel_counted(
    scrape: &Scrape,
    family: &str,
    service: &str,
    port: Option<u16>,
) -> BTreeMap<(String, String, String), f64> {
    let mut counts = BTreeMap::new();
    for (key, n) in scrape.matching(&format!("{family}{{")) {
        let to = |port: u16| {
            label(key, "server_address") == "127.0.0.1"
                && label(key, "server_port") == port.to_string()
        };
        if label(key, "service") == service && port.is_none_or(to) {
            let key = (
                label(key, "mcp_method_name").to_owned(),
                label(key, "gen_ai_tool_name").to_owned(),
                label(key, "error_type").to_owned(),
            );
            *counts.entry(key).or_insert(0.0) += n;
        }
    }
    counts
}

#[test]
fn tool_calls_are_counted_on_both_sides_with_both_sdks() {
    loupe_tests::require_root();
    let ports = [free_port(), free_port(), free_port()];
    let servers = [
        (
            "mcp-py-stream",
            Fixture::python("mcp_py.py", &["server", &ports[0].to_string()]),
        ),
        (
            "mcp-py-json",
            Fixture::python("mcp_py.py", &["server", &ports[1].to_string(), "json"]),
        ),
        ("mcp-ts", node(&format!("server {}", ports[2]))),
    ];
    every_request_counted_on_both_sides(&servers, &ports, "/mcp");
}

/// The older HTTP+SSE transport (2024-11-05): each request is posted
/// (answered `202`) and answered on the session's event stream.
#[test]
fn the_http_sse_transport_is_counted_on_both_sides_with_both_sdks() {
    loupe_tests::require_root();
    let ports = [free_port(), free_port()];
    let servers = [
        (
            "mcp-py-sse",
            Fixture::python("mcp_py.py", &["server", &ports[0].to_string(), "sse"]),
        ),
        ("mcp-ts-sse", node(&format!("sse-server {}", ports[1]))),
    ];
    every_request_counted_on_both_sides(&servers, &ports, "/sse");
}

/// Each SDK's client runs a session against each of `servers` (listening
/// on `ports`, at path `at`); every request is counted exactly on both sides,
/// under loupe's names and OpenTelemetry's.
fn every_request_counted_on_both_sides(servers: &[(&str, Fixture)], ports: &[u16], at: &str) {
    let mut clients = [
        ("caller-py", Fixture::python("mcp_py.py", &["client"])),
        ("caller-ts", node("client")),
    ];
    let mut config =
        String::from("series_ttl = \"1h\"\n[export]\nconventions = [\"loupe\", \"otel\"]\n");
    for (name, process) in servers.iter().chain(clients.iter()) {
        config += &format!(
            "\n[[services]]\nname = \"{name}\"\npids = [{}]\n",
            process.pid()
        );
    }
    let path = scratch_file("mcp.toml");
    fs::write(&path, config).expect("write the configuration");
    let agent = Agent::start(&["--config", path.to_str().expect("UTF-8 path")]);
    for (name, _) in servers.iter().chain(clients.iter()) {
        agent.wait_for(&targets(name), 1.0);
    }

    for (_, client) in &mut clients {
        for port in ports {
            let line = format!("http://127.0.0.1:{port}{at} {ADDS} {FAILS} {MISSING}");
            client.command(&line, "done");
        }
    }

    let per_session: f64 = session().values().sum();
    for (server, _) in servers {
        agent.wait_for_total("mcp_server_requests_total", server, 2.0 * per_session);
    }
    let sessions = servers.len() as f64;
    for (client, _) in &clients {
        agent.wait_for_total("mcp_client_requests_total", client, sessions * per_session);
    }
    let scrape = agent.scrape();
    let twice: BTreeMap<_, _> = session().into_iter().map(|(k, n)| (k, 2.0 * n)).collect();
    for (server, _) in servers {
        let seen = counted(&scrape, "mcp_server_requests_total", server, None);
        assert_eq!(seen, twice, "{server}\n{}", scrape.text);
        let timed = series(
            "mcp_server_request_duration_seconds_count",
            &[("service", server), ("method", "tools/call")],
        );
        assert_eq!(
            scrape.get(&timed),
            Some(2.0 * f64::from(ADDS + FAILS)),
            "{timed}"
        );
    }
    for (client, _) in &clients {
        for port in ports {
            let host = format!("127.0.0.1:{port}");
            let seen = counted(&scrape, "mcp_client_requests_total", client, Some(&host));
            assert_eq!(seen, session(), "{client} -> {host}\n{}", scrape.text);
            let timed = series(
                "mcp_client_request_duration_seconds_count",
                &[
                    ("service", client),
                    ("host", &host),
                    ("method", "tools/call"),
                ],
            );
            assert_eq!(scrape.get(&timed), Some(f64::from(ADDS + FAILS)), "{timed}");
        }
    }
    // The same requests under OpenTelemetry's names, the JSON-RPC error
    // code as the error type.
    // Python's FastMCP answers an unknown resource with code 0, the
    // TypeScript SDK with -32602 (invalid params).
    let expected = |server: &str, sessions: f64| -> BTreeMap<(String, String, String), f64> {
        let code = if server.starts_with("mcp-ts") {
            "-32602"
        } else {
            "0"
        };
        session()
            .into_iter()
            .map(|((method, tool, status), n)| {
                let error = match status.as_str() {
                    "ok" => "",
                    "error" => code,
                    other => other,
                };
                ((method, tool, error.to_owned()), sessions * n)
            })
            .collect()
    };
    for (server, _) in servers {
        let family = "mcp_server_operation_duration_seconds_count";
        let seen = otel_counted(&scrape, family, server, None);
        assert_eq!(seen, expected(server, 2.0), "{server}\n{}", scrape.text);
        for (client, _) in &clients {
            let port = ports[servers.iter().position(|(s, _)| s == server).unwrap_or(0)];
            let family = "mcp_client_operation_duration_seconds_count";
            let seen = otel_counted(&scrape, family, client, Some(port));
            assert_eq!(
                seen,
                expected(server, 1.0),
                "{client} -> {server}\n{}",
                scrape.text
            );
        }
    }
    assert!(
        scrape.matching("loupe_rule_errors_total{").is_empty(),
        "every message was read:\n{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}
