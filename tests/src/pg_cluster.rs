//! A PostgreSQL cluster of a test's own, which the test may kill and start
//! again without disturbing the shared server other tests use.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{Fixture, served};

/// `initdb` and `postgres` of the newest PostgreSQL installed (Debian's
/// layout; `cargo xtask services` installs it).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (cargo xtask services)")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server binary")
}

/// A cluster on 127.0.0.1:`port` (trust authentication, user `postgres`,
/// no fsync), in a directory removed when dropped.
pub struct PgCluster {
    pub port: u16,
    /// `ssl = on`, with a self-signed certificate.
    tls: bool,
    dir: PathBuf,
    /// Where `initdb`, `postgres`, `pg_ctl` and `pg_isready` are.
    bin: PathBuf,
    server: Option<Fixture>,
}

impl PgCluster {
    /// Creates the cluster and starts it.
    pub fn start(port: u16) -> Self {
        Self::create(port, false)
    }

    /// [`PgCluster::start`], accepting TLS (`ssl = on`; a self-signed
    /// certificate in its data directory).
    pub fn start_tls(port: u16) -> Self {
        Self::create(port, true)
    }

    fn create(port: u16, tls: bool) -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("loupe-pg-{port}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("cluster directory");
        succeed(Command::new("chown").arg("postgres:postgres").arg(&dir));
        succeed(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(data(&dir)),
        );
        if tls {
            let data = data(&dir);
            succeed(
                Command::new("runuser")
                    .args(["-u", "postgres", "--", "openssl", "req", "-x509"])
                    .args(["-newkey", "rsa:2048", "-nodes", "-days", "2"])
                    .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                    .arg(data.join("server.key"))
                    .arg("-out")
                    .arg(data.join("server.crt"))
                    .stderr(std::process::Stdio::null()),
            );
        }
        let mut cluster = Self {
            port,
            tls,
            dir,
            bin,
            server: None,
        };
        cluster.restart();
        cluster
    }

    /// Starts the server (again), and waits until it accepts sessions
    /// (after a crash it first replays its log).
    pub fn restart(&mut self) {
        let command = format!(
            "exec runuser -u postgres -- {} -D {} -p {} -k {} -c listen_addresses=127.0.0.1 \
             -c fsync=off -c ssl={}",
            self.bin.join("postgres").display(),
            data(&self.dir).display(),
            self.port,
            self.dir.display(),
            if self.tls { "on" } else { "off" }
        );
        self.server = Some(served(&command, self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self.port.to_string();
        while !Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port])
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on {port} is not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as a crash would: an immediate shutdown (every
    /// backend quits at once, recovery runs at the next start).
    pub fn kill(&mut self) {
        succeed(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(data(&self.dir)),
        );
        self.server = None;
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.server = None;
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Runs `command`, asserting success.
fn succeed(command: &mut Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
