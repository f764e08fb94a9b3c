//! What a user sees when they get something wrong, and `loupe check`.
use std::{
    fs,
    process::{Command, Output},
};

use loupe_tests::{Agent, free_port, loupe_bin, require_root, targets};

fn loupe(args: &[&str]) -> Output {
    Command::new(loupe_bin())
        .args(args)
        .output()
        .expect("run loupe")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn listen() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn unknown_pid_is_an_error() {
    require_root();
    // PIDs above the kernel's maximum (4194304) never exist.
    let out = loupe(&["run", "--pid", "4999999", "--listen", &listen()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no process with PID 4999999"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_regex_is_an_error() {
    let out = loupe(&["run", "--process", "uvicorn(", "--listen", &listen()]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("bad --process regular expression `uvicorn(`"),
        "{text}"
    );
}

#[test]
fn missing_and_malformed_config_files_are_errors() {
    let out = loupe(&["run", "--config", "/nonexistent/loupe.toml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read config file /nonexistent/loupe.toml"),
        "{}",
        stderr(&out)
    );
    let path = std::env::temp_dir().join(format!("loupe-cli-{}.toml", std::process::id()));
    fs::write(
        &path,
        "[[services]]\nname = \"x\"\nports = [8000]\nprocess = [\"y\"]\n",
    )
    .unwrap();
    let out = loupe(&["run", "--config", path.to_str().unwrap()]);
    fs::remove_file(&path).unwrap();
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("line 4") && text.contains("unknown field `process`"),
        "{text}"
    );
}

#[test]
fn config_check_prints_rules_or_names_the_bad_line() {
    let path = std::env::temp_dir().join(format!("loupe-rules-{}.toml", std::process::id()));
    let rules = "[[rules]]\nfamily = \"tool\"\nroute = \"/run/{tool_name}\"\n\n\
                 [[rules]]\nfamily = \"agent\"\nroute = \"/run\"\n";
    fs::write(&path, rules).unwrap();
    let out = loupe(&["config", "check", path.to_str().unwrap()]);
    let text = stderr(&out);
    assert!(!out.status.success());
    assert!(
        text.contains("line 5: rule") && text.contains("agent_name = \"path:agent_name\""),
        "{text}"
    );
    fs::write(&path, &rules[..rules.find("\n\n").unwrap()]).unwrap();
    let out = loupe(&["config", "check", path.to_str().unwrap()]);
    fs::remove_file(&path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("rule tool /run/{tool_name}: any method /run/{tool_name} feeds tool")
            && text.contains("tool_name: path parameter `tool_name`")
            && text.contains("no [[services]]"),
        "{text}"
    );
}

#[test]
fn nothing_to_monitor_is_an_error() {
    let out = loupe(&["run"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing to monitor"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_port_nobody_listens_on_is_waited_for() {
    let port = free_port();
    let agent = Agent::start(&["--port", &port.to_string(), "--service", "later"]);
    let scrape = agent.scrape();
    assert_eq!(scrape.get(&targets("later")), Some(0.0));
    assert!(
        agent
            .log()
            .contains("no process matches yet; waiting for one to appear"),
        "{}",
        agent.log()
    );
}

#[test]
fn loupe_never_tracks_itself() {
    // The pattern matches the agent's own command line and nothing else.
    let agent = Agent::start(&["--process", "self-match-token", "--service", "me"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let scrape = agent.scrape();
    assert_eq!(scrape.get(&targets("me")), Some(0.0));
    assert!(
        agent.log().contains("waiting for one to appear"),
        "{}",
        agent.log()
    );
}

#[test]
fn check_reports_the_hooks_of_this_kernel() {
    require_root();
    let out = loupe(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for line in [
        "tracepoint          yes",
        "ring buffer         yes",
        "loupe probes        yes",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for key in [
        "kernel",
        "btf",
        "tracefs",
        "CAP_BPF",
        "raw tracepoint",
        "uprobe",
        "kprobe",
        "fentry",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "no {key} line:\n{text}"
        );
    }
}

#[test]
fn a_service_without_a_name_is_named_after_what_the_interpreter_runs() {
    require_root();
    let port = free_port();
    let _server = loupe_tests::served(
        &format!("exec python3 -m http.server {port} --bind 127.0.0.1"),
        port,
    );
    let agent = Agent::start(&["--port", &port.to_string()]);
    // `python3 -m http.server`: the module's last part, not `python3.11`.
    agent.wait_for(&targets("server"), 1.0);
    assert!(
        agent
            .log()
            .contains("service named after what its process runs"),
        "{}",
        agent.log()
    );
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    // `loupe config check FILE | head -1`, the reader gone before loupe
    // writes: a pipe whose read end is already closed.
    use std::os::unix::process::ExitStatusExt as _;
    let example = loupe_tests::workspace().join("deploy/loupe.example.toml");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(loupe_bin())
        .args(["config", "check"])
        .arg(&example)
        .stdout(writer)
        .output()
        .expect("run loupe");
    let stderr = stderr(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
