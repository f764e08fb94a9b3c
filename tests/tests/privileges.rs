//! What loupe does about the machine's state and its own privileges: it
//! mounts tracefs when nobody did, and says clearly when it may not load
//! probes. This file holds one test so that no other agent of the test run
//! depends on tracefs while it is unmounted.
use std::process::Command;

use loupe_tests::{Agent, free_port, loupe_bin, require_root};

const TRACEFS: &str = "/sys/kernel/tracing";

fn tracefs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(TRACEFS))
}

fn unprivileged(args: &[&str]) -> std::process::Output {
    // `nobody`, no capabilities.
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(loupe_bin())
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn tracefs_is_mounted_when_missing_and_privileges_are_checked() {
    require_root();
    // A fresh machine boots without tracefs; the agent mounts it itself.
    while tracefs_mounted() {
        let status = Command::new("umount").arg(TRACEFS).status().unwrap();
        assert!(status.success(), "umount {TRACEFS}");
    }
    let agent = Agent::start(&["--port", &free_port().to_string(), "--service", "t"]);
    assert!(tracefs_mounted(), "the agent did not mount tracefs");
    assert!(agent.log().contains("mounted tracefs"), "{}", agent.log());
    drop(agent);

    let check = unprivileged(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        !check.status.success(),
        "check passed without privileges:\n{text}"
    );
    assert!(text.contains("loupe cannot run here"), "{text}");

    let run = unprivileged(&[
        "run",
        "--port",
        "1",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("loupe needs root or CAP_BPF") || stderr.contains("run loupe as root"),
        "{stderr}"
    );
}
