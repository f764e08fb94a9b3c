//! The agent under abuse: many scrapes at once while the service is under
//! load; the service's Redis and PostgreSQL killed and restarted while it
//! works; the service itself killed and restarted under load; a burst that
//! overflows the ring buffer; a flood of distinct paths and principals.
//! Root required: `cargo xtask test`.
use std::{
    collections::HashMap,
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use loupe_tests::{
    Agent, Fixture, KeepAlive, Scrape, free_port, http_app, http_get, http_get_with, http_server,
    pg_cluster::PgCluster, redis_server, requests, requests_on, series, targets, watch_port,
    watch_with_principals,
};

/// Every histogram's `+Inf` bucket equals its `_count`: the exposition was
/// taken at one instant per series. Returns how many were compared.
fn assert_consistent(scrape: &Scrape) -> usize {
    let mut inf: HashMap<String, f64> = HashMap::new();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for (series, value) in scrape.matching("") {
        if let Some(rest) = series.strip_suffix(",le=\"+Inf\"}") {
            let name = rest.replacen("_bucket{", "{", 1) + "}";
            inf.insert(name, value);
        } else if let Some((name, labels)) = series.split_once("_count{") {
            counts.insert(format!("{name}{{{labels}"), value);
        }
    }
    let mut compared = 0;
    for (series, count) in &counts {
        if let Some(bucket) = inf.get(series) {
            assert_eq!(bucket, count, "{series}");
            compared += 1;
        }
    }
    compared
}

#[test]
fn fifty_concurrent_scrapes_during_load_all_answer_consistently() {
    let (port, _server) = http_server();
    let svc = "scraped";
    let agent = watch_port(port, svc, &[]);
    let load = thread::spawn(move || requests(port, 400));
    let metrics = agent.port;
    let scrapers: Vec<_> = (0..50)
        .map(|_| {
            thread::spawn(move || {
                let mut last = 0.0;
                let mut compared = 0;
                for _ in 0..4 {
                    let response = http_get(metrics, "/metrics").expect("scrape");
                    assert_eq!(response.status, 200);
                    assert!(response.body.ends_with('\n'));
                    let scrape = Scrape::parse(response.body);
                    compared += assert_consistent(&scrape);
                    // Counters never go back.
                    let total = scrape.total("agent_requests_total", svc);
                    assert!(total >= last, "{total} < {last}");
                    last = total;
                }
                compared
            })
        })
        .collect();
    let compared: usize = scrapers
        .into_iter()
        .map(|scraper| scraper.join().expect("a scraper failed"))
        .sum();
    assert!(compared > 0, "histograms were checked");
    load.join().unwrap();
    assert_eq!(
        agent.wait_for_total("agent_requests_total", svc, 400.0),
        400.0
    );
    agent.assert_nothing_lost();
}

/// Sends a fixture `line` answered by `done OK FAILED`; returns both.
fn ok_failed(client: &mut Fixture, line: &str) -> (f64, f64) {
    let done = client.command(line, "done ");
    let mut counts = done
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<f64>().unwrap());
    (counts.next().unwrap(), counts.next().unwrap())
}

/// An agent on `client`'s process as `service`, running the collector
/// `collector` (configured by `section`) every 500 ms; returns it once both
/// are up, with the collector's `up` series.
fn watch_with_collector(
    client: &Fixture,
    service: &str,
    collector: &str,
    section: &str,
) -> (Agent, String) {
    let config = std::env::temp_dir().join(format!("loupe-faults-{service}-{}.toml", client.pid()));
    fs::write(
        &config,
        format!("[collectors]\ninterval = \"500ms\"\ntimeout = \"1s\"\n{section}"),
    )
    .unwrap();
    let pid = client.pid().to_string();
    let args = [
        "--pid",
        &pid,
        "--service",
        service,
        "--config",
        config.to_str().unwrap(),
    ];
    let agent = Agent::start(&args);
    let _ = fs::remove_file(&config);
    agent.wait_for(&targets(service), 1.0);
    let up = series("loupe_collector_up", &[("collector", collector)]);
    agent.wait_for(&up, 1.0);
    (agent, up)
}

/// The collector's outage was logged once, and its recovery once.
fn assert_one_outage(agent: &Agent) {
    let log = agent.log();
    assert_eq!(log.matches("collector failed").count(), 1, "{log}");
    assert_eq!(log.matches("collector is back up").count(), 1, "{log}");
}

#[test]
fn a_redis_restart_under_load_is_survived_on_both_sides() {
    let port = free_port();
    let server = redis_server(port, "");
    let mut client = Fixture::python("redis_incr.py", &[&port.to_string()]);
    let svc = "redis-app";
    let section = format!("[collectors.redis]\nurl = \"redis://127.0.0.1:{port}/\"\n");
    let (agent, up) = watch_with_collector(&client, svc, "redis", &section);
    let incrby = |family| series(family, &[("service", svc), ("operation", "incrby")]);

    assert_eq!(ok_failed(&mut client, "incr 50"), (50.0, 0.0));
    agent.wait_for(&incrby("redis_operations_total"), 50.0);

    // Redis dies while the service keeps working.
    drop(server);
    let (_, failed) = ok_failed(&mut client, "incr 3");
    assert_eq!(failed, 3.0);
    agent.wait_for(&up, 0.0);
    // Back on the same port: the service reconnects by itself, loupe
    // follows the new connection, the collector recovers.
    let _server = redis_server(port, "");
    assert_eq!(ok_failed(&mut client, "incr 30"), (30.0, 0.0));
    agent.wait_for(&up, 1.0);
    // Every INCR that reached the wire is counted: the 80 answered, and
    // those written to the dying connection as errors.
    let deadline = Instant::now() + loupe_tests::WAIT;
    loop {
        let scrape = agent.scrape();
        let total = scrape.get(&incrby("redis_operations_total")).unwrap_or(0.0);
        let errors = scrape
            .get(&incrby("redis_operation_errors_total"))
            .unwrap_or(0.0);
        if total - errors == 80.0 {
            assert!(errors <= 3.0, "{errors}");
            break;
        }
        assert!(Instant::now() < deadline, "{}", scrape.text);
        thread::sleep(Duration::from_millis(100));
    }
    agent.assert_nothing_lost();
    assert_one_outage(&agent);
}

/// Requests to `path` on `port` in a loop until `stop`, ignoring failures
/// (the server may be down); returns how many were answered.
fn hammer(port: u16, path: &'static str, stop: &Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            match http_get(port, path) {
                Ok(response) if response.status == 200 => answered += 1,
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
        answered
    })
}

/// The sum of `agent_requests_total` of `service` for `endpoint`.
fn requests_to(scrape: &Scrape, service: &str, endpoint: &str) -> f64 {
    let service = format!("service=\"{service}\"");
    let endpoint = format!("endpoint=\"{endpoint}\"");
    scrape
        .matching("agent_requests_total{")
        .into_iter()
        .filter(|(series, _)| series.contains(&service) && series.contains(&endpoint))
        .map(|(_, value)| value)
        .sum()
}

/// Waits until the requests of `service` to `endpoint` add up to
/// `expected`, panicking with the agent's log otherwise.
fn wait_for_requests_to(agent: &Agent, service: &str, endpoint: &str, expected: f64) {
    let deadline = Instant::now() + loupe_tests::WAIT;
    while requests_to(&agent.scrape(), service, endpoint) != expected {
        assert!(
            Instant::now() < deadline,
            "{endpoint}: expected {expected}\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_target_killed_and_restarted_under_load_leaves_no_state_behind() {
    let port = free_port();
    let svc = "phoenix";
    let start = || Fixture::python("http_server.py", &[&port.to_string()]);
    let mut server = start();
    let agent = watch_port(port, svc, &[]);
    let sockets = series("loupe_tracked_sockets", &[("service", svc)]);
    let parsing = "loupe_capture_connections";
    // (The agent's own OpenAPI fetch may still be open at first.)
    agent.wait_for(parsing, 0.0);

    let stop = Arc::new(AtomicBool::new(false));
    let load = hammer(port, "/load", &stop);
    let (mut counted, mut rss_after_first) = (0.0, 0);
    for round in 1..=6 {
        // A known batch beside the load: counted exactly, every time.
        requests_on(port, "/counted", 25);
        counted += 25.0;
        wait_for_requests_to(&agent, svc, "/counted", counted);
        if round == 1 {
            rss_after_first = rss_kb(agent.pid());
        }
        // Killed mid-load, a new process on the same port.
        server.kill();
        agent.wait_for(&targets(svc), 0.0);
        server = start();
        agent.wait_for(&targets(svc), 1.0);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(load.join().unwrap() > 0, "the load was served");

    // Nothing of the dead processes' connections is left: the kernel's fd
    // map holds the new process's listener only, the parsers nothing.
    agent.wait_for(&sockets, 1.0);
    agent.wait_for(parsing, 0.0);
    let grown = rss_kb(agent.pid()).saturating_sub(rss_after_first);
    assert!(
        grown < 8 * 1024,
        "agent RSS grew by {grown} kB over six restarts"
    );
    let scrape = agent.scrape();
    assert_eq!(requests_to(&scrape, svc, "/counted"), counted);
    // No record lost: what the load sent to dying processes was dropped by
    // the parsers, not by the ring buffer.
    agent.assert_nothing_lost();
}

/// Sends SIGSTOP or SIGCONT to `pid`.
fn signal(pid: u32, signal: i32) {
    // SAFETY: plain syscall on a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

#[test]
fn a_burst_that_overflows_the_ring_buffer_is_counted_and_survived() {
    let (port, _server) = http_server();
    let svc = "burst";
    let agent = watch_port(port, svc, &[]);
    // The agent stops reading while requests with large heads (2 KiB
    // records) fill the 8 MiB ring buffer several times over.
    signal(agent.pid(), libc::SIGSTOP);
    let padding = format!("X-Padding: {}\r\n", "p".repeat(1800));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let padding = padding.clone();
            thread::spawn(move || {
                for _ in 0..1500 {
                    let response = http_get_with(port, "/burst", &padding).expect("burst");
                    assert_eq!(response.status, 200);
                }
            })
        })
        .collect();
    senders
        .into_iter()
        .for_each(|sender| sender.join().unwrap());
    signal(agent.pid(), libc::SIGCONT);

    // Counted as lost, not hidden; the agent answers and catches up.
    let scrape = agent.wait_for_at_least("loupe_events_lost_total", 1.0);
    let burst = requests_to(&scrape, svc, "/burst");
    assert!(burst < 6000.0, "{burst} of 6000 counted despite the loss");
    requests_on(port, "/after", 137);
    wait_for_requests_to(&agent, svc, "/after", 137.0);
    // Nothing more was lost once the agent read again.
    let lost = agent.scrape().get("loupe_events_lost_total");
    requests_on(port, "/after", 13);
    wait_for_requests_to(&agent, svc, "/after", 150.0);
    assert_eq!(agent.scrape().get("loupe_events_lost_total"), lost);
}

/// Path segment `n` in letters only (`b`, `c`, ..., `ba`, ...), which the
/// endpoint heuristic keeps as it is.
fn letters(mut n: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_flood_of_distinct_paths_and_principals_stays_within_the_budgets() {
    let (port, _server) = http_app(env!("CARGO_BIN_EXE_http_app"));
    let svc = "flood";
    let agent = watch_with_principals(port, svc, "flood-secret-0123456789");
    // 100,000 requests, each to a path of its own, from 10,000 API keys
    // (request i uses key i % 10,000), on four keep-alive connections.
    const REQUESTS: usize = 100_000;
    const KEYS: usize = 10_000;
    let clients: Vec<_> = (0..4)
        .map(|client| {
            thread::spawn(move || {
                let mut connection = KeepAlive::connect(port);
                for i in (client..REQUESTS).step_by(4) {
                    let path = format!("/items/{}", letters(i));
                    let key = format!("X-API-Key: flood-key-{}\r\n", i % KEYS);
                    assert_eq!(connection.request("GET", &path, &key), 200);
                }
            })
        })
        .collect();
    clients
        .into_iter()
        .for_each(|client| client.join().unwrap());
    let total = agent.wait_for_total("agent_requests_total", svc, REQUESTS as f64);
    assert_eq!(total, REQUESTS as f64);
    agent.assert_nothing_lost();

    let scrape = agent.scrape();
    let of_service = |family: &str| {
        let service = format!("service=\"{svc}\"");
        scrape
            .matching(&format!("{family}{{"))
            .into_iter()
            .filter(|(series, _)| series.contains(&service))
            .collect::<Vec<_>>()
    };
    // Endpoints: the documented 100, the rest under `__other__`.
    let requests = of_service("agent_requests_total");
    let named: Vec<_> = requests
        .iter()
        .filter(|(series, _)| !series.contains("endpoint=\"__other__\""))
        .collect();
    assert_eq!(named.len(), 100, "{named:?}");
    assert!(named.iter().all(|(_, value)| *value == 1.0));
    let overflow = series("loupe_endpoint_overflow_total", &[("service", svc)]);
    assert_eq!(scrape.get(&overflow), Some((REQUESTS - 100) as f64));
    // Principals: the first 100 keys seen keep a series with all of their
    // 10 requests each; everyone else is `__other__`.
    let principals = of_service("agent_requests_by_principal_total");
    let (other, named): (Vec<_>, Vec<_>) = principals
        .iter()
        .partition(|(series, _)| series.contains("principal=\"__other__\""));
    assert_eq!(named.len(), 100, "{named:?}");
    let per_key = (REQUESTS / KEYS) as f64;
    assert!(
        named.iter().all(|(_, value)| *value == per_key),
        "{named:?}"
    );
    let other: f64 = other.iter().map(|(_, value)| value).sum();
    assert_eq!(other, REQUESTS as f64 - 100.0 * per_key);
    assert!(
        !scrape.text.contains("flood-key"),
        "keys never leave the agent"
    );
    // Memory stays within the documented 50 MB.
    let rss = rss_kb(agent.pid());
    assert!(rss < 50 * 1024, "agent RSS {rss} kB after the flood");
}

#[test]
fn a_postgresql_crash_under_load_is_survived_on_both_sides() {
    let mut cluster = PgCluster::start(free_port());
    let mut client = Fixture::python("pg_select.py", &[&cluster.url()]);
    let svc = "pg-app";
    let section = format!("[collectors.database]\nurl = \"{}\"\n", cluster.url());
    let (agent, up) = watch_with_collector(&client, svc, "database", &section);
    let selects = |status| {
        series(
            "db_queries_total",
            &[
                ("db_system", "postgresql"),
                ("query_type", "select"),
                ("service", svc),
                ("status", status),
            ],
        )
    };

    assert_eq!(ok_failed(&mut client, "select 50"), (50.0, 0.0));
    agent.wait_for(&selects("ok"), 50.0);

    // PostgreSQL crashes (an immediate shutdown) while the service works.
    cluster.kill();
    let (_, failed) = ok_failed(&mut client, "select 3");
    assert_eq!(failed, 3.0);
    agent.wait_for(&up, 0.0);
    // Back on the same port: the service reconnects by itself (its first
    // statement after the crash may still fail), loupe follows the new
    // connection, the collector recovers.
    cluster.restart();
    let (answered, failed) = ok_failed(&mut client, "select 30");
    assert_eq!(answered + failed, 30.0);
    assert!(failed <= 1.0, "{failed}");
    agent.wait_for(&up, 1.0);
    // Every statement answered is counted as such.
    agent.wait_for(&selects("ok"), 50.0 + answered);
    agent.assert_nothing_lost();
    assert_one_outage(&agent);
}
