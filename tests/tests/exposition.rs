//! The HTTP endpoint: format, content type, health and readiness.
use loupe_tests::{
    Agent, free_port, http_get, http_server, promtool_check_metrics, requests, watch_port,
};

#[test]
fn metrics_pass_promtool_and_carry_the_right_content_type() {
    let (port, _server) = http_server();
    let agent = watch_port(port, "expo", &[]);
    requests(port, 3);
    agent.wait_for(
        "tcp_connections_opened_total{direction=\"inbound\",service=\"expo\"}",
        3.0,
    );
    let response = http_get(agent.port, "/metrics").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        response.headers
    );
    for name in [
        "loupe_build_info",
        "loupe_targets",
        "loupe_programs_attached",
        "loupe_events_total",
        "loupe_events_lost_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            response.body.contains(&format!("# HELP {name} ")),
            "{name} missing:\n{}",
            response.body
        );
    }
    let (passed, report) = promtool_check_metrics(&response.body);
    assert!(passed, "promtool: {report}");
}

#[test]
fn health_and_readiness() {
    let agent = Agent::start(&["--port", &free_port().to_string(), "--service", "idle"]);
    assert_eq!(http_get(agent.port, "/healthz").unwrap().status, 200);
    let ready = http_get(agent.port, "/readyz").unwrap();
    assert_eq!(ready.status, 200, "ready even with no target yet");
    assert_eq!(http_get(agent.port, "/nope").unwrap().status, 404);
    let scrape = agent.scrape();
    // The core tracepoints, then the syscalls through fentry/fexit, or
    // through tracepoints (the data syscalls' own, or one BTF tracepoint).
    use loupe_common::layout::{
        CONTROL_FUNCTIONS, CONTROL_TRACEPOINTS, DATA_FUNCTIONS, DATA_TRACEPOINTS, TRACEPOINTS,
    };
    let attached = scrape.get("loupe_programs_attached").unwrap_or(0.0) as usize;
    // Syscalls this architecture lacks (arm64: `dup2`) are not hooked.
    let arch = loupe_common::arch::by_name(std::env::consts::ARCH).expect("a supported arch");
    let functions = CONTROL_FUNCTIONS
        .iter()
        .chain(DATA_FUNCTIONS)
        .filter(|hook| arch.has_syscall(hook.syscall))
        .count();
    let control = CONTROL_TRACEPOINTS
        .iter()
        .filter(|tp| tp.syscall().is_none_or(|name| arch.has_syscall(name)))
        .count();
    let tracepoints = [1, DATA_TRACEPOINTS.len()].map(|data| control + data);
    assert!(
        [functions, tracepoints[0], tracepoints[1]]
            .iter()
            .any(|syscalls| attached == TRACEPOINTS.len() + syscalls),
        "{}",
        scrape.text
    );
}
