//! gRPC served: Python's grpcio server and Go's grpc-go server (plaintext
//! HTTP/2, each with its own HTTP/2 and HPACK implementation) answering
//! grpcio's client: unary calls ending OK, NOT_FOUND and past their
//! deadline, server-streaming and bidi calls. Every call counted by type,
//! service, method and code, every message each way; the same calls in the
//! HTTP request families; nothing unparsed. Root required.
use std::process::Command;

use loupe_tests::{Fixture, Scrape, fixture, free_port, go_build, series, watch_port};

const SERVICE: &str = "loupe.test.Items";

fn handled(service: &str, kind: &str, method: &str, code: &str) -> String {
    series(
        "grpc_server_handled_total",
        &[
            ("service", service),
            ("grpc_type", kind),
            ("grpc_service", SERVICE),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

fn messages(service: &str, family: &str, kind: &str, method: &str) -> String {
    series(
        family,
        &[
            ("service", service),
            ("grpc_type", kind),
            ("grpc_service", SERVICE),
            ("grpc_method", method),
        ],
    )
}

fn value(scrape: &Scrape, series: &str) -> f64 {
    scrape
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing in\n{}", scrape.text))
}

#[test]
fn grpcio_calls_are_counted_by_type_method_code_and_messages() {
    let port = free_port();
    let server = Fixture::python("grpc_app.py", &[&port.to_string()]);
    calls_are_counted_by_type_method_code_and_messages(port, server, "grpc");
}

#[test]
fn grpc_go_calls_are_counted_by_type_method_code_and_messages() {
    let binary = go_build(&fixture("grpc_server.go"), "grpc-go-server");
    let port = free_port();
    let server = Fixture::start(binary.to_str().expect("UTF-8 path"), &[&port.to_string()]);
    calls_are_counted_by_type_method_code_and_messages(port, server, "grpc-go");
}

/// grpcio's client calls the server on `port` (answering as
/// `grpc_app.py` does), watched as `service`.
fn calls_are_counted_by_type_method_code_and_messages(port: u16, _server: Fixture, service: &str) {
    let agent = watch_port(port, service, &[]);
    // 7 Get OK, 3 NOT_FOUND, 2 past their deadline, 4 List of 6 messages,
    // 3 Chat of 6 messages each way.
    let output = Command::new("python3")
        .arg(fixture("grpc_client.py"))
        .args([port.to_string().as_str(), "7", "3", "2", "4", "3", "6"])
        .output()
        .expect("python3 grpc_client.py");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("done "), "{printed}");
    assert_eq!(printed.matches("DEADLINE_EXCEEDED").count(), 2, "{printed}");
    agent.wait_for(&handled(service, "unary", "Get", "OK"), 7.0);
    agent.wait_for(&handled(service, "unary", "Get", "NOT_FOUND"), 3.0);
    agent.wait_for(&handled(service, "server_stream", "List", "OK"), 4.0);
    agent.wait_for(&handled(service, "bidi_stream", "Chat", "OK"), 3.0);
    agent.wait_for_total("grpc_server_handled_total", service, 19.0);
    let scrape = agent.scrape();
    assert_eq!(
        scrape.total("grpc_server_handled_total", service),
        19.0,
        "{}",
        scrape.text
    );
    // A call past its deadline: the client resets its stream (CANCEL), or
    // the server answers DEADLINE_EXCEEDED first; two in all, either way.
    let late = ["CANCELLED", "DEADLINE_EXCEEDED"].map(|code| {
        scrape
            .get(&handled(service, "unary", "Get", code))
            .unwrap_or(0.0)
    });
    assert_eq!(late.iter().sum::<f64>(), 2.0, "{}", scrape.text);
    assert_eq!(
        scrape.total("grpc_server_started_total", service),
        19.0,
        "{}",
        scrape.text
    );
    let received = "grpc_server_msg_received_total";
    let sent = "grpc_server_msg_sent_total";
    assert_eq!(
        value(
            &scrape,
            &messages(service, received, "server_stream", "List")
        ),
        4.0
    );
    assert_eq!(
        value(&scrape, &messages(service, sent, "server_stream", "List")),
        24.0
    );
    assert_eq!(
        value(&scrape, &messages(service, received, "bidi_stream", "Chat")),
        18.0
    );
    assert_eq!(
        value(&scrape, &messages(service, sent, "bidi_stream", "Chat")),
        18.0
    );
    // Get: 12 requests of one message; 7 answers with one, NOT_FOUND and
    // the late ones none.
    assert_eq!(
        value(&scrape, &messages(service, received, "unary", "Get")),
        12.0
    );
    assert_eq!(
        value(&scrape, &messages(service, sent, "unary", "Get")),
        7.0
    );
    assert_eq!(
        scrape.total("loupe_unparsed_connections_total", service),
        0.0,
        "{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

#[test]
fn grpcio_calls_a_service_makes_are_counted_as_client_calls() {
    let server_port = free_port();
    let _server = Fixture::python("grpc_app.py", &[&server_port.to_string()]);
    let port = free_port();
    let _gateway = Fixture::python(
        "grpc_gateway.py",
        &[&port.to_string(), &server_port.to_string()],
    );
    let agent = watch_port(port, "caller", &[]);
    let output = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .arg(format!(
            "http://127.0.0.1:{port}/calls?gets=5&missing=2&lists=3&chats=2&items=4"
        ))
        .output()
        .expect("curl");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        printed, "done OK OK OK OK OK NOT_FOUND NOT_FOUND OK OK OK OK OK",
        "{printed}"
    );
    let client = |kind: &str, method: &str, code: &str| {
        series(
            "grpc_client_handled_total",
            &[
                ("service", "caller"),
                ("grpc_type", kind),
                ("grpc_service", SERVICE),
                ("grpc_method", method),
                ("grpc_code", code),
            ],
        )
    };
    agent.wait_for(&client("unary", "Get", "OK"), 5.0);
    agent.wait_for(&client("unary", "Get", "NOT_FOUND"), 2.0);
    agent.wait_for(&client("server_stream", "List", "OK"), 3.0);
    let scrape = agent.wait_for(&client("bidi_stream", "Chat", "OK"), 2.0);
    let sent = series(
        "grpc_client_msg_sent_total",
        &[
            ("service", "caller"),
            ("grpc_type", "bidi_stream"),
            ("grpc_service", SERVICE),
            ("grpc_method", "Chat"),
        ],
    );
    assert_eq!(value(&scrape, &sent), 8.0);
    let received = series(
        "grpc_client_msg_received_total",
        &[
            ("service", "caller"),
            ("grpc_type", "server_stream"),
            ("grpc_service", SERVICE),
            ("grpc_method", "List"),
        ],
    );
    assert_eq!(value(&scrape, &received), 12.0);
    assert_eq!(
        scrape.total("grpc_client_started_total", "caller"),
        12.0,
        "{}",
        scrape.text
    );
    // The same calls as HTTP calls, by the :authority the client sent.
    let host = format!("127.0.0.1:{server_port}");
    let calls = series(
        "http_client_requests_total",
        &[
            ("service", "caller"),
            ("host", host.as_str()),
            ("method", "POST"),
            ("status", "200"),
        ],
    );
    assert_eq!(value(&scrape, &calls), 12.0, "{}", scrape.text);
    agent.assert_nothing_lost();
}
