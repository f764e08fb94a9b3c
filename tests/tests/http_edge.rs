//! Request metrics under adversity: many distinct paths, garbage, half
//! requests, slow clients, other protocols; and the optional features
//! (excluded paths, pseudonymised principals). Root required.
use std::{io::Write, net::TcpStream, process::Command, time::Duration};

use loupe_tests::{Agent, Fixture, KeepAlive, series, targets};

fn hyper_server() -> (u16, Fixture) {
    loupe_tests::http_app(env!("CARGO_BIN_EXE_http_app"))
}

fn watch(port: u16, service: &str, extra: &[&str]) -> Agent {
    let port_arg = port.to_string();
    let mut args = vec!["--port", &port_arg, "--service", service];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    agent.wait_for(&targets(service), 1.0);
    agent
}

fn requests_total(service: &str, endpoint: &str, status: &str) -> String {
    series(
        "agent_requests_total",
        &[
            ("service", service),
            ("method", "GET"),
            ("endpoint", endpoint),
            ("status", status),
            ("auth_type", "none"),
        ],
    )
}

/// A path segment of lowercase letters, which the heuristic keeps.
fn word(mut n: u64) -> String {
    (0..8)
        .map(|_| {
            let c = (b'a' + (n % 26) as u8) as char;
            n /= 26;
            c
        })
        .collect()
}

#[test]
fn ten_thousand_distinct_paths_stay_within_the_endpoint_budget() {
    let (port, _server) = hyper_server();
    let agent = watch(port, "many-paths", &[]);
    let mut client = KeepAlive::connect(port);
    for i in 0..10_000u64 {
        let path = format!("/r/{}", word(i.wrapping_mul(2_654_435_761) + i));
        assert_eq!(client.request("GET", &path, ""), 404);
    }
    let overflow = series(
        "loupe_endpoint_overflow_total",
        &[("service", "many-paths")],
    );
    // The budget is 100 distinct endpoints: 100 paths have their own series.
    agent.wait_for(&overflow, 9_900.0);
    let scrape = agent.wait_for(&requests_total("many-paths", "__other__", "404"), 9_900.0);
    agent.assert_nothing_lost();
    let endpoints = scrape
        .matching("agent_requests_total{")
        .into_iter()
        .filter(|(k, _)| k.contains("service=\"many-paths\"") && !k.contains("__other__"))
        .collect::<Vec<_>>();
    assert_eq!(endpoints.len(), 100, "{endpoints:?}");
    assert!(endpoints.iter().all(|(_, v)| *v == 1.0));
}

#[test]
fn garbage_half_requests_and_slow_clients_do_not_disturb_counting() {
    let (port, _server) = hyper_server();
    let agent = watch(port, "tough", &[]);
    let addr = ("127.0.0.1", port);
    // Garbage, then a half request left open, then a slowloris client.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(b"\x00\xff\x13garbage\r\n\r\n\x7f")
        .unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /items/1 HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    let slow_thread = std::thread::spawn(move || {
        for byte in
            b"GET /items/2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n"
        {
            if slow.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut client = KeepAlive::connect(port);
    for i in 0..50 {
        assert_eq!(client.request("GET", &format!("/items/{i}"), ""), 200);
    }
    slow_thread.join().unwrap();
    agent.wait_for(&requests_total("tough", "/items/{id}", "200"), 51.0);
    let unparsed = series(
        "loupe_unparsed_connections_total",
        &[("service", "tough"), ("reason", "unknown_protocol")],
    );
    agent.wait_for(&unparsed, 1.0);
    drop((garbage, half));
    // Still serving, memory bounded.
    let scrape = agent.scrape();
    let rss = scrape.get("process_resident_memory_bytes").unwrap();
    assert!(rss < 150e6, "RSS {rss}");
    assert_eq!(
        loupe_tests::http_get(agent.port, "/healthz")
            .unwrap()
            .status,
        200
    );
    agent.assert_nothing_lost();
}

#[test]
fn http2_is_counted_as_unparsed() {
    let (port, _server) = hyper_server();
    let agent = watch(port, "h2", &[]);
    // hyper here speaks HTTP/1 only: curl's HTTP/2 attempt fails, which is fine.
    let _ = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "--max-time",
            "2",
        ])
        .arg(format!("http://127.0.0.1:{port}/items/1"))
        .status();
    let unparsed = series(
        "loupe_unparsed_connections_total",
        &[("service", "h2"), ("reason", "http2")],
    );
    agent.wait_for(&unparsed, 1.0);
}

#[test]
fn excluded_paths_are_not_counted() {
    let (port, _server) = hyper_server();
    let agent = watch(port, "excl", &["--exclude-path", "/fail"]);
    let mut client = KeepAlive::connect(port);
    for _ in 0..5 {
        client.request("GET", "/fail", "");
        client.request("GET", "/items/1", "");
    }
    agent.wait_for(&requests_total("excl", "/items/{id}", "200"), 5.0);
    let scrape = agent.scrape();
    assert_eq!(
        scrape.get(&requests_total("excl", "/fail", "500")),
        None,
        "{}",
        scrape.text
    );
}

#[test]
fn principals_are_pseudonymised_with_the_configured_secret() {
    let (port, _server) = hyper_server();
    let secret = "test-secret-0123456789";
    let agent = loupe_tests::watch_with_principals(port, "who", secret);
    // {"sub":"user-42"}
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl";
    let mut client = KeepAlive::connect(port);
    for _ in 0..3 {
        client.request(
            "GET",
            "/items/1",
            &format!("Authorization: Bearer {jwt}\r\n"),
        );
    }
    client.request("GET", "/items/1", "X-API-Key: sk-live-abc\r\n");
    let hmac = |identity: &str| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest()[:8])",
                secret,
                identity,
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let by = |auth: &str, principal: &str| {
        series(
            "agent_requests_by_principal_total",
            &[
                ("service", "who"),
                ("auth_type", auth),
                ("principal", principal),
            ],
        )
    };
    agent.wait_for(&by("jwt", &hmac("user-42")), 3.0);
    let scrape = agent.wait_for(&by("api_key", &hmac("sk-live-abc")), 1.0);
    assert!(!scrape.text.contains("user-42") && !scrape.text.contains("sk-live"));
    assert!(!agent.log().contains(secret), "the secret is never logged");
}
