//! Redis commands measured from the wire of the client's connections:
//! redis-py sync and asyncio, plain, pipelined and transactional, against
//! the Redis server `cargo xtask test` starts. Root required.
use loupe_tests::{Agent, Fixture, Scrape, established, series, targets};

const PORT: &str = "6379";

fn operations(scrape: &Scrape, family: &str, service: &str, operation: &str) -> f64 {
    scrape
        .get(&series(
            family,
            &[("service", service), ("operation", operation)],
        ))
        .unwrap_or(0.0)
}

#[test]
fn redis_py_commands_pipelines_and_transactions_are_counted_exactly() {
    // Its first connections open (and greet the server) before loupe starts.
    let mut client = Fixture::python("redis_client.py", &[PORT]);
    let pid = client.pid().to_string();
    let svc = "redis-client";
    let agent = Agent::start(&["--pid", &pid, "--service", svc]);
    agent.wait_for(&targets(svc), 1.0);
    for session in ["sync", "pipeline", "async", "pubsub", "garbage"] {
        client.command(session, &format!("done {session}"));
    }
    // Sent by the scripted sessions (redis-py sends INCR as INCRBY).
    let expected = [
        ("set", 2 + 5 + 1),
        ("get", 1 + 1 + 1),
        ("incrby", 3 + 1 + 2),
        ("del", 1),
        ("mget", 1),
        ("multi", 1 + 1),
        ("exec", 1 + 1),
        ("expire", 1),
        ("subscribe", 1),
        ("publish", 1),
    ];
    // garbage: a SET of 200 kB and a GET whose connection died before the
    // reply ended (an error); random bytes; then a GET and a DEL on the
    // first connection, counted as usual.
    let expected = expected.map(|(op, n)| match op {
        "set" => (op, n + 1),
        "get" => (op, n + 2),
        "del" => (op, n + 1),
        _ => (op, n),
    });
    let family = "redis_operations_total";
    agent.wait_for(
        &series(family, &[("service", svc), ("operation", "del")]),
        2.0,
    );
    agent.assert_nothing_lost();
    let scrape = agent.scrape();
    for (operation, count) in expected {
        assert_eq!(
            operations(&scrape, family, svc, operation),
            f64::from(count),
            "{operation}\n{}",
            scrape.text
        );
        assert_eq!(
            operations(
                &scrape,
                "redis_operation_duration_seconds_count",
                svc,
                operation
            ),
            f64::from(count),
            "{operation}"
        );
    }
    let errors = "redis_operation_errors_total";
    assert_eq!(
        operations(&scrape, errors, svc, "incrby"),
        1.0,
        "INCR of text"
    );
    assert_eq!(operations(&scrape, errors, svc, "set"), 0.0);
    // Every command the connections carried is accounted for: the scripted
    // ones, and the greetings of the connections opened meanwhile.
    let greetings: f64 = ["client", "hello"]
        .iter()
        .map(|op| operations(&scrape, family, svc, op))
        .sum();
    let total = scrape.total(family, svc);
    let scripted: u32 = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(total, f64::from(scripted) + greetings, "{}", scrape.text);
    assert_eq!(operations(&scrape, family, svc, "other"), 0.0);
    // The connections still open: the two opened before loupe, and the
    // pipelines' pooled ones (the subscriber's was closed).
    let open = established(client.pid(), 6379);
    assert!(open >= 2.0, "{open}");
    agent.wait_for(
        &series("redis_connections_active", &[("service", svc)]),
        open,
    );
}
