//! Counts that do not depend on how a server cuts its bytes into syscalls:
//! a raw-socket server (`tests/fixtures/raw_http_server.py`) writes each
//! response in the layout its path names, and the last request of every
//! keep-alive connection, left idle, must be counted with its response's
//! last byte. Root required.
use loupe_tests::{Fixture, KeepAlive, free_port, require_root, series, watch_port};

/// Paths of the fixture, one syscall layout each.
const LAYOUTS: &[&str] = &[
    "/writev",      // Node.js: head + size, CRLF, body, CRLF, `0\r\n\r\n`
    "/sendmsg",     // the same five buffers through sendmsg
    "/many-iovecs", // the body one byte per buffer, over two writev calls
    "/split-end",   // `...0\r\n`, then `\r\n` in a later write
    "/trailers",    // the last chunk and a trailer, a line per write
    "/bytes",       // one byte per write, head and body
    "/pieces",      // a 300 KB Content-Length body in 7 KB writes
    "/sendfile",    // a 300 KB body through sendfile
    "/big-chunked", // two 3 KB chunks in one write, the end split in two
];
/// Requests per keep-alive connection.
const PER_CONNECTION: usize = 4;
const SERVICE: &str = "layouts";

fn requests(endpoint: &str) -> String {
    series(
        "agent_requests_total",
        &[
            ("service", SERVICE),
            ("method", "GET"),
            ("endpoint", endpoint),
            ("status", "200"),
            ("auth_type", "none"),
        ],
    )
}

#[test]
fn a_response_ends_with_its_last_byte_whatever_the_syscall_layout() {
    require_root();
    let port = free_port();
    let _server = Fixture::python("raw_http_server.py", &[&port.to_string()]);
    let agent = watch_port(port, SERVICE, &[]);
    // One keep-alive connection per layout, and one for the slow endpoint;
    // all stay open (idle) until the counts are checked, so that neither a
    // next request nor a close can end their last response.
    let mut open = Vec::new();
    for path in LAYOUTS.iter().chain(&["/slow"]) {
        let mut client = KeepAlive::connect(port);
        for _ in 0..PER_CONNECTION {
            assert_eq!(client.request("GET", path, ""), 200, "{path}");
        }
        open.push(client);
    }
    // An idle response would end only after 60 s without a write; the wait
    // is shorter than that.
    for path in LAYOUTS.iter().chain(&["/slow"]) {
        agent.wait_for(&requests(path), PER_CONNECTION as f64);
    }
    let scrape = agent.scrape();
    let timed = [
        ("service", SERVICE),
        ("method", "GET"),
        ("endpoint", "/slow"),
    ];
    let count = scrape
        .get(&series("agent_request_duration_seconds_count", &timed))
        .expect("slow count");
    let sum = scrape
        .get(&series("agent_request_duration_seconds_sum", &timed))
        .expect("slow sum");
    assert_eq!(count, PER_CONNECTION as f64);
    // The server sleeps 100 ms between reading a request and answering it.
    let mean = sum / count;
    assert!((0.1..0.105).contains(&mean), "slow mean {mean}");
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", SERVICE),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
    drop(open);
}

#[test]
fn node_chunked_answers_on_an_idle_keep_alive_connection_are_all_counted() {
    require_root();
    let port = free_port();
    let app = loupe_tests::fixture("http_app.js");
    let _server = Fixture::start("node", &[app.to_str().expect("UTF-8"), &port.to_string()]);
    let agent = watch_port(port, "node-chunked", &[]);
    let mut client = KeepAlive::connect(port);
    for _ in 0..PER_CONNECTION {
        assert_eq!(client.request("GET", "/slow-chunked", ""), 200);
    }
    let counted = series(
        "agent_requests_total",
        &[
            ("service", "node-chunked"),
            ("method", "GET"),
            ("endpoint", "/slow-chunked"),
            ("status", "200"),
            ("auth_type", "none"),
        ],
    );
    // The connection stays open and idle: the last answer must end by
    // itself.
    let scrape = agent.wait_for(&counted, PER_CONNECTION as f64);
    let timed = [
        ("service", "node-chunked"),
        ("method", "GET"),
        ("endpoint", "/slow-chunked"),
    ];
    let sum = scrape
        .get(&series("agent_request_duration_seconds_sum", &timed))
        .expect("duration sum");
    // Node waits 50 ms before answering; nothing stretches the last one.
    let mean = sum / PER_CONNECTION as f64;
    assert!((0.05..0.06).contains(&mean), "mean {mean}");
    agent.assert_nothing_lost();
    drop(client);
}
