//! MySQL statements measured from the wire of a PyMySQL client against the
//! MariaDB server `cargo xtask test` starts; its connections are open
//! before loupe starts (their handshakes unseen). Root required.
use loupe_tests::{Agent, Fixture, series, targets};

const SVC: &str = "mysql-client";

fn statements(agent: &Agent, query_type: &str, status: &str) -> f64 {
    agent
        .scrape()
        .get(&series(
            "db_queries_total",
            &[
                ("service", SVC),
                ("db_system", "mysql"),
                ("query_type", query_type),
                ("status", status),
            ],
        ))
        .unwrap_or(0.0)
}

#[test]
fn pymysql_statements_results_and_transactions() {
    let url = std::env::var("LOUPE_TEST_MARIADB_URL")
        .expect("LOUPE_TEST_MARIADB_URL is not set: run the tests with `cargo xtask test`");
    // mysql://user:password@host:port/database
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (credentials, place) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let (address, database) = place.split_once('/').unwrap();
    let (host, port) = address.split_once(':').unwrap();
    let mut client = Fixture::python("mysql_client.py", &[host, port, user, password, database]);
    let pid = client.pid().to_string();
    let agent = Agent::start(&["--pid", &pid, "--service", SVC]);
    agent.wait_for(&targets(SVC), 1.0);

    client.command("queries", "done queries");
    // 3 INSERT, 2 SELECT (one of 300 rows, longer than the capture), UPDATE,
    // DELETE, COMMIT, a failing SELECT, ROLLBACK.
    assert_eq!(agent.wait_for_total("db_queries_total", SVC, 10.0), 10.0);
    agent.assert_nothing_lost();
    for (query_type, status, count) in [
        ("insert", "ok", 3.0),
        ("select", "ok", 2.0),
        ("update", "ok", 1.0),
        ("delete", "ok", 1.0),
        ("commit", "ok", 1.0),
        ("select", "error", 1.0),
        ("rollback", "ok", 1.0),
    ] {
        assert_eq!(
            statements(&agent, query_type, status),
            count,
            "{query_type} {status}\n{}",
            agent.scrape().text
        );
    }
    let gauge = |name: &str| series(name, &[("service", SVC), ("db_system", "mysql")]);
    // Both connections were open before loupe: counted from the start
    // (by MySQL's port), the second one idle so far.
    agent.wait_for(&gauge("db_pool_size"), 2.0);
    agent.wait_for(&gauge("db_pool_checked_out"), 0.0);
    // The second connection inside a transaction (MariaDB's status flags).
    client.command("hold", "done hold");
    agent.wait_for(&gauge("db_pool_size"), 2.0);
    agent.wait_for(&gauge("db_pool_checked_out"), 1.0);
    client.command("release", "done release");
    agent.wait_for(&gauge("db_pool_checked_out"), 0.0);
    assert_eq!(statements(&agent, "begin", "ok"), 1.0);
    assert_eq!(statements(&agent, "rollback", "ok"), 2.0);
}
