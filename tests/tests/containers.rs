//! Selecting a service by container id or pod UID: a real HTTP server moved
//! into a cgroup laid out as the kubelet (systemd driver) and containerd
//! lay out a pod's container, next to an identical server outside it.
//! Root required: `cargo xtask test`.
use std::fs;

use loupe_tests::{
    Agent,
    cgroup::{PodCgroup, UID},
    http_server, requests, series, targets,
};

#[test]
fn services_are_selected_by_container_id_and_pod_uid() {
    let id = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xc0ffee);
    let (inside, server) = http_server();
    let (outside, _other) = http_server();
    let cgroup = PodCgroup::create(&id);
    cgroup.enter(server.pid());
    let cgroup_text = fs::read_to_string(format!("/proc/{}/cgroup", server.pid())).unwrap();
    assert!(cgroup_text.contains(&id), "{cgroup_text}");

    for (flag, value) in [("--container", &id[..12]), ("--pod-uid", UID)] {
        let svc = "in-pod";
        let agent = Agent::start(&[flag, value, "--service", svc]);
        let scrape = agent.wait_for(&targets(svc), 1.0);
        assert_eq!(scrape.get(&targets(svc)), Some(1.0), "{flag}");
        // The outside server's requests first: had they been counted, they
        // would be by the time the inside ones are.
        requests(outside, 5);
        requests(inside, 37);
        let total = agent.wait_for_total("agent_requests_total", svc, 37.0);
        assert_eq!(
            total, 37.0,
            "{flag}: the server outside the pod is not measured"
        );
        let scrape = agent.scrape();
        assert_eq!(
            scrape.get(&series(
                "tcp_connections_opened_total",
                &[("service", svc), ("direction", "inbound")]
            )),
            Some(37.0)
        );
        agent.assert_nothing_lost();
    }
    drop(server);
    // The process must have left the cgroup before it can be removed.
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(cgroup);
}
