//! The periodic collectors in collector-only mode (`loupe collect`, no
//! eBPF) against a Redis server of the test's own (password-protected, so
//! that the secret's handling is tested; stopped and restarted mid-run).
use std::{fs, process::Command};

use loupe_tests::{Agent, Fixture, free_port, redis_server, series};

const PASSWORD: &str = "s3cr3t-collector-pass";

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
    let server = redis_server(port, &format!("--requirepass {PASSWORD}"));
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
    let _server = redis_server(port, &format!("--requirepass {PASSWORD}"));
    agent.wait_for(&up, 1.0);
    agent.wait_for(&series("redis_server_keyspace_keys", &[("db", "db3")]), 0.0);
    let log = agent.log();
    assert_eq!(log.matches("collector failed").count(), 1, "{log}");
    assert_eq!(log.matches("collector is back up").count(), 1, "{log}");
    let text = agent.scrape().text;
    assert!(!log.contains(PASSWORD) && !text.contains(PASSWORD));
    let _ = fs::remove_dir_all(&dir);
}

/// Custom queries over the seeded tables: a labelled gauge, a counter, and
/// one refused for returning more rows than its `max_series`.
fn custom_queries(prefix: &str) -> String {
    format!(
        "[[collectors.database.queries]]\nname = \"loupe_test_api_keys\"\n\
         help = \"API keys by state.\"\nlabels = [\"state\"]\n\
         query = \"SELECT CASE WHEN is_active THEN 'active' ELSE 'inactive' END AS state, \
         COUNT(*) AS value FROM {prefix}api_keys GROUP BY 1\"\n\
         [[collectors.database.queries]]\nname = \"loupe_test_users_created_total\"\n\
         type = \"counter\"\nvalue = \"n\"\nquery = \"SELECT COUNT(*) AS n FROM {prefix}users\"\n\
         [[collectors.database.queries]]\nname = \"loupe_test_too_many\"\nmax_series = 2\n\
         query = \"SELECT id AS value FROM {prefix}api_keys\"\n"
    )
}

fn query_success(name: &str) -> String {
    series(
        "loupe_collector_query_success",
        &[("collector", "database"), ("query", name)],
    )
}

/// Runs `loupe collect` with `config` (TOML) and the database URL in
/// `$LOUPE_TEST_DB`.
fn collect(dir: &std::path::Path, config: &str, url: &str) -> Agent {
    let path = dir.join("loupe.toml");
    fs::write(&path, config).unwrap();
    Agent::collect(
        &["--config", path.to_str().unwrap()],
        &[("LOUPE_TEST_DB", url)],
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loupe-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The business gauges and custom queries from seeded tables, and a
/// database without the tables.
fn business_gauges(kind: &str, target: &str, url: &str) {
    let prefix = format!("t{}_", std::process::id());
    Fixture::python("business_tables.py", &[kind, target, &prefix]).kill();
    let dir = scratch(&format!("business-{kind}"));
    let agent = collect(
        &dir,
        &format!(
            "[collectors]\ninterval = \"500ms\"\ntimeout = \"5s\"\n\
             [collectors.database]\nurl_env = \"LOUPE_TEST_DB\"\n\
             users_table = \"{prefix}users\"\napi_keys_table = \"{prefix}api_keys\"\n\
             sessions_table = \"{prefix}sessions\"\n{}",
            custom_queries(&prefix)
        ),
        url,
    );
    agent.wait_for("users_total", 3.0);
    agent.wait_for("api_keys_active", 2.0);
    agent.wait_for("sessions_active", 3.0);
    let scrape = agent.wait_for(
        &series("loupe_collector_up", &[("collector", "database")]),
        1.0,
    );
    let keys = |state| series("loupe_test_api_keys", &[("state", state)]);
    assert_eq!(scrape.get(&keys("active")), Some(3.0), "{}", scrape.text);
    assert_eq!(scrape.get(&keys("inactive")), Some(2.0));
    assert!(
        scrape
            .text
            .contains("# HELP loupe_test_api_keys API keys by state.\n")
    );
    assert!(
        scrape.text.contains(
            "# TYPE loupe_test_users_created_total counter\nloupe_test_users_created_total 3\n"
        ),
        "{}",
        scrape.text
    );
    assert_eq!(scrape.get(&query_success("loupe_test_api_keys")), Some(1.0));
    assert_eq!(scrape.get(&query_success("loupe_test_too_many")), Some(0.0));
    assert!(
        !scrape.text.contains("loupe_test_too_many{")
            && scrape.get("loupe_test_too_many").is_none()
    );
    assert!(
        agent.log().contains("more than 2 rows (max_series)"),
        "{}",
        agent.log()
    );
    drop(agent);

    // The default table names do not exist in this database: the collector
    // stays up, the gauges are absent, the query status says why.
    let agent = collect(
        &dir,
        "[collectors]\ninterval = \"500ms\"\n[collectors.database]\nurl_env = \"LOUPE_TEST_DB\"\n\
         users_table = \"loupe_no_such_users\"\napi_keys_table = \"loupe_no_such_keys\"\n\
         sessions_table = \"loupe_no_such_sessions\"\n",
        url,
    );
    // Up is set after a run, whose queries set their status first.
    let scrape = agent.wait_for(
        &series("loupe_collector_up", &[("collector", "database")]),
        1.0,
    );
    for name in ["users_total", "api_keys_active", "sessions_active"] {
        assert_eq!(
            scrape.get(&query_success(name)),
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
    Fixture::python("business_tables.py", &[kind, target, &prefix, "drop"]).kill();
    let _ = fs::remove_dir_all(&dir);
}

/// `db_server_connections` counts the fixture's connections by state;
/// returns the agent's log.
fn server_connections(
    kind: &str,
    fixture_args: &[&str],
    filter: &str,
    url: &str,
    expected: &[(&str, f64)],
) -> String {
    let mut held = Fixture::python("db_connections.py", fixture_args);
    let dir = scratch(&format!("connections-{kind}"));
    let agent = collect(
        &dir,
        &format!(
            "[collectors]\ninterval = \"500ms\"\n[collectors.database]\n\
             url_env = \"LOUPE_TEST_DB\"\nservice = \"agent-api\"\nbusiness_gauges = false\n{filter}"
        ),
        url,
    );
    for (state, n) in expected {
        agent.wait_for(
            &series(
                "db_server_connections",
                &[("service", "agent-api"), ("state", state)],
            ),
            *n,
        );
    }
    let scrape = agent.scrape();
    let exported = scrape.matching("db_server_connections{");
    assert_eq!(exported.len(), expected.len(), "{exported:?}");
    assert_eq!(
        scrape.get(&query_success("db_server_connections")),
        Some(1.0)
    );
    held.command("stop", "stopped");
    for (state, _) in expected {
        agent.wait_for(
            &series(
                "db_server_connections",
                &[("service", "agent-api"), ("state", state)],
            ),
            0.0,
        );
    }
    let log = agent.log();
    assert!(!log.contains("business gauge"), "switched off: {log}");
    let _ = fs::remove_dir_all(&dir);
    log
}

fn env_url(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with `cargo xtask test`"))
}

#[test]
fn business_gauges_from_postgresql() {
    let url = env_url("LOUPE_TEST_DATABASE_URL");
    business_gauges("postgres", &url, &url);
}

#[test]
fn server_connections_in_postgresql() {
    let url = env_url("LOUPE_TEST_DATABASE_URL");
    let app = format!("loupe-test-{}", std::process::id());
    let log = server_connections(
        "postgres",
        &["postgres", &url, &app],
        &format!("connections_application = \"{app}\"\n"),
        &url,
        &[
            ("active", 1.0),
            ("idle", 3.0),
            ("idle_in_transaction", 2.0),
            ("idle_in_transaction_aborted", 1.0),
            ("other", 0.0),
        ],
    );
    assert!(!log.contains("WARN"), "{log}");
}

/// A query that sleeps beyond the timeout while a flag row exists: the run
/// is cut off and counted as an error, `/metrics` keeps answering, and
/// once the row is gone the next run is normal.
#[test]
fn a_hanging_query_is_cut_off_at_the_timeout() {
    let url = env_url("LOUPE_TEST_DATABASE_URL");
    let table = format!("loupe_hang_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([url.as_str(), "-qAtc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "{sql}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (1)"
    ));
    let dir = scratch("hang");
    let agent = collect(
        &dir,
        &format!(
            "[collectors]\ninterval = \"500ms\"\ntimeout = \"1s\"\n\
             [collectors.database]\nurl_env = \"LOUPE_TEST_DB\"\n\
             [[collectors.database.queries]]\nname = \"loupe_test_slow\"\n\
             query = \"SELECT COUNT(pg_sleep(30)) AS value FROM {table}\"\n"
        ),
        &url,
    );
    let up = series("loupe_collector_up", &[("collector", "database")]);
    let errors = series("loupe_collector_errors_total", &[("collector", "database")]);
    agent.wait_for_at_least(&errors, 2.0);
    let scrape = agent.wait_for(&up, 0.0);
    assert!(scrape.get("loupe_test_slow").is_none());
    let log = agent.log();
    assert!(log.contains("timed out after 1s"), "{log}");
    assert_eq!(
        log.matches("collector failed").count(),
        1,
        "said once: {log}"
    );
    // The server stops the query too (statement_timeout): a backend whose
    // client went away would otherwise sleep its 30 s out.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let sleeping = psql(&format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE '%pg_sleep(30)%{table}%' AND pid <> pg_backend_pid() \
         AND now() - query_start > interval '2 seconds'"
    ));
    assert_eq!(sleeping, "0");
    psql(&format!("DELETE FROM {table}"));
    agent.wait_for(&up, 1.0);
    let scrape = agent.wait_for("loupe_test_slow", 0.0);
    assert_eq!(scrape.get(&query_success("loupe_test_slow")), Some(1.0));
    assert!(agent.log().contains("collector is back up"));
    psql(&format!("DROP TABLE {table}"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn business_gauges_and_server_connections_from_mariadb() {
    let url = env_url("LOUPE_TEST_MARIADB_URL");
    // mysql://user:password@host:port/database
    let rest = url.strip_prefix("mysql://").unwrap();
    let (credentials, place) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let (address, database) = place.split_once('/').unwrap();
    let (host, port) = address.split_once(':').unwrap();
    let target = format!("{host},{port},{user},{password},{database}");
    business_gauges("mariadb", &target, &url);
    // The collector's user (no PROCESS privilege: transactions are not
    // visible, idle connections in one count as idle).
    let log = server_connections(
        "mariadb",
        &["mariadb", &target],
        "",
        &url,
        &[("active", 1.0), ("idle", 5.0), ("other", 0.0)],
    );
    assert!(log.contains("grant the collector's user PROCESS"), "{log}");
}
#[test]
fn business_gauges_from_sqlite() {
    let file = std::env::temp_dir().join(format!("loupe-business-{}.sqlite3", std::process::id()));
    let _ = fs::remove_file(&file);
    let path = file.to_str().unwrap();
    business_gauges("sqlite", path, &format!("sqlite://{path}"));
    let _ = fs::remove_file(&file);
}
