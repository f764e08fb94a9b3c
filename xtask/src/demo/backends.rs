//! What the demo service talks to, private to one demo run: a PostgreSQL
//! cluster in the run's directory (the system's cluster is left alone), a
//! Redis server, the fake model provider, and on request a Prometheus. Each
//! runs in a process group of its own and stops when dropped.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::sh::{self, Group, free_port, root, wait_port};

/// A server of the demo: where to reach it, and its process group (stopped
/// when this is dropped).
pub struct Backend {
    pub url: String,
    server: Option<Group>,
    start: Box<dyn Fn() -> anyhow::Result<Group>>,
}

impl Backend {
    /// Starts the server with `start` (which returns once it answers).
    fn started(
        url: String,
        start: impl Fn() -> anyhow::Result<Group> + 'static,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            server: Some(start()?),
            start: Box::new(start),
        })
    }

    /// A server started once, that cannot be restarted.
    fn running(url: String, server: Group) -> Self {
        Self {
            url,
            server: Some(server),
            start: Box::new(|| bail!("this server is not restarted")),
        }
    }

    /// Stops the server and starts it again, on the same port with the
    /// same data (the soak's faults).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.server = None;
        self.server = Some((self.start)()?);
        Ok(())
    }
}

/// `initdb`, `postgres` and `pg_isready` of the newest PostgreSQL
/// installed (Debian's layout).
fn postgres_bin() -> anyhow::Result<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed")?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .max()
        .context("no PostgreSQL server in /usr/lib/postgresql")
}

/// A PostgreSQL cluster in `dir` (trust authentication over loopback, user
/// `postgres`), on a free port; its log in `dir/postgres.log`.
pub fn postgres(dir: &Path) -> anyhow::Result<Backend> {
    let bin = postgres_bin()?;
    let pg_isready = bin.join("pg_isready");
    let data = dir.join("postgres");
    fs::create_dir_all(&data)?;
    sh::run(
        Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(dir),
    )?;
    let as_postgres = move |program: &str| {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin.join(program));
        command
    };
    sh::quiet(
        as_postgres("initdb")
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
            .arg(&data),
    )?;
    let port = free_port()?;
    let log_path = dir.join("postgres.log");
    let socket_dir = dir.to_path_buf();
    let start = move || {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let server = Group::spawn(
            as_postgres("postgres")
                .stderr(log)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&socket_dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
            "PostgreSQL",
            libc::SIGINT, // fast shutdown: sessions are cut, nothing waits
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sh::succeeds(Command::new(&pg_isready).args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])) {
            if Instant::now() > deadline {
                bail!("the demo's PostgreSQL did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    };
    Backend::started(
        format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
        start,
    )
}

/// A Redis server on a free port, nothing saved; its log in
/// `dir/redis.log`.
pub fn redis(dir: &Path) -> anyhow::Result<Backend> {
    let port = free_port()?;
    let log = dir.join("redis.log");
    let start = move || {
        let server = Group::spawn(
            Command::new("redis-server")
                .arg("--logfile")
                .arg(&log)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                ]),
            "Redis",
            libc::SIGTERM,
        )?;
        wait_port(port, 10, "the demo's Redis")?;
        Ok(server)
    };
    Backend::started(format!("redis://127.0.0.1:{port}/0"), start)
}

/// The fake model provider of the tests (OpenAI- and Anthropic-style
/// answers with usage), so that the service's model calls are real calls.
pub fn model_provider() -> anyhow::Result<Backend> {
    let port = free_port()?;
    let server = Group::spawn(
        Command::new("python3")
            .args(["-m", "uvicorn", "model_provider:app", "--app-dir"])
            .arg(root().join("tests/fixtures"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--log-level", "warning"]),
        "the model provider",
        libc::SIGTERM,
    )?;
    wait_port(port, 30, "the demo's model provider")?;
    Ok(Backend::running(format!("http://127.0.0.1:{port}"), server))
}

/// An MCP tool server (the Python SDK's FastMCP, stateless, answering in
/// JSON) with the agent service's tools, which the service calls; `port`
/// is where it listens (loupe watches it as a service of its own).
pub fn mcp_tools() -> anyhow::Result<(Backend, u16)> {
    let port = free_port()?;
    let server = Group::spawn(
        Command::new("python3")
            .arg(root().join("tests/fixtures/mcp_py.py"))
            .args(["server", &port.to_string(), "json", "stateless"])
            .stdout(std::process::Stdio::null()),
        "the MCP tool server",
        libc::SIGTERM,
    )?;
    wait_port(port, 30, "the demo's MCP tool server")?;
    let backend = Backend::running(format!("http://127.0.0.1:{port}/mcp"), server);
    Ok((backend, port))
}

/// A Prometheus server scraping loupe every 5 s with the shipped recording
/// and alert rules (`deploy/prometheus`), its data in `dir`.
pub fn prometheus(dir: &Path, loupe_port: u16) -> anyhow::Result<Backend> {
    let port = free_port()?;
    let rules = root().join("deploy/prometheus");
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
                 rule_files:\n  - {}\n  - {}\n\
                 scrape_configs:\n  - job_name: loupe\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{loupe_port}']\n",
            rules.join("recording-rules.yml").display(),
            rules.join("alert-rules.yml").display(),
        ),
    )?;
    let server = Group::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn"),
        "Prometheus",
        libc::SIGTERM,
    )?;
    wait_port(port, 30, "the demo's Prometheus")?;
    Ok(Backend::running(format!("http://127.0.0.1:{port}"), server))
}
