//! HTTPS served by the process itself, seen in plaintext through uprobes on
//! OpenSSL: uvicorn (CPython's `ssl` module, `libssl.so.3`, memory BIOs)
//! and Node.js (OpenSSL linked into the executable), with `[http] tls =
//! true`. Clients: Python requests and httpx, not tracked. Root required:
//! `cargo xtask test`.
use loupe_tests::{
    Agent, Fixture, fixture, free_port, series, served,
    tls::{Certificate, tls_config},
    watch_port,
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
    let config = tls_config(service);
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(extra);
    watch_port(port, service, &args)
}

/// Sends the mix over HTTPS with `library` and checks every count: exact,
/// no other label set, and the ciphertext on the socket neither counted
/// again nor reported as unparsed.
fn check_mix(agent: &Agent, service: &str, port: u16, library: &str) {
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
    let unparsed = scrape.matching("loupe_unparsed_connections_total{");
    assert!(unparsed.is_empty(), "{unparsed:?}");
    // Counted at the agent's upkeep (every 5 s).
    agent.wait_for(
        &series("loupe_tls_hooked_processes", &[("service", service)]),
        1.0,
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
    let check = std::process::Command::new(loupe_tests::loupe_bin())
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
