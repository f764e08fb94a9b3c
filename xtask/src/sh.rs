//! Running commands with their output shown, and small probes of the machine.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// A `cargo` command without the variables `cargo run` set for xtask
/// itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`...): build scripts that
/// watch them (ring's) would otherwise see them change between a plain
/// `cargo build` and one run from here, and rebuild each time.
pub fn cargo() -> Command {
    let mut command = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_run = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_run {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `cmd`, failing with its command line if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` with its output hidden, shown only if it fails.
pub fn quiet(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", show(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Whether `cmd` succeeds, its output hidden.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Standard output of `cmd`, if it succeeds.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn show(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Waits up to `seconds` for a port to open.
pub fn wait_port(port: u16, seconds: u64, what: &str) -> anyhow::Result<()> {
    for _ in 0..seconds * 10 {
        if port_open(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not open 127.0.0.1:{port} within {seconds}s")
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// A child process stopped with SIGTERM (and reaped) when dropped.
pub struct Stop(pub Child);

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our own child's PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// A port nothing listens on now (the kernel's pick).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// The stop signal received, if any (see [`catch_stop_signals`]).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP only ask this process to stop
/// ([`stop_signal`] says so): whoever sent it (a terminal's Ctrl-C, a
/// supervisor, `timeout`), the caller stops its children before it exits.
pub fn catch_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
}

/// The name of the stop signal received, if one was.
pub fn stop_signal() -> Option<&'static str> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("SIGHUP"),
    }
}

/// Runs `cmd` (and what it starts, which inherits it) at the lowest CPU
/// priority: it gets the CPU only when nothing else wants it.
fn lowest_priority(cmd: &mut Command) {
    // SAFETY: `setpriority` is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            Ok(())
        });
    }
}

/// A command run in the background at the lowest CPU priority, while the
/// foreground work (the integration tests) leaves the CPU idle much of the
/// time; stopped if dropped unfinished. `cargo xtask test` builds what its
/// later steps need this way.
pub struct Background {
    group: Group,
}

impl Background {
    pub fn start(command: &mut Command, what: &'static str) -> anyhow::Result<Self> {
        lowest_priority(command);
        Ok(Self {
            group: Group::spawn(command, what, libc::SIGTERM)?,
        })
    }

    /// Waits for it; an error if it failed.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let what = self.group.what();
        let status = self
            .group
            .child()
            .wait()
            .with_context(|| format!("waiting for {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status}; its output is above)");
        }
        Ok(())
    }
}

/// A child in a process group of its own (so a terminal's Ctrl-C reaches
/// only this process, which stops its children in order), stopped with
/// its whole group when dropped: `signal`, then SIGKILL for what is left
/// after a grace period.
pub struct Group {
    child: Child,
    what: &'static str,
    signal: libc::c_int,
}

/// How long a group has to stop before it is killed.
const GRACE: Duration = Duration::from_secs(5);

impl Group {
    /// Starts `command` in a new process group; `signal` stops it.
    pub fn spawn(
        command: &mut Command,
        what: &'static str,
        signal: libc::c_int,
    ) -> anyhow::Result<Self> {
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {what} ({})", show(command)))?;
        eprintln!("+ {} (process group {})", show(command), child.id());
        Ok(Self {
            child,
            what,
            signal,
        })
    }

    /// Its exit status, if it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The leader's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The leader, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: plain syscalls on the process group we created.
        unsafe { libc::kill(group, self.signal) };
        let deadline = Instant::now() + GRACE;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (workers of a leader that exited),
        // until none is left.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        let deadline = Instant::now() + GRACE;
        // SAFETY: signal 0 only asks whether the group has a member.
        while unsafe { libc::kill(group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
