//! Database and Redis client libraries the other tests never used, each
//! counted exactly and checked against the server's own record of what ran
//! (`loupe_tests::server_records`): node-postgres (unnamed and named
//! extended-protocol statements, each one `writev` of several messages;
//! simple queries; a `Pool`) and pgjdbc (past its server-prepare threshold,
//! with a batch) against PostgreSQL's statement log; mysql2 (`execute()`,
//! server-side prepared) and MariaDB Connector/J (bulk batches) against
//! MariaDB's general log; ioredis (a pipeline, MULTI, subscribe and
//! unsubscribe on a connection that goes on with plain commands) against
//! Redis's INFO commandstats. Root required.
use std::collections::BTreeMap;

use loupe_tests::{
    Agent, Fixture, Scrape, fixture, free_port, redis_server,
    server_records::{
        Counts, MariadbGeneralLog, PostgresLog, UNRECOGNISED, redis_commandstats, with_errors,
    },
    targets, workspace,
};

/// Starts the client (`command` under bash), attaches an agent to it,
/// runs its session; returns the agent and the kinds of the errors the
/// client library reported.
fn run_client(service: &str, command: &str) -> (Agent, Vec<String>) {
    let mut client = Fixture::start("bash", &["-c", &format!("exec {command}")]);
    let agent = Agent::start(&["--pid", &client.pid().to_string(), "--service", service]);
    agent.wait_for(&targets(service), 1.0);
    client.send("go");
    let mut errors = Vec::new();
    loop {
        let line = client.expect("");
        if line == "done" {
            return (agent, errors);
        }
        if let Some(kind) = line.strip_prefix("error ") {
            errors.push(kind.to_owned());
        }
    }
}

fn node(kind: &str, url: &str) -> String {
    format!(
        "env NODE_PATH={} node {} {kind} '{url}'",
        workspace().join("target/tools/node_modules").display(),
        fixture("clients/node_clients.js").display()
    )
}

fn java(driver: &str, url: &str) -> String {
    format!(
        "java -cp /usr/share/java/{driver} {} '{url}'",
        fixture("clients/JdbcClient.java").display()
    )
}

/// loupe's `(kind, status) -> count` for the service, from `family`
/// (`kind` the value of label `kind`; with `errors`, a family of the
/// failed ones, subtracted from the ok ones).
fn counted(
    scrape: &Scrape,
    service: &str,
    family: &str,
    kind: &str,
    errors: Option<&str>,
) -> Counts {
    let label = |key: &str, name: &str| -> Option<String> {
        let start = key.find(&format!("{name}=\""))? + name.len() + 2;
        Some(key[start..start + key[start..].find('"')?].to_owned())
    };
    let of = |family: &str| -> BTreeMap<(String, String), f64> {
        scrape
            .matching(&format!("{family}{{"))
            .into_iter()
            .filter(|(key, _)| key.contains(&format!("service=\"{service}\"")))
            .map(|(key, value)| {
                let status = label(key, "status").unwrap_or_else(|| "ok".to_owned());
                ((label(key, kind).expect("kind label"), status), value)
            })
            .collect()
    };
    let mut counts = of(family);
    if let Some(errors) = errors {
        for ((kind, _), failed) in of(errors) {
            *counts.entry((kind.clone(), "ok".to_owned())).or_insert(0.0) -= failed;
            *counts.entry((kind, "error".to_owned())).or_insert(0.0) += failed;
        }
    }
    counts.retain(|_, n| *n != 0.0);
    counts
}

/// Statements by `query_type` and status.
const STATEMENTS: (&str, &str, Option<&str>) = ("db_queries_total", "query_type", None);

/// Waits until loupe counted as many as the server did, then compares
/// kind by kind: loupe's `family` by label `kind` (with `errors`, a family
/// of the failed ones), each key through `rename` (for what the server
/// files under another name).
fn check(
    agent: &Agent,
    service: &str,
    server: &Counts,
    (family, kind, errors): (&str, &str, Option<&str>),
    rename: impl Fn((String, String)) -> (String, String),
) {
    let total: f64 = server.values().sum();
    assert!(total > 10.0, "the session ran {total}: {server:?}");
    agent.wait_for_total(family, service, total);
    let scrape = agent.scrape();
    let mut loupe = Counts::new();
    for (key, n) in counted(&scrape, service, family, kind, errors) {
        *loupe.entry(rename(key)).or_insert(0.0) += n;
    }
    assert_eq!(
        &loupe, server,
        "{service}: loupe (left) against the server's record (right)\n{}",
        scrape.text
    );
    agent.assert_nothing_lost();
}

#[test]
fn node_postgres_statements_match_the_server_log() {
    let (log, address) = PostgresLog::role("loupe_node_pg");
    let url = format!("postgresql://loupe_node_pg:loupe_node_pg@{address}");
    let (agent, errors) = run_client("node-pg", &node("pg", &url));
    assert_eq!(errors, ["select", "select"]);
    let server = log.statements();
    // The unnamed statements (INSERT x5, UPDATE, DELETE, the pool's nine),
    // each a writev of Parse/Bind/Describe/Execute/Sync, are all there.
    assert_eq!(server.get(&("insert".into(), "ok".into())), Some(&5.0));
    check(&agent, "node-pg", &server, STATEMENTS, |key| key);
}

#[test]
fn pgjdbc_past_its_prepare_threshold_with_a_batch_matches_the_server_log() {
    let (log, address) = PostgresLog::role("loupe_jdbc_pg");
    let url = format!("jdbc:postgresql://{address}?user=loupe_jdbc_pg&password=loupe_jdbc_pg");
    let (agent, errors) = run_client("jdbc-pg", &java("postgresql.jar", &url));
    assert_eq!(errors, ["select"]);
    let server = log.statements();
    // 8 single inserts (named S_1 from the fifth) and a batch of 20.
    assert_eq!(server.get(&("insert".into(), "ok".into())), Some(&28.0));
    check(&agent, "jdbc-pg", &server, STATEMENTS, |key| key);
}

fn mariadb_url() -> String {
    std::env::var("LOUPE_TEST_MARIADB_URL")
        .expect("LOUPE_TEST_MARIADB_URL is not set: run the tests with `cargo xtask test`")
}

/// `user:password@host:port/database` of the test MariaDB.
fn mariadb_parts() -> (String, String) {
    let url = mariadb_url();
    let rest = url.split_once("://").expect("a URL").1;
    let (credentials, address) = rest.rsplit_once('@').expect("user@host");
    (credentials.to_owned(), address.to_owned())
}

#[test]
fn mysql2_execute_matches_the_general_log() {
    let log = MariadbGeneralLog::start();
    let (agent, errors) = run_client("node-mysql2", &node("mysql2", &mariadb_url()));
    assert_eq!(errors, ["select"]);
    let (credentials, _) = mariadb_parts();
    let user = credentials.split(':').next().expect("a user");
    let server = with_errors(log.statements(user), &errors);
    check(&agent, "node-mysql2", &server, STATEMENTS, |key| key);
}

#[test]
fn connector_j_bulk_batches_match_the_general_log() {
    let log = MariadbGeneralLog::start();
    let (credentials, address) = mariadb_parts();
    let (user, password) = credentials.split_once(':').expect("user:password");
    let url = format!(
        "jdbc:mariadb://{address}?user={user}&password={password}\
         &useServerPrepStmts=true&useBulkStmts=true"
    );
    let (agent, errors) = run_client("jdbc-mariadb", &java("mariadb-java-client.jar", &url));
    assert!(errors.is_empty(), "{errors:?}");
    let server = with_errors(log.statements(user), &errors);
    // 8 single inserts and one bulk execution of 20 rows, logged once.
    assert_eq!(server.get(&("insert".into(), "ok".into())), Some(&9.0));
    check(&agent, "jdbc-mariadb", &server, STATEMENTS, |key| key);
}

#[test]
fn ioredis_pipelines_multi_and_pub_sub_match_commandstats() {
    let port = free_port();
    let _redis = redis_server(port, "");
    let url = format!("redis://127.0.0.1:{port}/0");
    let (agent, errors) = run_client("ioredis", &node("ioredis", &url));
    assert_eq!(errors, ["incr"]);
    let server = redis_commandstats(port);
    // ioredis names itself with CLIENT SETINFO on connect, a subcommand
    // newer than Debian's Redis 7.0: refused, and kept in no stats by name,
    // only in the server's error total.
    let known = |kind: &str| server.keys().any(|(k, _)| k == kind);
    let operations = (
        "redis_operations_total",
        "operation",
        Some("redis_operation_errors_total"),
    );
    check(&agent, "ioredis", &server, operations, |(kind, status)| {
        if status == "error" && !known(&kind) {
            (UNRECOGNISED.to_owned(), status)
        } else {
            (kind, status)
        }
    });
}
