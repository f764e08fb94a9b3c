//! The agent's life: targets that restart, shutdown that leaves nothing
//! loaded, services from a config file. Root required: `cargo xtask test`.
use std::{
    collections::BTreeSet,
    fs,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use loupe_tests::{Agent, Fixture, http_server, requests, targets, watch_port};

fn opened(service: &str) -> String {
    loupe_tests::opened(service, "inbound")
}

#[test]
fn a_restarted_target_is_picked_up_again() {
    let (port, server) = http_server();
    let agent = watch_port(port, "restart", &[]);
    requests(port, 9);
    agent.wait_for(&opened("restart"), 9.0);

    server.kill();
    agent.wait_for(&targets("restart"), 0.0);
    let _server = Fixture::python("http_server.py", &[&port.to_string()]);
    // Picked up by the next scan (every second by default).
    agent.wait_for(&targets("restart"), 1.0);
    requests(port, 5);
    agent.wait_for(&opened("restart"), 14.0);
    assert!(
        agent.log().contains("waiting for it to come back"),
        "{}",
        agent.log()
    );
}

/// IDs of the BPF objects a process holds, from `/proc/PID/fdinfo`.
fn bpf_ids(pid: u32, key: &str) -> BTreeSet<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{dir}: {err}"))
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

fn exists(kind: &str, id: u32) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (cargo xtask setup installs it)")
        .status
        .success()
}

#[test]
fn sigterm_under_load_exits_promptly_and_unloads_everything() {
    let (port, _server) = http_server();
    let agent = watch_port(port, "bye", &[]);
    let programs = bpf_ids(agent.pid(), "prog_id:");
    let maps = bpf_ids(agent.pid(), "map_id:");
    assert!(programs.len() >= 8, "programs held: {programs:?}");
    assert!(maps.len() >= 8, "maps held: {maps:?}");
    assert!(programs.iter().all(|&id| exists("prog", id)));

    // Requests keep coming while the agent is told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                requests(port, 10);
                sent += 10;
            }
            sent
        })
    };
    agent.wait_for_at_least(&opened("bye"), 50.0);
    let asked = Instant::now();
    let status = agent.stop();
    let took = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().expect("the service answered throughout");
    assert!(sent >= 50, "{sent}");
    assert!(status.success(), "exit status {status}");
    // A bound on behaviour (orchestrators kill after their grace period),
    // generous next to the usual tens of milliseconds.
    assert!(took < Duration::from_secs(2), "took {took:?} to exit");
    // These IDs belonged to this agent alone; parallel tests hold others.
    // The kernel frees objects after their last reference in deferred work.
    let left = still_present("prog", &programs);
    assert!(left.is_empty(), "programs still loaded: {left:?}");
    let left = still_present("map", &maps);
    assert!(left.is_empty(), "maps still present: {left:?}");
}

/// The IDs among `ids` that still exist after up to five seconds.
fn still_present(kind: &str, ids: &BTreeSet<u32>) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = ids.iter().copied().filter(|&id| exists(kind, id)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn config_file_services_and_a_flag_service_run_together() {
    let ((port_a, _a), (port_b, _b)) = (http_server(), http_server());
    let config = std::env::temp_dir().join(format!("loupe-test-{}.toml", std::process::id()));
    fs::write(
        &config,
        format!("series_ttl = \"1h\"\n\n[[services]]\nname = \"from-file\"\nports = [{port_a}]\n"),
    )
    .unwrap();
    let agent = Agent::start(&[
        "--config",
        config.to_str().unwrap(),
        "--port",
        &port_b.to_string(),
        "--service",
        "from-flags",
    ]);
    agent.wait_for(&targets("from-file"), 1.0);
    agent.wait_for(&targets("from-flags"), 1.0);
    requests(port_a, 3);
    requests(port_b, 4);
    agent.wait_for(&opened("from-file"), 3.0);
    agent.wait_for(&opened("from-flags"), 4.0);
    fs::remove_file(config).unwrap();
}

#[test]
fn idle_series_expire() {
    let (port, server) = http_server();
    let agent = watch_port(port, "fleeting", &["--series-ttl", "1s"]);
    requests(port, 2);
    agent.wait_for(&opened("fleeting"), 2.0);
    server.kill();
    agent.wait_for(&targets("fleeting"), 0.0);
    // Swept on the agent's 5-second tick once idle for more than 1s.
    let deadline = Instant::now() + loupe_tests::WAIT;
    loop {
        let scrape = agent.scrape();
        if scrape.get(&opened("fleeting")).is_none() {
            assert_eq!(
                scrape.get(&targets("fleeting")),
                Some(0.0),
                "configured services stay"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not expired:\n{}", scrape.text);
        thread::sleep(Duration::from_millis(200));
    }
}
