//! The agent under abuse: many scrapes at once while the service is under
//! load. Root required: `cargo xtask test`.
use std::{collections::HashMap, thread};

use loupe_tests::{Scrape, http_get, http_server, requests, watch_port};

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
