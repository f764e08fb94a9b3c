//! HTTP/2 served without TLS (h2c with prior knowledge): Node's `http2`
//! server, answering Node's `http2` client (concurrent streams on one
//! connection, eight at a time, some reset by the client, header blocks
//! split over CONTINUATION frames, a header table that evicts all the
//! time), curl (a 5 MB answer) and h2load (100 concurrent streams per
//! connection). Every request counted by method, route template and
//! status; nothing unparsed. A connection open before loupe attached is
//! counted by what is certain. Root required.
use std::process::Command;

use loupe_tests::{Agent, Fixture, fixture, free_port, series, served, targets, watch_port};

const ITEMS: &str = "/items/{id}";

/// Node's `http2` server with the routes of `http_app.js`, on a free port.
fn node_h2c() -> (u16, Fixture) {
    let port = free_port();
    let script = fixture("http_app.js");
    let server = Fixture::start(
        "node",
        &[
            script.to_str().expect("UTF-8 path"),
            &port.to_string(),
            "h2c",
        ],
    );
    (port, server)
}

fn requests(service: &str, method: &str, endpoint: &str, status: &str) -> String {
    series(
        "agent_requests_total",
        &[
            ("service", service),
            ("method", method),
            ("endpoint", endpoint),
            ("status", status),
            ("auth_type", "none"),
        ],
    )
}

#[test]
fn concurrent_streams_on_one_connection_are_counted_exactly() {
    let (port, _server) = node_h2c();
    let agent = watch_port(port, "h2", &["--route", ITEMS]);
    let client = fixture("h2_client.js");
    let output = Command::new("node")
        .arg(&client)
        .args([port.to_string().as_str(), "37", "13", "7", "3", "4"])
        .output()
        .expect("node h2_client.js");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("done "), "{printed}");
    agent.wait_for(&requests("h2", "GET", ITEMS, "200"), 41.0);
    agent.wait_for(&requests("h2", "POST", "/items", "201"), 13.0);
    agent.wait_for(&requests("h2", "GET", "/missing", "404"), 7.0);
    let abandoned = series(
        "agent_requests_abandoned_total",
        &[("service", "h2"), ("method", "GET"), ("endpoint", "/slow")],
    );
    let scrape = agent.wait_for(&abandoned, 3.0);
    assert_eq!(
        scrape.total("agent_requests_total", "h2"),
        61.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", "h2"),
        0.0,
        "{}",
        scrape.text
    );
    assert!(
        !scrape.text.contains("secret-"),
        "no query string in a label"
    );
    agent.assert_nothing_lost();
}

#[test]
fn curl_with_prior_knowledge() {
    let (port, _server) = node_h2c();
    let agent = watch_port(port, "h2-curl", &["--route", ITEMS]);
    for i in 0..5 {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--http2-prior-knowledge",
                "--max-time",
                "5",
            ])
            .arg(format!("http://127.0.0.1:{port}/items/{i}"))
            .status()
            .expect("curl");
        assert!(status.success());
    }
    for path in ["/fail", "/big"] {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg("--http2-prior-knowledge")
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        assert!(output.status.success());
        if path == "/big" {
            assert_eq!(String::from_utf8_lossy(&output.stdout), "5000000");
        }
    }
    agent.wait_for(&requests("h2-curl", "GET", ITEMS, "200"), 5.0);
    agent.wait_for(&requests("h2-curl", "GET", "/big", "200"), 1.0);
    let scrape = agent.wait_for(&requests("h2-curl", "GET", "/fail", "500"), 1.0);
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", "h2-curl"),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

#[test]
fn h2load_with_a_hundred_concurrent_streams() {
    let (port, _server) = node_h2c();
    let agent = watch_port(port, "h2-load", &["--route", ITEMS]);
    let output = Command::new("h2load")
        .args(["-n", "1000", "-c", "2", "-m", "100"])
        .arg(format!("http://127.0.0.1:{port}/items/7"))
        .output()
        .expect("h2load (Debian's nghttp2-client)");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("1000 succeeded, 0 failed"),
        "h2load: {printed}"
    );
    let scrape = agent.wait_for(&requests("h2-load", "GET", ITEMS, "200"), 1000.0);
    assert_eq!(
        scrape.total("agent_requests_total", "h2-load"),
        1000.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", "h2-load"),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

#[test]
fn hypercorn_h2c_upgrade_and_prior_knowledge() {
    let port = free_port();
    let _server = served(
        &format!(
            "cd {} && python3 -m hypercorn http_app:app --bind 127.0.0.1:{port}",
            fixture("").display()
        ),
        port,
    );
    let port_arg = port.to_string();
    let agent = Agent::start(&[
        "--port",
        &port_arg,
        "--service",
        "hypercorn-h2c",
        "--route",
        "/items/{item_id}",
    ]);
    // The supervisor, its worker and multiprocessing's resource tracker.
    agent.wait_for(&targets("hypercorn-h2c"), 3.0);
    let base = format!("http://127.0.0.1:{port}");
    // `--http2` on plain HTTP: the first request asks for the upgrade
    // (`Upgrade: h2c`) and is answered in HTTP/2 after the 101; the others
    // are HTTP/2 streams on the same connection. Twice.
    for _ in 0..2 {
        let mut curl = Command::new("curl");
        curl.args(["-s", "--http2", "-w", "%{http_version} "]);
        for i in 0..5 {
            curl.arg(format!("{base}/items/{i}"))
                .args(["-o", "/dev/null"]);
        }
        curl.arg(format!("{base}/nope")).args(["-o", "/dev/null"]);
        let output = curl.output().expect("curl");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "2 ".repeat(6));
    }
    // With prior knowledge (curl's one URL per connection: it fails on a
    // second one).
    for path in ["/items/7", "/items/8"] {
        let output = Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version}",
            ])
            .arg(format!("{base}{path}"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "2");
    }
    let requests = |endpoint: &str, status: &str| {
        series(
            "agent_requests_total",
            &[
                ("service", "hypercorn-h2c"),
                ("method", "GET"),
                ("endpoint", endpoint),
                ("status", status),
                ("auth_type", "none"),
            ],
        )
    };
    agent.wait_for(&requests("/items/{item_id}", "200"), 12.0);
    let scrape = agent.wait_for(&requests("/nope", "404"), 2.0);
    assert_eq!(
        scrape.total("agent_requests_total", "hypercorn-h2c"),
        14.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", "hypercorn-h2c"),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

/// One connection, open before loupe attached: its header tables hold
/// entries loupe never saw. Node's encoder never indexes `:path`, so every
/// path is read; the 201 the server wrote before (and indexed) is unknown
/// when it refers to it again; the static table's 200 and 404 are read.
#[test]
fn a_connection_open_before_loupe_counts_what_is_certain() {
    let (port, _server) = node_h2c();
    let client = fixture("h2_joined.js");
    let mut client = Fixture::start(
        "node",
        &[client.to_str().expect("UTF-8 path"), &port.to_string()],
    );
    let agent = watch_port(port, "h2-joined", &["--route", ITEMS]);
    let done = client.command("go", "done ");
    assert_eq!(
        done.trim(),
        "done 200 200 200 200 200 201 201 201 404 404 404 404"
    );
    agent.wait_for(&requests("h2-joined", "GET", ITEMS, "200"), 5.0);
    agent.wait_for(&requests("h2-joined", "POST", "/items", "unknown"), 3.0);
    agent.wait_for(&requests("h2-joined", "GET", "/fresh", "404"), 4.0);
    let scrape = agent.scrape();
    assert_eq!(scrape.total("agent_requests_total", "h2-joined"), 12.0);
    let unparsed = scrape.matching("loupe_unparsed_connections_total{");
    assert!(unparsed.is_empty(), "{unparsed:?}");
    agent.assert_nothing_lost();
    client.command("close", "closed");
}
