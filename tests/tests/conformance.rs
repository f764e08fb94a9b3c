//! HTTP/1.1 by the protocol's rules, whatever the syscall pattern: a
//! raw-socket server and a raw-socket client in one process
//! (`tests/fixtures/conformance.py`) play scripted connections byte for
//! byte (pipelining, 1xx, heads split at every byte, one byte per syscall,
//! 120 headers, chunked extensions and trailers, HEAD/204/304, HTTP/1.0,
//! close-delimited bodies, absolute and asterisk targets, a WebSocket
//! upgrade), and loupe, watching that process, must count every request
//! exactly on both ends: as served and as called. Root required.
use std::collections::BTreeMap;

use loupe_tests::{Fixture, Scrape, free_port, require_root, series, watch_port};

const SERVICE: &str = "conformance";
/// The `Host` header of every call (`host` label of the client side).
const HOST: &str = "conformance";

/// `(method, path, status) -> count`, as the fixture declares its cases.
type Expected = BTreeMap<(String, String, String), f64>;

fn play(fixture: &mut Fixture) -> Expected {
    fixture.send("run");
    let mut expected = Expected::new();
    loop {
        let line = fixture.expect("");
        if line == "done" {
            return expected;
        }
        let Some(rest) = line.strip_prefix("expect ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let [method, path, status, count] = fields[..] else {
            panic!("bad expect line {line:?}");
        };
        let key = (method.to_owned(), path.to_owned(), status.to_owned());
        expected.insert(key, count.parse().expect("count"));
    }
}

/// The series of `family` for the service, as `labels -> value`.
fn counted(scrape: &Scrape, family: &str) -> BTreeMap<String, f64> {
    let label = format!("service=\"{SERVICE}\"");
    scrape
        .matching(&format!("{family}{{"))
        .into_iter()
        .filter(|(k, _)| k.contains(&label))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Both hooks of the data syscalls this kernel allows, each with its own
/// program for `recvfrom` (whose peeks must not count).
#[test]
fn every_request_counted_exactly_on_both_ends_with_the_syscall_tracepoints() {
    conformance("tracepoints");
}

#[test]
fn every_request_counted_exactly_on_both_ends_with_the_sys_exit_hook() {
    conformance("sys-exit");
}

fn conformance(data_hook: &str) {
    require_root();
    let port = free_port();
    let mut fixture = Fixture::python("conformance.py", &[&port.to_string()]);
    let agent = watch_port(port, SERVICE, &["--data-hook", data_hook]);
    let expected = play(&mut fixture);
    let total: f64 = expected.values().sum();
    assert!(total > 60.0, "the cases make {total} requests");
    agent.wait_for_total("agent_requests_total", SERVICE, total);
    agent.wait_for_total("http_client_requests_total", SERVICE, total);
    let scrape = agent.scrape();

    // Served: by method, endpoint and status, and nothing else.
    let mut served = BTreeMap::new();
    let mut durations = BTreeMap::new();
    let mut calls = BTreeMap::new();
    for ((method, path, status), &count) in &expected {
        let labels = [
            ("service", SERVICE),
            ("method", method.as_str()),
            ("endpoint", path.as_str()),
            ("status", status.as_str()),
            ("auth_type", "none"),
        ];
        *served
            .entry(series("agent_requests_total", &labels))
            .or_insert(0.0) += count;
        let timed = [
            ("service", SERVICE),
            ("method", method.as_str()),
            ("endpoint", path.as_str()),
        ];
        *durations
            .entry(series("agent_request_duration_seconds_count", &timed))
            .or_insert(0.0) += count;
        let called = [
            ("service", SERVICE),
            ("host", HOST),
            ("method", method.as_str()),
            ("status", status.as_str()),
        ];
        *calls
            .entry(series("http_client_requests_total", &called))
            .or_insert(0.0) += count;
    }
    assert_eq!(counted(&scrape, "agent_requests_total"), served);
    assert_eq!(
        counted(&scrape, "agent_request_duration_seconds_count"),
        durations
    );
    assert_eq!(counted(&scrape, "http_client_requests_total"), calls);
    let call_durations = series(
        "http_client_request_duration_seconds_count",
        &[("service", SERVICE), ("host", HOST)],
    );
    assert_eq!(scrape.get(&call_durations), Some(total), "{call_durations}");
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", SERVICE),
        0.0,
        "{}",
        scrape.text
    );
    // The absolute-form target's query string stays out of every label.
    assert!(!scrape.text.contains("secret"), "{}", scrape.text);
    agent.assert_nothing_lost();
}
