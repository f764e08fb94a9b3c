//! Least privilege, asserted on the running agent: once its probes are
//! loaded, every thread keeps only the capabilities it still uses, and a
//! helper process keeps `CAP_SYS_ADMIN` (with `CAP_SYS_PTRACE`) to reach
//! the network namespaces of other services and create uprobes. The TLS
//! tests show the uprobes of processes found after the drop.
use std::process::Command;

use loupe_tests::{Agent, Fixture, free_port, loupe_bin, require_root, series};

/// One task's capability sets, from its `status` file.
#[derive(Debug, PartialEq, Eq)]
struct Sets {
    permitted: u64,
    effective: u64,
    inheritable: u64,
    ambient: u64,
    bounding: u64,
    no_new_privs: bool,
}

fn sets(status: &str) -> Sets {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("{name} in {status}"))
            .trim()
    };
    let hex = |name: &str| u64::from_str_radix(field(name), 16).unwrap();
    Sets {
        permitted: hex("CapPrm"),
        effective: hex("CapEff"),
        inheritable: hex("CapInh"),
        ambient: hex("CapAmb"),
        bounding: hex("CapBnd"),
        no_new_privs: field("NoNewPrivs") == "1",
    }
}

/// Every thread of `pid`, each with its sets.
fn threads(pid: u32) -> Vec<(String, Sets)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            Some((format!("{} {}", path.display(), name.trim()), sets(&status)))
        })
        .collect()
}

/// The child of `parent` whose command line contains `word`.
fn child_running(parent: u32, word: &str) -> Option<u32> {
    std::fs::read_dir("/proc").unwrap().find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The parent is the second field after the command's parentheses.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && String::from_utf8_lossy(&cmdline).contains(word)).then_some(pid)
    })
}

fn bits(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |set, bit| set | 1 << bit)
}

/// CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_BPF.
const AGENT_KEEPS: &[u32] = &[2, 19, 39];
/// CAP_SYS_PTRACE, CAP_SYS_ADMIN.
const HELPER_KEEPS: &[u32] = &[19, 21];

#[test]
fn the_running_agent_keeps_only_what_it_uses_and_a_helper_reaches_other_network_namespaces() {
    require_root();
    // A FastAPI service in a network namespace of its own, listening on
    // that namespace's loopback only: its OpenAPI document is reachable
    // from inside alone, which takes CAP_SYS_ADMIN (setns) the agent no
    // longer has once its probes are loaded.
    let port = free_port();
    let script = format!(
        "ip link set lo up && python3 -m uvicorn http_app:app --app-dir {} --host 127.0.0.1 \
         --port {port} --log-level warning & \
         while ! (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done; \
         echo ready; wait",
        loupe_tests::fixture("").display()
    );
    let server = Fixture::start("unshare", &["--net", "bash", "-c", &script]);
    assert_ne!(
        std::fs::read_link(format!("/proc/{}/ns/net", server.pid())).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "the service runs in a network namespace of its own"
    );
    let port_arg = port.to_string();
    let agent = Agent::start(&["--port", &port_arg, "--service", "isolated"]);
    // The FastAPI app's five routes, from its OpenAPI document.
    agent.wait_for(
        &series("loupe_route_templates", &[("service", "isolated")]),
        5.0,
    );
    assert!(
        agent.log().contains("capabilities dropped"),
        "{}",
        agent.log()
    );

    let agent_keeps = bits(AGENT_KEEPS);
    let tasks = threads(agent.pid());
    assert!(
        tasks.len() >= 2,
        "the agent's threads, not only its first: {tasks:?}"
    );
    for (task, sets) in &tasks {
        assert_eq!(
            *sets,
            Sets {
                permitted: agent_keeps,
                effective: agent_keeps,
                inheritable: 0,
                ambient: 0,
                bounding: agent_keeps,
                no_new_privs: true,
            },
            "{task}"
        );
    }

    let helper = child_running(agent.pid(), "helper").expect("the helper runs");
    let helper_keeps = bits(HELPER_KEEPS);
    for (task, sets) in threads(helper) {
        assert_eq!(
            sets,
            Sets {
                permitted: helper_keeps,
                effective: helper_keeps,
                inheritable: 0,
                ambient: 0,
                bounding: helper_keeps,
                no_new_privs: true,
            },
            "{task}"
        );
    }

    // `loupe check` says the same.
    let check = Command::new(loupe_bin()).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains(
            "the agent keeps CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_BPF; \
             its helper keeps CAP_SYS_PTRACE, CAP_SYS_ADMIN"
        ),
        "{text}"
    );

    // The helper ends with the agent.
    drop(agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{helper}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{helper}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the helper outlived the agent"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(server);
}
