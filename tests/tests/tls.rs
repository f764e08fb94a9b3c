//! HTTPS served by the process itself, seen in plaintext through uprobes on
//! OpenSSL: uvicorn (CPython's `ssl` module, `libssl.so.3`, memory BIOs)
//! and Node.js (OpenSSL linked into the executable), with `[http] tls =
//! true`; HTTP/1.1, and HTTP/2 negotiated with ALPN (Node's `http2`,
//! hypercorn). Clients: Python requests and httpx, not tracked. Root required:
//! `cargo xtask test`.
use std::process::Command;

use loupe_tests::{
    Agent, Fixture, Nginx, fixture, free_port, series, served, targets,
    tls::{Certificate, tls_config},
};

/// `(method, path, count, status, endpoint)`: 2xx, 4xx and 5xx.
const MIX: &[(&str, &str, u32, u16, &str)] = &[
    ("GET", "/items/42", 37, 200, "/items/{item_id}"),
    ("POST", "/items", 11, 201, "/items"),
    ("DELETE", "/items/9", 5, 204, "/items/{item_id}"),
    ("GET", "/fail", 3, 500, "/fail"),
    ("GET", "/nope", 7, 404, "/nope"),
];

/// Route templates (no OpenAPI document is fetched over HTTPS).
const ROUTES: &[&str] = &["--route", "/items/{item_id}", "--route", "/items"];

/// `watch_port` with the OpenSSL uprobes on.
fn watch_tls(port: u16, service: &str, extra: &[&str]) -> Agent {
    watch_tls_processes(port, service, 1.0, extra)
}

/// [`watch_tls`] of a server of `processes` processes (a supervisor and
/// its workers).
fn watch_tls_processes(port: u16, service: &str, processes: f64, extra: &[&str]) -> Agent {
    let config = tls_config(service);
    let port = port.to_string();
    let mut args = vec!["--port", &port, "--service", service, "--config", &config];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    agent.wait_for(&targets(service), processes);
    agent
}

/// Sends the mix over HTTPS with `library` and checks every count: exact,
/// no other label set, and the ciphertext on the socket neither counted
/// again nor reported as unparsed.
fn check_mix(agent: &Agent, service: &str, port: u16, library: &str) {
    check_mix_hooked(agent, service, port, library, 1.0);
}

/// [`check_mix`] on a server of which `hooked` processes map OpenSSL.
fn check_mix_hooked(agent: &Agent, service: &str, port: u16, library: &str, hooked: f64) {
    let base = format!("https://127.0.0.1:{port}");
    let mut client = Fixture::python("http_client.py", &[&base, library]);
    for (method, path, count, ..) in MIX {
        client.send(&format!("{method} {path} {count}"));
    }
    let total: u32 = MIX.iter().map(|(_, _, count, ..)| count).sum();
    client.command("", &format!("done {total}"));
    for (method, _, count, status, endpoint) in MIX {
        agent.wait_for(
            &series(
                "agent_requests_total",
                &[
                    ("service", service),
                    ("method", method),
                    ("endpoint", endpoint),
                    ("status", &status.to_string()),
                    ("auth_type", "none"),
                ],
            ),
            f64::from(*count),
        );
    }
    agent.assert_nothing_lost();
    let scrape = agent.scrape();
    assert_eq!(
        scrape.total("agent_requests_total", service),
        f64::from(total)
    );
    // Under OpenTelemetry's names: https, in the version the client spoke,
    // the route only where a template is known.
    let version = if library.ends_with("-h2") { "2" } else { "1.1" };
    for (method, _, count, status, endpoint) in MIX {
        let route = if ROUTES.contains(endpoint) {
            *endpoint
        } else {
            ""
        };
        let labels = [
            ("service", service),
            ("http_request_method", method),
            ("http_route", route),
            ("http_response_status_code", &status.to_string()),
            ("url_scheme", "https"),
            ("network_protocol_version", version),
        ];
        let named = series("http_server_request_duration_seconds_count", &labels);
        assert_eq!(scrape.get(&named), Some(f64::from(*count)), "{named}");
    }
    let unparsed = scrape.matching("loupe_unparsed_connections_total{");
    assert!(unparsed.is_empty(), "{unparsed:?}");
    // Counted at the agent's upkeep (every 5 s).
    agent.wait_for(
        &series("loupe_tls_hooked_processes", &[("service", service)]),
        hooked,
    );
    assert!(
        agent.log().contains("TLS plaintext hooked"),
        "{}",
        agent.log()
    );
}

#[test]
fn https_fastapi_under_uvicorn() {
    let certificate = Certificate::new("uvicorn");
    let port = free_port();
    let _server = served(
        &format!(
            "python3 -m uvicorn http_app:app --app-dir {} --host 127.0.0.1 --port {port} \
             --log-level warning --loop asyncio --ssl-certfile {} --ssl-keyfile {}",
            fixture("").display(),
            certificate.cert(),
            certificate.key()
        ),
        port,
    );
    let agent = watch_tls(port, "fastapi-tls", ROUTES);
    check_mix(&agent, "fastapi-tls", port, "requests");
}

#[test]
fn https_node_server() {
    let certificate = Certificate::new("node");
    let port = free_port();
    let _server = Fixture::start(
        "node",
        &[
            fixture("http_app.js").to_str().unwrap(),
            &port.to_string(),
            &certificate.cert(),
            &certificate.key(),
        ],
    );
    let agent = watch_tls(port, "node-tls", ROUTES);
    check_mix(&agent, "node-tls", port, "httpx");
}

#[test]
fn https_h2_node_server() {
    let certificate = Certificate::new("node-h2");
    let port = free_port();
    let _server = Fixture::start(
        "node",
        &[
            fixture("http_app.js").to_str().unwrap(),
            &port.to_string(),
            &certificate.cert(),
            &certificate.key(),
            "h2",
        ],
    );
    let agent = watch_tls(port, "node-h2", ROUTES);
    check_mix(&agent, "node-h2", port, "httpx-h2");
}

#[test]
fn https_h2_fastapi_under_hypercorn() {
    let certificate = Certificate::new("hypercorn-h2");
    let port = free_port();
    let _server = served(
        &format!(
            "cd {} && python3 -m hypercorn http_app:app --bind 127.0.0.1:{port} \
             --certfile {} --keyfile {}",
            fixture("").display(),
            certificate.cert(),
            certificate.key()
        ),
        port,
    );
    // The supervisor, its worker and multiprocessing's resource tracker;
    // the worker serves.
    let agent = watch_tls_processes(port, "hypercorn-h2", 3.0, ROUTES);
    // curl, not httpx: hypercorn drops httpx's bodiless HTTP/2 POSTs. Its
    // URLs share one connection.
    let mut curl = Command::new("curl");
    curl.args(["-sk", "--http2", "-w", "%{http_version} "]);
    for i in 0..9 {
        curl.arg(format!("https://127.0.0.1:{port}/items/{i}"))
            .args(["-o", "/dev/null"]);
    }
    for _ in 0..4 {
        curl.arg(format!("https://127.0.0.1:{port}/nope"))
            .args(["-o", "/dev/null"]);
    }
    let output = curl.output().expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "2 ".repeat(13));
    let requests = |endpoint: &str, status: &str| {
        series(
            "agent_requests_total",
            &[
                ("service", "hypercorn-h2"),
                ("method", "GET"),
                ("endpoint", endpoint),
                ("status", status),
                ("auth_type", "none"),
            ],
        )
    };
    agent.wait_for(&requests("/items/{item_id}", "200"), 9.0);
    let scrape = agent.wait_for(&requests("/nope", "404"), 4.0);
    assert_eq!(scrape.total("agent_requests_total", "hypercorn-h2"), 13.0);
    let unparsed = scrape.matching("loupe_unparsed_connections_total{");
    assert!(unparsed.is_empty(), "{unparsed:?}");
    agent.assert_nothing_lost();
}

#[test]
fn nginx_h2_over_tls_proxying_to_http1() {
    // The upstream: Node's HTTP/1.1 server, not watched.
    let upstream = free_port();
    let _upstream = Fixture::start(
        "node",
        &[
            fixture("http_app.js").to_str().unwrap(),
            &upstream.to_string(),
        ],
    );
    let certificate = Certificate::new("nginx-h2");
    let port = free_port();
    let _nginx = Nginx::start_h2_tls(
        port,
        &certificate,
        &format!(
            "location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }}"
        ),
    );
    // The master and its two workers, all three mapping OpenSSL.
    let agent = watch_tls_processes(port, "nginx-h2", 3.0, ROUTES);
    check_mix_hooked(&agent, "nginx-h2", port, "httpx-h2", 3.0);
    // nginx's own calls to its upstream, over HTTP/1.1.
    let total: u32 = MIX.iter().map(|(_, _, count, ..)| count).sum();
    assert_eq!(
        agent.wait_for_total("http_client_requests_total", "nginx-h2", f64::from(total)),
        f64::from(total)
    );
}

#[test]
fn openssl_loaded_after_the_agent_started_is_hooked() {
    let certificate = Certificate::new("late");
    let (port, tls_port) = (free_port(), free_port());
    let mut server = Fixture::python("late_tls.py", &[&port.to_string()]);
    let agent = watch_tls(port, "late-tls", &[]);
    assert!(
        !agent.log().contains("TLS plaintext hooked"),
        "{}",
        agent.log()
    );
    server.command(
        &format!(
            "tls {} {} {tls_port}",
            certificate.cert(),
            certificate.key()
        ),
        "tls ready",
    );
    // Found at the agent's next upkeep (every 5 s).
    let hooked = series("loupe_tls_hooked_processes", &[("service", "late-tls")]);
    assert_eq!(agent.scrape().get(&hooked).unwrap_or(0.0), 0.0);
    agent.wait_for_log("TLS plaintext hooked");
    agent.wait_for(&hooked, 1.0);
    let mut client = Fixture::python(
        "http_client.py",
        &[&format!("https://127.0.0.1:{tls_port}"), "requests"],
    );
    client.send("GET /late 25");
    client.command("", "done 25");
    agent.wait_for(
        &series(
            "agent_requests_total",
            &[
                ("service", "late-tls"),
                ("method", "GET"),
                ("endpoint", "/late"),
                ("status", "200"),
                ("auth_type", "none"),
            ],
        ),
        25.0,
    );
    agent.assert_nothing_lost();
}

#[test]
fn a_libssl_without_openssl_symbols_is_reported() {
    // A library named like OpenSSL that is not (zlib under that name).
    let dir = std::env::temp_dir().join(format!("loupe-fake-ssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("libssl.so.3");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libz.so.1", &fake).unwrap();
    let port = free_port();
    let mut server = Fixture::python("late_tls.py", &[&port.to_string()]);
    let agent = watch_tls(port, "fake-ssl", &[]);
    server.command(&format!("load {}", fake.display()), "loaded");
    let log = agent.wait_for_log("no SSL_read/SSL_write symbols");
    assert!(log.contains(&fake.display().to_string()), "{log}");
    let check = Command::new(loupe_tests::loupe_bin())
        .args(["check", "--pid", &server.pid().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains(&format!(
            "{}: no SSL_read/SSL_write symbols (stripped, or not OpenSSL)",
            fake.display()
        )),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
