//! `cargo xtask demo` as a newcomer meets it: every family of the
//! catalogue that the demo service can produce is in its scrape, and a stop
//! signal sent to the xtask process alone (as an IDE, a supervisor or
//! `timeout` sends it) stops everything the demo started. Runs the xtask
//! binary of `cargo xtask test` (`LOUPE_XTASK`) with the loupe under test.
//! Root required.
use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use loupe_tests::{free_port, http_get, loupe_bin, require_root, workspace};

/// Families the demo cannot show, and why (the test checks that they are
/// indeed absent, so that the list stays true).
const NOT_IN_THE_DEMO: &[(&str, &str)] = &[
    (
        "loupe_unparsed_connections_total",
        "every connection is HTTP/1.x",
    ),
    // The demo service speaks no gRPC; tests/tests/grpc.rs counts these.
    ("grpc_server_started_total", NO_GRPC),
    ("grpc_server_handled_total", NO_GRPC),
    ("grpc_server_handling_seconds", NO_GRPC),
    ("grpc_server_msg_received_total", NO_GRPC),
    ("grpc_server_msg_sent_total", NO_GRPC),
    ("grpc_client_started_total", NO_GRPC),
    ("grpc_client_handled_total", NO_GRPC),
    ("grpc_client_handling_seconds", NO_GRPC),
    ("grpc_client_msg_received_total", NO_GRPC),
    ("grpc_client_msg_sent_total", NO_GRPC),
];
const NO_GRPC: &str = "the demo service neither serves nor calls gRPC";

/// Family names of `docs/metrics.md` (its tables' first column).
fn catalogue() -> BTreeSet<String> {
    let text = fs::read_to_string(workspace().join("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

/// Families with at least one sample in `exposition` (histograms by their
/// base name).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exposition.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything it printed so far.
    output: String,
    /// The process groups it started.
    groups: Vec<i32>,
}

impl Demo {
    fn start(port: u16, service_port: u16) -> Self {
        let xtask = std::env::var("LOUPE_XTASK")
            .expect("LOUPE_XTASK is not set: run the tests with `cargo xtask test`");
        let command = format!(
            "exec {xtask} demo --port {port} --service-port {service_port} --loupe {} 2>&1",
            loupe_bin().display()
        );
        let mut child = Command::new("bash")
            .args(["-c", &command])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start xtask demo");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            output: String::new(),
            groups: Vec::new(),
        }
    }

    /// [`Demo::start`], once it says where to scrape.
    fn serving(port: u16, service_port: u16) -> Self {
        let mut demo = Self::start(port, service_port);
        assert!(
            demo.read_until("Scrape:", Duration::from_secs(300)),
            "the demo did not come up\n{}",
            demo.output
        );
        demo
    }

    /// Reads its output until a line starts with `prefix` (or it ends).
    fn read_until(&mut self, prefix: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(group) = line
                .rsplit_once("(process group ")
                .and_then(|(_, g)| g.strip_suffix(')'))
            {
                self.groups.push(group.parse().expect("a process group"));
            }
            self.output.push_str(&line);
            self.output.push('\n');
            if line.starts_with(prefix) {
                return true;
            }
        }
        false
    }

    /// Sends `signal` to the xtask process alone and waits for it to exit.
    fn stop(&mut self, signal: libc::c_int) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.read_until("\u{0}", Duration::from_millis(200));
                assert!(status.success(), "{status}\n{}", self.output);
                return;
            }
            assert!(Instant::now() < deadline, "still running\n{}", self.output);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that nothing it started runs, and its ports are closed.
    fn assert_all_gone(&self, ports: &[u16]) {
        assert!(
            self.groups.len() >= 5,
            "groups {:?}\n{}",
            self.groups,
            self.output
        );
        for &group in &self.groups {
            // SAFETY: signal 0 only checks whether the group has a member.
            let alive = unsafe { libc::kill(-group, 0) } == 0;
            let members = Command::new("ps")
                .args(["-o", "pid,stat,cmd", "-g", &group.to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            assert!(
                !alive,
                "process group {group} left running:\n{members}\n{}",
                self.output
            );
        }
        for &port in ports {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} still open"
            );
        }
        assert!(self.output.contains("demo: stopped"), "{}", self.output);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_demo_shows_every_family_it_can_and_sigterm_stops_all_of_it() {
    require_root();
    let (port, service_port) = (free_port(), free_port());
    let mut demo = Demo::serving(port, service_port);
    let mut wanted = catalogue();
    assert!(wanted.len() > 60, "{wanted:?}");
    for (family, _) in NOT_IN_THE_DEMO {
        assert!(wanted.remove(*family), "{family} is not in the catalogue");
    }
    // The collectors run every 5 s and the traffic goes on: a few rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let scrape = http_get(port, "/metrics").expect("scrape the demo").body;
        let present = families(&scrape);
        let missing: Vec<&String> = wanted.difference(&present).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        missing.is_empty(),
        "families missing from the demo's scrape: {missing:?}\n{}",
        demo.output
    );
    let scrape = http_get(port, "/metrics").expect("scrape the demo").body;
    for (family, why) in NOT_IN_THE_DEMO {
        assert!(
            !families(&scrape).contains(*family),
            "{family} is in the demo after all ({why}?): take it off the list"
        );
    }
    demo.stop(libc::SIGTERM);
    demo.assert_all_gone(&[port, service_port]);
}

#[test]
fn sigint_to_the_xtask_process_alone_stops_the_whole_demo() {
    require_root();
    let (port, service_port) = (free_port(), free_port());
    let mut demo = Demo::serving(port, service_port);
    demo.stop(libc::SIGINT);
    demo.assert_all_gone(&[port, service_port]);
}
