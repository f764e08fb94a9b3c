//! The periodic collectors in collector-only mode (`loupe collect`, no
//! eBPF) against a Redis server of the test's own (password-protected, so
//! that the secret's handling is tested; stopped and restarted mid-run).
use std::{fs, process::Command};

use loupe_tests::{Agent, Fixture, free_port, series, served};

const PASSWORD: &str = "s3cr3t-collector-pass";

fn redis_server(port: u16) -> Fixture {
    served(
        &format!(
            "exec redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --requirepass {PASSWORD} --loglevel warning"
        ),
        port,
    )
}

fn redis_cli(port: u16, args: &[&str]) {
    let status = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", PASSWORD, "--no-auth-warning"])
        .args(args)
        .status()
        .expect("redis-cli");
    assert!(status.success());
}

#[test]
fn redis_info_is_exported_and_outages_are_survived() {
    let port = free_port();
    let server = redis_server(port);
    // Database 3: five keys, two of them expiring.
    redis_cli(port, &["-n", "3", "MSET", "a", "1", "b", "2", "c", "3"]);
    redis_cli(port, &["-n", "3", "SET", "d", "4", "EX", "600"]);
    redis_cli(port, &["-n", "3", "SET", "e", "5", "EX", "600"]);
    let dir = std::env::temp_dir().join(format!("loupe-collect-{port}"));
    fs::create_dir_all(&dir).unwrap();
    // The connection string as a mounted Secret would hold it.
    let secret = dir.join("redis-url");
    fs::write(&secret, format!("redis://:{PASSWORD}@127.0.0.1:{port}/\n")).unwrap();
    let config = dir.join("loupe.toml");
    fs::write(
        &config,
        format!(
            "[collectors]\ninterval = \"500ms\"\ntimeout = \"1s\"\n\
             [collectors.redis]\nurl_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let agent = Agent::collect(&["--config", config.to_str().unwrap()], &[]);
    let up = series("loupe_collector_up", &[("collector", "redis")]);
    agent.wait_for(&up, 1.0);
    agent.wait_for(&series("redis_server_keyspace_keys", &[("db", "db3")]), 5.0);
    let scrape = agent.wait_for(
        &series("redis_server_keyspace_expires", &[("db", "db3")]),
        2.0,
    );
    assert!(scrape.get("redis_server_connected_clients").unwrap() >= 1.0);
    assert!(
        scrape
            .get(&series("redis_server_commands_total", &[("cmd", "mset")]))
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        scrape.get("loupe_programs_attached"),
        Some(0.0),
        "no eBPF here"
    );
    assert!(!agent.log().contains("probes attached"));

    // Redis goes away: the collector says so, /metrics keeps answering.
    server.kill();
    agent.wait_for(&up, 0.0);
    let errors = series("loupe_collector_errors_total", &[("collector", "redis")]);
    agent.wait_for_at_least(&errors, 1.0);
    // And comes back on the same port: the collector recovers by itself.
    let _server = redis_server(port);
    agent.wait_for(&up, 1.0);
    agent.wait_for(&series("redis_server_keyspace_keys", &[("db", "db3")]), 0.0);
    let log = agent.log();
    assert_eq!(log.matches("collector failed").count(), 1, "{log}");
    assert_eq!(log.matches("collector is back up").count(), 1, "{log}");
    let text = agent.scrape().text;
    assert!(!log.contains(PASSWORD) && !text.contains(PASSWORD));
    let _ = fs::remove_dir_all(&dir);
}
