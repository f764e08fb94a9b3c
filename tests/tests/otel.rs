//! The OpenTelemetry names (`[export] conventions = ["loupe", "otel"]`)
//! count what loupe's own names count: the FastAPI agent service (its
//! routes known from its OpenAPI document), backed by the real PostgreSQL
//! and Redis, under the scripted session. Served requests by method, route
//! and status, database operations by system and operation, Redis
//! commands, and the service's HTTP calls are compared series by series
//! with loupe's families, which the other tests check against their
//! ground truth. (Model calls and MCP requests are checked under both
//! names in calls.rs and mcp.rs.) Root required: `cargo xtask test`.
use std::collections::BTreeMap;

use loupe_tests::{
    Scrape,
    agent_service::{agent_service, scenario},
    free_port, scratch_file, series, watch_port,
};

/// The value of label `name` in a series key (empty if it has none).
fn label<'k>(key: &'k str, name: &str) -> &'k str {
    let Some(start) = [format!("{{{name}=\""), format!(",{name}=\"")]
        .iter()
        .find_map(|pair| key.find(pair.as_str()).map(|i| i + pair.len()))
    else {
        return "";
    };
    let rest = &key[start..];
    &rest[..rest.find('"').unwrap_or(rest.len())]
}

/// `family`'s series of `service` summed by the values of `by`.
fn sum_by(scrape: &Scrape, family: &str, service: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut sums = BTreeMap::new();
    for (key, n) in scrape.matching(&format!("{family}{{")) {
        if label(key, "service") == service {
            let values = by.iter().map(|name| label(key, name).to_owned()).collect();
            *sums.entry(values).or_insert(0.0) += n;
        }
    }
    sums
}

#[test]
fn the_opentelemetry_names_count_what_loupe_counts() {
    loupe_tests::require_root();
    let service = "otel-api";
    let port = free_port();
    let _service = agent_service(port);
    let config = scratch_file("otel.toml");
    std::fs::write(&config, "[export]\nconventions = [\"loupe\", \"otel\"]\n").expect("write");
    let agent = watch_port(port, service, &["--config", &config.display().to_string()]);
    // Every path of the session has a route from the OpenAPI document.
    agent.wait_for_at_least(
        &series("loupe_route_templates", &[("service", service)]),
        5.0,
    );
    let sent = scenario(port);
    agent.wait_for_total("agent_requests_total", service, sent);
    let scrape = agent.scrape();

    // Served: by method, route and status, exactly loupe's, every route
    // known; over plain HTTP/1.1.
    let served = sum_by(
        &scrape,
        "agent_requests_total",
        service,
        &["method", "endpoint", "status"],
    );
    let otel = [
        "http_request_method",
        "http_route",
        "http_response_status_code",
    ];
    let named = sum_by(
        &scrape,
        "http_server_request_duration_seconds_count",
        service,
        &otel,
    );
    assert_eq!(named, served, "{}", scrape.text);
    assert_eq!(named.values().sum::<f64>(), sent);
    let how = ["url_scheme", "network_protocol_version"];
    let how = sum_by(
        &scrape,
        "http_server_request_duration_seconds_count",
        service,
        &how,
    );
    let plain = BTreeMap::from([(vec!["http".to_owned(), "1.1".to_owned()], sent)]);
    assert_eq!(how, plain);

    // Statements and Redis commands: by system and operation.
    let mut loupe_db = BTreeMap::new();
    for (key, n) in sum_by(
        &scrape,
        "db_queries_total",
        service,
        &["db_system", "query_type"],
    ) {
        let operation = match key[1].as_str() {
            "other" | "unknown" => String::new(),
            known => known.to_ascii_uppercase(),
        };
        *loupe_db
            .entry(vec![key[0].clone(), operation])
            .or_insert(0.0) += n;
    }
    for (key, n) in sum_by(&scrape, "redis_operations_total", service, &["operation"]) {
        let operation = key[0].to_ascii_uppercase();
        *loupe_db
            .entry(vec!["redis".to_owned(), operation])
            .or_insert(0.0) += n;
    }
    let by = ["db_system_name", "db_operation_name"];
    let named_db = sum_by(
        &scrape,
        "db_client_operation_duration_seconds_count",
        service,
        &by,
    );
    assert!(
        named_db.len() >= 3,
        "statements and commands ran: {named_db:?}"
    );
    assert_eq!(named_db, loupe_db, "{}", scrape.text);

    // The service's HTTP calls (if any) under both label sets at once.
    let calls = scrape.total("http_client_requests_total", service);
    let timed = scrape.total("http_client_request_duration_seconds_count", service);
    assert_eq!(calls, timed);
    agent.assert_nothing_lost();
}
