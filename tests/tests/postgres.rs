//! PostgreSQL statements measured from the wire of the client's connections:
//! asyncpg (statement cache, pipelined executemany), psycopg 3, psycopg2 and
//! a SQLAlchemy pool with overflow, against the PostgreSQL cluster `cargo
//! xtask test` starts (plaintext: its `ssl` is off, so clients that prefer
//! TLS are refused and go on in the clear), and the same over TLS against a
//! cluster of the test's own (read through the OpenSSL uprobes: CPython's
//! for asyncpg, libpq's bundled libssl for psycopg and psycopg2). The pools are open before
//! loupe starts. Root required.
use std::collections::BTreeMap;

use loupe_tests::{
    Agent, Fixture, Scrape, established, free_port, pg_cluster::PgCluster, series, targets,
    tls::tls_config,
};

const SVC: &str = "pg-client";
const QUERIES: &str = "db_queries_total";

/// `(query_type, status) -> count` for the service.
fn counts(scrape: &Scrape) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for (key, value) in scrape.matching(&format!("{QUERIES}{{")) {
        if !key.contains(&format!("service=\"{SVC}\"")) {
            continue;
        }
        let label = |name: &str| {
            let start = key.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            key[start..start + key[start..].find('"').unwrap()].to_owned()
        };
        out.insert((label("query_type"), label("status")), value);
    }
    out
}

/// Runs a session and returns what it added, once `expected` statements
/// have been counted.
fn session(
    agent: &Agent,
    client: &mut Fixture,
    line: &str,
    expected: f64,
) -> BTreeMap<(String, String), f64> {
    let before = agent.scrape();
    let total_before = before.total(QUERIES, SVC);
    let name = line.split_whitespace().next().unwrap();
    client.command(line, &format!("done {name}"));
    let total = agent.wait_for_total(QUERIES, SVC, total_before + expected);
    let after = agent.scrape();
    assert_eq!(total - total_before, expected, "{line}\n{}", after.text);
    let before = counts(&before);
    counts(&after)
        .into_iter()
        .filter_map(|(k, v)| {
            let added = v - before.get(&k).copied().unwrap_or(0.0);
            (added > 0.0).then_some((k, added))
        })
        .collect()
}

fn expect(pairs: &[(&str, &str, f64)]) -> BTreeMap<(String, String), f64> {
    pairs
        .iter()
        .map(|(t, s, n)| ((t.to_string(), s.to_string()), *n))
        .collect()
}

#[test]
fn drivers_and_pools_give_exact_statement_counts() {
    let url = std::env::var("LOUPE_TEST_DATABASE_URL")
        .expect("LOUPE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`");
    let mut client = Fixture::python("pg_client.py", &[&url]);
    let pid = client.pid().to_string();
    let agent = Agent::start(&["--pid", &pid, "--service", SVC]);
    agent.wait_for(&targets(SVC), 1.0);

    // asyncpg: a simple INSERT; a SELECT prepared once and run three times
    // from the statement cache; executemany (three Executes in one batch);
    // a transaction; a SELECT that fails to prepare.
    let added = session(&agent, &mut client, "asyncpg", 12.0);
    assert_eq!(
        added,
        expect(&[
            ("insert", "ok", 4.0),
            ("select", "ok", 3.0),
            ("select", "error", 1.0),
            ("begin", "ok", 1.0),
            ("update", "ok", 1.0),
            ("delete", "ok", 1.0),
            ("commit", "ok", 1.0),
        ])
    );
    // psycopg 3: BEGIN is its own statement; executemany sends two UPDATEs;
    // the failing SELECT opens a transaction that is rolled back; its
    // prepared-statement cache sends one DEALLOCATE of its own.
    let added = session(&agent, &mut client, "psycopg", 11.0);
    assert_eq!(
        added,
        expect(&[
            ("begin", "ok", 2.0),
            ("insert", "ok", 1.0),
            ("select", "ok", 1.0),
            ("update", "ok", 2.0),
            ("delete", "ok", 1.0),
            ("commit", "ok", 1.0),
            ("select", "error", 1.0),
            ("rollback", "ok", 1.0),
            ("deallocate", "ok", 1.0),
        ])
    );
    // psycopg2: simple queries, the same shape.
    let added = session(&agent, &mut client, "psycopg2", 9.0);
    assert_eq!(
        added,
        expect(&[
            ("begin", "ok", 2.0),
            ("insert", "ok", 1.0),
            ("select", "ok", 1.0),
            ("update", "ok", 1.0),
            ("delete", "ok", 1.0),
            ("commit", "ok", 1.0),
            ("select", "error", 1.0),
            ("rollback", "ok", 1.0),
        ])
    );
    // SQLAlchemy: four connections at once (two pooled, two overflow), each
    // BEGIN, SELECT, and ROLLBACK when returned.
    let added = session(&agent, &mut client, "sqlalchemy", 12.0);
    assert_eq!(
        added,
        expect(&[
            ("begin", "ok", 4.0),
            ("select", "ok", 4.0),
            ("rollback", "ok", 4.0)
        ])
    );
    // 150 ms in the server: in (0.1, 0.25].
    let before = agent.scrape();
    session(&agent, &mut client, "sleep", 3.0);
    let after = agent.scrape();
    let bucket = |scrape: &Scrape, le: &str| {
        scrape
            .get(&series(
                "db_query_duration_seconds_bucket",
                &[
                    ("service", SVC),
                    ("db_system", "postgresql"),
                    ("query_type", "select"),
                    ("le", le),
                ],
            ))
            .unwrap_or(0.0)
    };
    assert_eq!(bucket(&after, "0.1") - bucket(&before, "0.1"), 0.0);
    assert_eq!(bucket(&after, "0.25") - bucket(&before, "0.25"), 1.0);

    // Two pooled connections held inside transactions.
    session(&agent, &mut client, "hold 2", 4.0);
    let gauge = |name: &str| series(name, &[("service", SVC), ("db_system", "postgresql")]);
    agent.wait_for(&gauge("db_pool_checked_out"), 2.0);
    agent.wait_for(&gauge("db_pool_size"), established(client.pid(), 5432));
    session(&agent, &mut client, "release", 2.0);
    agent.wait_for(&gauge("db_pool_checked_out"), 0.0);
    agent.assert_nothing_lost();
}

#[test]
fn libpq_over_tls_is_read_in_plaintext() {
    let cluster = PgCluster::start_tls(free_port());
    let url = format!("{}?sslmode=require", cluster.url());
    let mut client = Fixture::python("pg_client.py", &[&url]);
    let pid = client.pid().to_string();
    let config = tls_config("libpq");
    let agent = Agent::start(&["--pid", &pid, "--service", SVC, "--config", &config]);
    agent.wait_for(&targets(SVC), 1.0);
    assert!(
        agent.log().contains("TLS plaintext hooked"),
        "{}",
        agent.log()
    );
    // The same sessions as in the clear, statement for statement: asyncpg
    // through CPython's ssl module (the system's libssl, memory BIOs).
    session(&agent, &mut client, "asyncpg", 12.0);
    let added = session(&agent, &mut client, "psycopg", 11.0);
    assert_eq!(added.get(&("update".into(), "ok".into())), Some(&2.0));
    assert_eq!(added.get(&("deallocate".into(), "ok".into())), Some(&1.0));
    session(&agent, &mut client, "psycopg2", 9.0);
    // New connections (the pool's overflow), each negotiated at the socket
    // and then read through OpenSSL.
    let added = session(&agent, &mut client, "sqlalchemy", 12.0);
    assert_eq!(added.get(&("begin".into(), "ok".into())), Some(&4.0));
    // Each connection counts once in the pool, not also as its ciphertext.
    session(&agent, &mut client, "hold 2", 4.0);
    let gauge = |name: &str| series(name, &[("service", SVC), ("db_system", "postgresql")]);
    agent.wait_for(&gauge("db_pool_checked_out"), 2.0);
    agent.wait_for(
        &gauge("db_pool_size"),
        established(client.pid(), cluster.port),
    );
    session(&agent, &mut client, "release", 2.0);
    agent.wait_for(&gauge("db_pool_checked_out"), 0.0);
    agent.assert_nothing_lost();
}

#[test]
fn pool_connections_open_and_idle_before_loupe_count_from_the_first_scrape() {
    let url = std::env::var("LOUPE_TEST_DATABASE_URL")
        .expect("LOUPE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`");
    // Seven connections (idle, idle in a transaction, aborted, one running
    // pg_sleep), all opened before loupe attaches, none used after.
    let held = Fixture::python("db_connections.py", &["postgres", &url, "loupe-seeded"]);
    let pid = held.pid().to_string();
    let agent = Agent::start(&["--pid", &pid, "--service", "seeded-pool"]);
    agent.wait_for(&targets("seeded-pool"), 1.0);
    let pool = series(
        "db_pool_size",
        &[("service", "seeded-pool"), ("db_system", "postgresql")],
    );
    agent.wait_for(&pool, 7.0);
    // Gone with the process.
    held.kill();
    agent.wait_for(&pool, 0.0);
}
