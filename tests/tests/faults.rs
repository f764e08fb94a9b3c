//! The agent under abuse: many scrapes at once while the service is under
//! load; the service's Redis killed and restarted while it works. Root
//! required: `cargo xtask test`.
use std::{collections::HashMap, fs, thread};

use loupe_tests::{
    Agent, Fixture, Scrape, free_port, http_get, http_server, redis_server, requests, series,
    targets, watch_port,
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

/// Sends `n` INCRs; returns (answered, failed).
fn incr(client: &mut Fixture, n: u32) -> (f64, f64) {
    let done = client.command(&format!("incr {n}"), "done ");
    let mut counts = done
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<f64>().unwrap());
    (counts.next().unwrap(), counts.next().unwrap())
}

#[test]
fn a_redis_restart_under_load_is_survived_on_both_sides() {
    let port = free_port();
    let server = redis_server(port, "");
    let mut client = Fixture::python("redis_incr.py", &[&port.to_string()]);
    let dir = std::env::temp_dir().join(format!("loupe-faults-{port}"));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("loupe.toml");
    fs::write(
        &config,
        format!(
            "[collectors]\ninterval = \"500ms\"\ntimeout = \"1s\"\n\
             [collectors.redis]\nurl = \"redis://127.0.0.1:{port}/\"\n"
        ),
    )
    .unwrap();
    let svc = "redis-app";
    let pid = client.pid().to_string();
    let agent = Agent::start(&[
        "--pid",
        &pid,
        "--service",
        svc,
        "--config",
        config.to_str().unwrap(),
    ]);
    agent.wait_for(&targets(svc), 1.0);
    let up = series("loupe_collector_up", &[("collector", "redis")]);
    agent.wait_for(&up, 1.0);
    let incrby = |family| series(family, &[("service", svc), ("operation", "incrby")]);

    assert_eq!(incr(&mut client, 50), (50.0, 0.0));
    agent.wait_for(&incrby("redis_operations_total"), 50.0);

    // Redis dies while the service keeps working.
    drop(server);
    let (_, failed) = incr(&mut client, 3);
    assert_eq!(failed, 3.0);
    agent.wait_for(&up, 0.0);
    // Back on the same port: the service reconnects by itself, loupe
    // follows the new connection, the collector recovers.
    let _server = redis_server(port, "");
    assert_eq!(incr(&mut client, 30), (30.0, 0.0));
    agent.wait_for(&up, 1.0);
    // Every INCR that reached the wire is counted: the 80 answered, and
    // those written to the dying connection as errors.
    let deadline = std::time::Instant::now() + loupe_tests::WAIT;
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
        assert!(std::time::Instant::now() < deadline, "{}", scrape.text);
        thread::sleep(std::time::Duration::from_millis(100));
    }
    agent.assert_nothing_lost();
    let log = agent.log();
    assert_eq!(log.matches("collector failed").count(), 1, "{log}");
    assert_eq!(log.matches("collector is back up").count(), 1, "{log}");
    let _ = fs::remove_dir_all(&dir);
}
