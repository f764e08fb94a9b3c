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

/// `(role, method, path, status) -> count`, as the fixture declares its
/// cases; role: `served`, `called` or `abandoned`.
type Expected = BTreeMap<[String; 4], f64>;

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
        let [role, method, path, status, count] = fields[..] else {
            panic!("bad expect line {line:?}");
        };
        let key = [role, method, path, status].map(str::to_owned);
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
    let role_total = |role: &str| -> f64 {
        expected
            .iter()
            .filter(|(key, _)| key[0] == role)
            .map(|(_, count)| count)
            .sum()
    };
    let (answered, called) = (role_total("served"), role_total("called"));
    assert!(answered > 60.0, "the cases make {answered} requests");
    agent.wait_for_total("agent_requests_total", SERVICE, answered);
    agent.wait_for_total("http_client_requests_total", SERVICE, called);
    agent.wait_for_total(
        "agent_requests_abandoned_total",
        SERVICE,
        role_total("abandoned"),
    );
    let scrape = agent.scrape();

    // By method, endpoint and status, and nothing else.
    let mut want: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    for ([role, method, path, status], &count) in &expected {
        let (method, path) = (method.as_str(), path.as_str());
        let mut add = |family, labels: &[(&str, &str)]| {
            *want
                .entry(family)
                .or_default()
                .entry(series(family, labels))
                .or_insert(0.0) += count;
        };
        let endpoint = [("service", SERVICE), ("method", method), ("endpoint", path)];
        match role.as_str() {
            "served" => {
                let mut labels = endpoint.to_vec();
                labels.extend([("status", status.as_str()), ("auth_type", "none")]);
                add("agent_requests_total", &labels);
                add("agent_request_duration_seconds_count", &endpoint);
            }
            "called" => add(
                "http_client_requests_total",
                &[
                    ("service", SERVICE),
                    ("host", HOST),
                    ("method", method),
                    ("status", status.as_str()),
                ],
            ),
            "abandoned" => add("agent_requests_abandoned_total", &endpoint),
            other => panic!("role {other}"),
        }
    }
    for (family, series) in &want {
        assert_eq!(&counted(&scrape, family), series, "{family}");
    }
    let call_durations = series(
        "http_client_request_duration_seconds_count",
        &[("service", SERVICE), ("host", HOST)],
    );
    assert_eq!(
        scrape.get(&call_durations),
        Some(called),
        "{call_durations}"
    );
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
