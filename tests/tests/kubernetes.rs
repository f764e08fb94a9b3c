//! Selecting a service by Kubernetes namespace, pod name and container
//! name, and the `k8s_*` labels on its metrics: a real HTTP server moved into a pod's container cgroup, and the
//! node's pod list from `fixtures/k8s_api.py`, a stand-in for the API server
//! (no cluster runs here) speaking HTTPS with a CA of the test's own and
//! checking the service account token. Root required: `cargo xtask test`.
use std::{fs, path::Path, process::Command};

use loupe_tests::{
    Agent, Fixture,
    cgroup::{PodCgroup, UID},
    http_server, requests, series,
};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token";

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let script = "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
          -keyout ca.key -out ca.crt -days 1 -subj /CN=loupe-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
          -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
          -out server.crt -days 1 -extfile ext 2>/dev/null";
    let status = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .expect("openssl");
    assert!(status.success());
}

#[test]
fn services_are_selected_by_namespace_pod_and_container_name() {
    let dir = std::env::temp_dir().join(format!("loupe-k8s-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let id = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xbeef);
    let d = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut api = Fixture::python(
        "k8s_api.py",
        &[
            &d("server.crt"),
            &d("server.key"),
            TOKEN,
            "node-1",
            &UID.to_uppercase(),
            "agents",
            "agent-api-7c9f-x2k",
            "api",
            &id,
        ],
    );
    let api_port = api.ready.trim_start_matches("ready ").to_owned();
    fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();

    let (inside, server) = http_server();
    let (outside, _other) = http_server();
    let cgroup = PodCgroup::create(&id);
    cgroup.enter(server.pid());

    let config = |token_file: &str| {
        format!(
            "[kubernetes]\nnode_name = \"node-1\"\napi_url = \"https://127.0.0.1:{api_port}\"\n\
             token_file = \"{token_file}\"\nca_file = \"{}\"\nrefresh_interval = \"1s\"\n\
             [[services]]\nname = \"api\"\nk8s_namespace = \"agents\"\n\
             k8s_pods = [\"agent-api-.*\"]\nk8s_containers = [\"api\"]\n\
             [[services]]\nname = \"sidecar\"\nk8s_namespace = \"agents\"\n\
             k8s_containers = [\"envoy\"]\n",
            d("ca.crt")
        )
    };
    fs::write(dir.join("loupe.toml"), config(&d("token"))).unwrap();
    let agent = Agent::start(&["--config", &d("loupe.toml")]);
    let up = series("loupe_collector_up", &[("collector", "kubernetes")]);
    agent.wait_for(&up, 1.0);
    assert_eq!(agent.wait_for_total("loupe_targets", "api", 1.0), 1.0);
    requests(outside, 5);
    requests(inside, 41);
    let total = agent.wait_for_total("agent_requests_total", "api", 41.0);
    assert_eq!(total, 41.0, "only the pod's server is measured");
    let scrape = agent.scrape();
    assert_eq!(
        scrape.total("loupe_targets", "sidecar"),
        0.0,
        "no container named envoy"
    );
    // Every series of the service names its pod.
    let pod = "k8s_container=\"api\",k8s_namespace=\"agents\",k8s_pod=\"agent-api-7c9f-x2k\"";
    let requests_of_pod: f64 = scrape
        .matching("agent_requests_total{")
        .iter()
        .filter(|(series, _)| series.contains(pod))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests_of_pod, 41.0, "{}", scrape.text);
    assert_eq!(
        scrape.get(&format!("loupe_targets{{{pod},service=\"api\"}}")),
        Some(1.0),
        "{}",
        scrape.text
    );
    // The configured service itself (processes outside any pod) has none.
    assert_eq!(
        scrape.get(
            "loupe_targets{k8s_container=\"\",k8s_namespace=\"\",k8s_pod=\"\",service=\"api\"}"
        ),
        Some(0.0)
    );
    agent.assert_nothing_lost();
    assert!(api.expect("request ").ends_with("200"));
    assert!(!agent.log().contains(TOKEN), "the token is never logged");
    // The pod's process ends: the pod's own gauges go with it (its counted
    // series expire after series_ttl).
    drop(server);
    let gauges = [
        "loupe_targets{",
        "loupe_tracked_sockets{",
        "loupe_route_templates{",
        "loupe_endpoint_overflow_total{",
        "loupe_label_overflow_total{",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let scrape = agent.scrape();
        let left: Vec<&str> = gauges
            .iter()
            .flat_map(|family| scrape.matching(family))
            .map(|(series, _)| series)
            .filter(|series| series.contains(pod))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left:?} stay");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(agent.log().contains("pod gone"), "{}", agent.log());
    drop(agent);

    // A token the API server refuses: the lookup says why, once, and
    // selects nothing.
    fs::write(dir.join("wrong-token"), "not-the-token").unwrap();
    fs::write(dir.join("loupe.toml"), config(&d("wrong-token"))).unwrap();
    let agent = Agent::start(&["--config", &d("loupe.toml")]);
    agent.wait_for(&up, 0.0);
    let errors = series(
        "loupe_collector_errors_total",
        &[("collector", "kubernetes")],
    );
    agent.wait_for_at_least(&errors, 2.0);
    let log = agent.log();
    assert_eq!(log.matches("token was refused").count(), 1, "{log}");
    assert_eq!(agent.scrape().total("loupe_targets", "api"), 0.0);
    drop(agent);
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(cgroup);
    let _ = fs::remove_dir_all(&dir);
}
