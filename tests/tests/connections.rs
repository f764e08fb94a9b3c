//! Connection metrics measured by the probes on real servers and clients.
//! Root required: run with `cargo xtask test`.
use loupe_tests::{
    Agent, Fixture, KeepAlive, Nginx, active, connect, free_port, http_server, opened, requests,
    series, targets, watch_port,
};

fn tracked_sockets(service: &str) -> String {
    series("loupe_tracked_sockets", &[("service", service)])
}

#[test]
fn http_server_connections_are_counted_exactly() {
    let (port, _server) = http_server();
    let agent = watch_port(port, "web", &[]);

    requests(port, 137);
    agent.wait_for(&opened("web", "inbound"), 137.0);
    agent.wait_for(&active("web", "inbound"), 0.0);

    // Held open: the gauge counts them, then returns to zero.
    let held = connect(port, 12);
    agent.wait_for(&active("web", "inbound"), 12.0);
    drop(held);
    agent.wait_for(&active("web", "inbound"), 0.0);
    let scrape = agent.wait_for(&opened("web", "inbound"), 149.0);
    assert_eq!(
        scrape.get(&opened("web", "outbound")),
        None,
        "{}",
        scrape.text
    );
}

#[test]
fn preforked_workers_are_followed() {
    let port = free_port();
    let server = Fixture::python("prefork_server.py", &[&port.to_string(), "4"]);
    // Selected by PID: the workers are found as its children.
    let agent = Agent::start(&["--pid", &server.pid().to_string(), "--service", "prefork"]);
    agent.wait_for(&targets("prefork"), 5.0);
    requests(port, 61);
    agent.wait_for(&opened("prefork", "inbound"), 61.0);
    agent.wait_for(&active("prefork", "inbound"), 0.0);
    // Known TCP fds: the listener in each of the five processes; the
    // accepted connections' fds were closed again.
    agent.wait_for(&tracked_sockets("prefork"), 5.0);
}

#[test]
fn fork_per_connection_server_is_counted_once_per_connection() {
    let port = free_port();
    let _server = Fixture::python("prefork_server.py", &[&port.to_string(), "per-connection"]);
    let agent = watch_port(port, "forking", &[]);
    requests(port, 40);
    agent.wait_for(&opened("forking", "inbound"), 40.0);
    agent.wait_for(&active("forking", "inbound"), 0.0);
    // Every per-connection child has exited again.
    agent.wait_for(&targets("forking"), 1.0);
}

/// Children fork while others exit, on four connections at a time (one
/// inetd-style child per connection, whose requests are counted): their
/// bits share words of the probes' tracked bitmap (consecutive PIDs),
/// which the probes set on fork while the agent clears those of exited
/// children. Every child's request is counted.
#[test]
fn children_forked_while_others_exit_are_all_counted() {
    const CLIENTS: usize = 4;
    const EACH: usize = 60;
    let port = free_port();
    let server = Fixture::python("prefork_server.py", &[&port.to_string(), "inetd"]);
    let agent = Agent::start(&["--pid", &server.pid().to_string(), "--service", "churn"]);
    agent.wait_for(&targets("churn"), 1.0);
    agent.wait_for_log("no OpenAPI document");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || requests(port, EACH)))
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    let expected = (CLIENTS * EACH) as f64;
    let total = agent.wait_for_total("agent_requests_total", "churn", expected);
    assert_eq!(total, expected);
    agent.wait_for(&opened("churn", "inbound"), expected);
    agent.assert_nothing_lost();
}

#[test]
fn inetd_style_children_are_read_through_their_dup2_fds() {
    let port = free_port();
    let server = Fixture::python("prefork_server.py", &[&port.to_string(), "inetd"]);
    let agent = Agent::start(&["--pid", &server.pid().to_string(), "--service", "inetd"]);
    agent.wait_for(&targets("inetd"), 1.0);
    // The agent's OpenAPI fetch is answered after a second by a child the
    // agent files meanwhile: it is neither counted nor left active.
    agent.wait_for_log("no OpenAPI document");
    requests(port, 29);
    agent.wait_for(&opened("inetd", "inbound"), 29.0);
    agent.wait_for(&active("inetd", "inbound"), 0.0);
    // Each child reads the request on fd 0 and answers on fd 1, both dup2
    // copies of a socket it inherited before the agent could file it.
    let total = agent.wait_for_total("agent_requests_total", "inetd", 29.0);
    let scrape = agent.scrape();
    assert_eq!(total, 29.0, "{}", scrape.text);
    assert_eq!(
        scrape.get(&series(
            "loupe_unparsed_connections_total",
            &[("service", "inetd")]
        )),
        None,
        "{}",
        scrape.text
    );
}

/// Threads of `pid` blocked in `accept` or `accept4` now.
fn blocked_in_accept(pid: u32) -> usize {
    #[cfg(target_arch = "x86_64")]
    const ACCEPT: [&str; 2] = ["43", "288"];
    #[cfg(target_arch = "aarch64")]
    const ACCEPT: [&str; 2] = ["202", "242"];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("syscall")).ok())
        .filter(|call| ACCEPT.contains(&call.split(' ').next().unwrap_or("")))
        .count()
}

/// A JVM's acceptor thread, or a pre-threaded server's, sits in `accept`
/// when the agent attaches: the probes never saw that call enter. The
/// connections such threads return are still read, from the first
/// (regression: Tomcat's first keep-alive connection went uncounted when
/// it came before the agent's own OpenAPI fetch).
#[test]
fn connections_accepted_by_threads_blocked_before_the_agent_are_read() {
    const ACCEPTORS: usize = 8;
    const CONNECTIONS: usize = 13;
    const PER_CONNECTION: usize = 3;
    let port = free_port();
    let server = Fixture::python(
        "raw_http_server.py",
        &[&port.to_string(), &ACCEPTORS.to_string()],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocked_in_accept(server.pid()) < ACCEPTORS {
        assert!(
            std::time::Instant::now() < deadline,
            "the acceptor threads never blocked in accept"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let agent = watch_port(port, "acceptors", &[]);
    // The OpenAPI fetch takes one of them; seven are left whose accept
    // began before the agent, and they answer the first seven connections.
    agent.wait_for_log("no OpenAPI document");
    for _ in 0..CONNECTIONS {
        let mut client = KeepAlive::connect(port);
        for _ in 0..PER_CONNECTION {
            assert_eq!(client.request("GET", "/writev", ""), 200);
        }
    }
    let expected = (CONNECTIONS * PER_CONNECTION) as f64;
    let total = agent.wait_for_total("agent_requests_total", "acceptors", expected);
    let scrape = agent.scrape();
    assert_eq!(total, expected, "{}", scrape.text);
    agent.wait_for(&opened("acceptors", "inbound"), CONNECTIONS as f64);
    agent.wait_for(&active("acceptors", "inbound"), 0.0);
    agent.assert_nothing_lost();
}

#[test]
fn outbound_connections_are_counted_per_peer() {
    // Started first, the agent finds the client by its command line.
    let agent = Agent::start(&[
        "--process",
        "tcp_client[.]py --tag peers",
        "--service",
        "client",
    ]);
    let mut client = Fixture::python("tcp_client.py", &["--tag", "peers"]);
    agent.wait_for(&targets("client"), 1.0);
    client.command("open 127.0.0.1 6379 5", "opened");
    client.command("open 127.0.0.1 5432 3", "opened");
    let redis = series(
        "tcp_connections_active_by_peer",
        &[("service", "client"), ("peer", "127.0.0.1:6379")],
    );
    let postgres = series(
        "tcp_connections_active_by_peer",
        &[("service", "client"), ("peer", "127.0.0.1:5432")],
    );
    agent.wait_for(&redis, 5.0);
    agent.wait_for(&postgres, 3.0);
    agent.wait_for(&opened("client", "outbound"), 8.0);
    agent.wait_for(&active("client", "outbound"), 8.0);
    client.command("close", "closed 8");
    agent.wait_for(&redis, 0.0);
    agent.wait_for(&postgres, 0.0);
    let scrape = agent.wait_for(&active("client", "outbound"), 0.0);
    assert_eq!(
        scrape.get(&opened("client", "inbound")),
        None,
        "{}",
        scrape.text
    );
}

#[test]
fn connections_open_before_the_agent_are_counted_at_the_first_scrape() {
    let (port, _server) = http_server();
    let held = connect(port, 7);
    let mut client = Fixture::python("tcp_client.py", &["127.0.0.1", "6379", "4"]);
    let agent = Agent::start(&[
        "--port",
        &port.to_string(),
        "--pid",
        &client.pid().to_string(),
        "--service",
        "early",
    ]);
    // No waiting: ready means the first scan is done.
    let scrape = agent.scrape();
    assert_eq!(
        scrape.get(&active("early", "inbound")),
        Some(7.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.get(&active("early", "outbound")),
        Some(4.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.get(&opened("early", "inbound")),
        None,
        "opened before loupe"
    );
    drop(held);
    client.command("close", "closed 4");
    agent.wait_for(&active("early", "inbound"), 0.0);
    agent.wait_for(&active("early", "outbound"), 0.0);
}

#[test]
fn a_target_that_re_execs_keeps_being_measured() {
    let port = free_port();
    let mut process = Fixture::python("reexec_server.py", &[&port.to_string()]);
    let agent = Agent::start(&["--pid", &process.pid().to_string(), "--service", "reexec"]);
    agent.wait_for(&targets("reexec"), 1.0);
    // Same PID, new program, a listener created after loupe attached.
    process.command("exec", "ready");
    requests(port, 23);
    agent.wait_for(&opened("reexec", "inbound"), 23.0);
    agent.wait_for(&active("reexec", "inbound"), 0.0);
    agent.wait_for(&tracked_sockets("reexec"), 1.0);
}

#[test]
fn peers_beyond_64_share_the_overflow_label() {
    let listeners = Fixture::python("listeners.py", &["70"]);
    let ports: Vec<&str> = listeners.ready.split_whitespace().skip(1).collect();
    assert_eq!(ports.len(), 70);
    let agent = Agent::start(&[
        "--process",
        "tcp_client[.]py --tag many",
        "--service",
        "many",
    ]);
    let mut client = Fixture::python("tcp_client.py", &["--tag", "many"]);
    agent.wait_for(&targets("many"), 1.0);
    for port in ports {
        client.command(&format!("open 127.0.0.1 {port} 1"), "opened");
    }
    let scrape = agent.wait_for(&active("many", "outbound"), 70.0);
    let peers = scrape.matching("tcp_connections_active_by_peer{");
    assert_eq!(peers.len(), 65, "64 peers and __other__: {peers:?}");
    let other = series(
        "tcp_connections_active_by_peer",
        &[("service", "many"), ("peer", "__other__")],
    );
    assert_eq!(scrape.get(&other), Some(6.0), "{}", scrape.text);
    assert_eq!(peers.iter().map(|(_, v)| v).sum::<f64>(), 70.0);
}

#[test]
fn nginx_workers_are_measured() {
    let port = free_port();
    let nginx = Nginx::start(port, "location / { return 200 \"ok\\n\"; }");
    let agent = Agent::start(&[
        "--pid",
        &nginx.server.pid().to_string(),
        "--service",
        "nginx",
    ]);
    // bash, the nginx master and its two workers.
    agent.wait_for(&targets("nginx"), 4.0);
    requests(port, 101);
    agent.wait_for(&opened("nginx", "inbound"), 101.0);
    agent.wait_for(&active("nginx", "inbound"), 0.0);
}
