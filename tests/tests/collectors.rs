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

/// The business gauges from seeded tables, and a database without them.
fn business_gauges(kind: &str, target: &str, url: &str) {
    let prefix = format!("t{}_", std::process::id());
    Fixture::python("business_tables.py", &[kind, target, &prefix]).kill();
    let dir = std::env::temp_dir().join(format!("loupe-business-{kind}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("loupe.toml");
    fs::write(
        &config,
        format!(
            "[collectors]\ninterval = \"500ms\"\ntimeout = \"5s\"\n\
             [collectors.database]\nurl_env = \"LOUPE_TEST_DB\"\n\
             users_table = \"{prefix}users\"\napi_keys_table = \"{prefix}api_keys\"\n\
             sessions_table = \"{prefix}sessions\"\n"
        ),
    )
    .unwrap();
    let agent = Agent::collect(
        &["--config", config.to_str().unwrap()],
        &[("LOUPE_TEST_DB", url)],
    );
    agent.wait_for("users_total", 3.0);
    agent.wait_for("api_keys_active", 2.0);
    agent.wait_for("sessions_active", 3.0);
    agent.wait_for(
        &series("loupe_collector_up", &[("collector", "database")]),
        1.0,
    );
    drop(agent);

    // The default table names do not exist in this database: the collector
    // stays up, the gauges are absent, the query status says why.
    fs::write(
        &config,
        "[collectors]\ninterval = \"500ms\"\n[collectors.database]\nurl_env = \"LOUPE_TEST_DB\"\n\
         users_table = \"loupe_no_such_users\"\napi_keys_table = \"loupe_no_such_keys\"\n\
         sessions_table = \"loupe_no_such_sessions\"\n",
    )
    .unwrap();
    let agent = Agent::collect(
        &["--config", config.to_str().unwrap()],
        &[("LOUPE_TEST_DB", url)],
    );
    let query = |name| {
        series(
            "loupe_collector_query_success",
            &[("collector", "database"), ("query", name)],
        )
    };
    // Up is set after a run, whose queries set their status first.
    let scrape = agent.wait_for(
        &series("loupe_collector_up", &[("collector", "database")]),
        1.0,
    );
    for name in ["users_total", "api_keys_active", "sessions_active"] {
        assert_eq!(
            scrape.get(&query(name)),
            Some(0.0),
            "{name}\n{}",
            scrape.text
        );
        assert_eq!(scrape.get(name), None, "{name} must be absent");
    }
    let log = agent.log();
    assert_eq!(log.matches("business gauge skipped").count(), 3, "{log}");
    assert!(
        !log.contains("loupe_demo:loupe_demo"),
        "no password in the log"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn business_gauges_from_postgresql() {
    let url = std::env::var("LOUPE_TEST_DATABASE_URL")
        .expect("LOUPE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`");
    business_gauges("postgres", &url, &url);
}

#[test]
fn business_gauges_from_mariadb() {
    let url = std::env::var("LOUPE_TEST_MARIADB_URL")
        .expect("LOUPE_TEST_MARIADB_URL is not set: run the tests with `cargo xtask test`");
    // mysql://user:password@host:port/database
    let rest = url.strip_prefix("mysql://").unwrap();
    let (credentials, place) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let (address, database) = place.split_once('/').unwrap();
    let (host, port) = address.split_once(':').unwrap();
    business_gauges(
        "mariadb",
        &format!("{host},{port},{user},{password},{database}"),
        &url,
    );
}

#[test]
fn business_gauges_from_sqlite() {
    let file = std::env::temp_dir().join(format!("loupe-business-{}.sqlite3", std::process::id()));
    let _ = fs::remove_file(&file);
    let path = file.to_str().unwrap();
    business_gauges("sqlite", path, &format!("sqlite://{path}"));
    let _ = fs::remove_file(&file);
}
