//! The request mix every server of the runtime matrix answers
//! (`tests/tests/runtimes.rs`), and the exact counts it must produce.
//!
//! The servers share one contract (`tests/fixtures/runtimes/`):
//! - `GET /items/{id}`: 200 with JSON, 404 when the id starts with
//!   `missing`; `HEAD` the same without a body;
//! - `POST /items` with a JSON body: 201; `DELETE /items/{id}`: 204, no body;
//! - `GET /fail`: 500; `GET /large`: 200 with 250,000 bytes;
//! - `GET /slow`: 200 after 100 ms;
//! - `GET /stream`: 200, streamed: a first piece after 20 ms, the end after
//!   120 ms.
//!
//! Static servers (nginx, Apache) answer what their files and methods
//! allow; the expected counts come from the statuses the client got.
use std::collections::BTreeMap;

use crate::{Agent, KeepAlive, Scrape, one_shot, series};

/// The `--route` template the agent is given for the items.
pub const ITEMS: &str = "/items/{id}";

/// What a server is asked beyond `GET`/`HEAD` of items and `/large`.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// `POST`, `DELETE` and `/fail`.
    pub writes: bool,
    /// `/slow` (its mean duration is checked).
    pub slow: bool,
    /// `/stream` (first byte and duration are checked).
    pub stream: bool,
}

impl Features {
    pub const ALL: Self = Self {
        writes: true,
        slow: true,
        stream: true,
    };
    /// Servers whose framework has no streamed answer in the fixture.
    pub const NO_STREAM: Self = Self {
        writes: true,
        slow: true,
        stream: false,
    };
    /// Static servers: no handler to sleep or stream.
    pub const STATIC: Self = Self {
        writes: true,
        slow: false,
        stream: false,
    };
}

/// `(method, endpoint, status) -> requests`, from what the client got.
#[derive(Debug, Default)]
pub struct Expected {
    pub counts: BTreeMap<(String, String, u16), u64>,
    pub features: Option<Features>,
}

impl Expected {
    fn add(&mut self, method: &str, endpoint: &str, status: u16) {
        assert!(status >= 100, "{method} {endpoint}: no status");
        *self
            .counts
            .entry((method.to_owned(), endpoint.to_owned(), status))
            .or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Sends the mix to `port`; returns the expected counts and the keep-alive
/// connection, left idle after its last request (the caller keeps it open
/// until the counts are checked).
pub fn run(port: u16, features: Features) -> (Expected, KeepAlive) {
    let mut expected = Expected {
        features: Some(features),
        ..Expected::default()
    };
    let mut session = KeepAlive::connect(port);
    for id in ["1", "2", "3", "missing-1", "4"] {
        let status = session.request("GET", &format!("/items/{id}"), "");
        expected.add("GET", ITEMS, status);
    }
    let status = session.request("HEAD", "/items/2", "");
    expected.add("HEAD", ITEMS, status);
    for _ in 0..2 {
        let status = session.request("GET", "/large", "");
        expected.add("GET", "/large", status);
    }
    if features.writes {
        for n in 0..3 {
            let status = session.send("POST", "/items", "", &format!("{{\"name\": \"n{n}\"}}"));
            expected.add("POST", "/items", status);
        }
        for id in ["7", "8"] {
            let status = session.request("DELETE", &format!("/items/{id}"), "");
            expected.add("DELETE", ITEMS, status);
        }
        let status = session.request("GET", "/fail", "");
        expected.add("GET", "/fail", status);
    }
    if features.stream {
        for _ in 0..2 {
            let status = session.request("GET", "/stream", "");
            expected.add("GET", "/stream", status);
        }
    }
    for id in ["5", "6", "missing-2"] {
        let status = one_shot(port, "GET", &format!("/items/{id}"), None);
        expected.add("GET", ITEMS, status);
    }
    if features.slow {
        // Last on the session: the slow endpoint, then the connection idles.
        for _ in 0..3 {
            let status = session.request("GET", "/slow", "");
            expected.add("GET", "/slow", status);
        }
    } else {
        let status = session.request("GET", "/items/9", "");
        expected.add("GET", ITEMS, status);
    }
    (expected, session)
}

fn mean(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    let sum = scrape.get(&series(&format!("{family}_sum"), labels));
    let count = scrape.get(&series(&format!("{family}_count"), labels));
    match (sum, count) {
        (Some(sum), Some(count)) if count > 0.0 => sum / count,
        _ => panic!("no {family} for {labels:?}\n{}", scrape.text),
    }
}

/// Asserts the agent's counts for `service` equal `expected` exactly,
/// with the timings the mix's endpoints impose.
pub fn check(agent: &Agent, service: &str, expected: &Expected) {
    let total = agent.wait_for_total("agent_requests_total", service, expected.total() as f64);
    let scrape = agent.scrape();
    assert_eq!(
        total,
        expected.total() as f64,
        "{expected:?}\n{}",
        scrape.text
    );
    for ((method, endpoint, status), n) in &expected.counts {
        let key = series(
            "agent_requests_total",
            &[
                ("service", service),
                ("method", method),
                ("endpoint", endpoint),
                ("status", &status.to_string()),
                ("auth_type", "none"),
            ],
        );
        assert_eq!(scrape.get(&key), Some(*n as f64), "{key}\n{}", scrape.text);
    }
    let features = expected.features.unwrap_or(Features::STATIC);
    if features.slow {
        let slow = [
            ("service", service),
            ("method", "GET"),
            ("endpoint", "/slow"),
        ];
        let m = mean(&scrape, "agent_request_duration_seconds", &slow);
        assert!((0.0995..0.105).contains(&m), "/slow mean {m}");
    }
    if features.stream {
        let stream = [
            ("service", service),
            ("method", "GET"),
            ("endpoint", "/stream"),
        ];
        let first = mean(&scrape, "agent_response_first_byte_seconds", &stream);
        assert!((0.019..0.08).contains(&first), "/stream first byte {first}");
        let whole = mean(&scrape, "agent_request_duration_seconds", &stream);
        assert!((0.119..0.2).contains(&whole), "/stream duration {whole}");
    }
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", service),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

/// `(method, status) -> calls` of `expected`, whatever the endpoint.
pub fn by_method_and_status(expected: &Expected) -> BTreeMap<(String, u16), u64> {
    let mut out = BTreeMap::new();
    for ((method, _, status), n) in &expected.counts {
        *out.entry((method.clone(), *status)).or_default() += n;
    }
    out
}

/// Asserts the HTTP calls `service` made to `host` equal `expected`
/// (`(method, status) -> calls`) exactly.
pub fn check_calls(
    agent: &Agent,
    service: &str,
    host: &str,
    expected: &BTreeMap<(String, u16), u64>,
) {
    let total: u64 = expected.values().sum();
    let counted = agent.wait_for_total("http_client_requests_total", service, total as f64);
    let scrape = agent.scrape();
    assert_eq!(counted, total as f64, "{expected:?}\n{}", scrape.text);
    for ((method, status), n) in expected {
        let key = series(
            "http_client_requests_total",
            &[
                ("service", service),
                ("host", host),
                ("method", method),
                ("status", &status.to_string()),
            ],
        );
        assert_eq!(scrape.get(&key), Some(*n as f64), "{key}\n{}", scrape.text);
    }
    agent.assert_nothing_lost();
}
