//! `cargo xtask demo`: the README's first command. Builds loupe, starts the
//! demo agent service (FastAPI under uvicorn with two workers) with a
//! PostgreSQL, a Redis and a model provider of its own, and loupe beside it
//! with its collectors; keeps traffic of every kind flowing, prints where
//! to scrape and what to look at, and runs until a stop signal (Ctrl-C,
//! SIGTERM, SIGHUP), then stops everything it started.
pub mod backends;

use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    setup,
    sh::{self, Group, catch_stop_signals, is_root, port_open, root, stop_signal, wait_port},
};

/// The demo's service name (the `service` label).
const SERVICE: &str = "agent-api";
/// The MCP tool server the demo service calls, watched as a service too.
const TOOLS_SERVICE: &str = "agent-tools";

pub struct Options {
    /// loupe's /metrics port.
    pub port: u16,
    /// The demo service's port.
    pub service_port: u16,
    /// Stop by itself after this long.
    pub seconds: Option<u64>,
    /// A loupe binary to run instead of building one.
    pub loupe: Option<PathBuf>,
    /// Also a Prometheus scraping loupe with the shipped rules.
    pub prometheus: bool,
}

/// A directory of this run, removed at the end.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("loupe loads eBPF programs: run `cargo xtask demo` as root");
    }
    catch_stop_signals();
    for (port, what) in [
        (options.service_port, "the demo service"),
        (options.port, "loupe"),
    ] {
        if port_open(port) {
            bail!("port {port} ({what}) is taken; stop whatever listens there first");
        }
    }
    setup::demo(options.loupe.is_none(), options.prometheus)?;
    let loupe_bin = match &options.loupe {
        Some(path) => path.clone(),
        None => {
            sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
            root().join("target/release/loupe")
        }
    };
    stopping()?;
    let dir = RunDir(std::env::temp_dir().join(format!("loupe-demo-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0)?;

    // Declared in start order: dropped (stopped) in the reverse one.
    let postgres = backends::postgres(&dir.0)?;
    stopping()?;
    sh::quiet(
        Command::new("python3")
            .arg(root().join("tests/fixtures/business_tables.py"))
            .args(["postgres", &postgres.url, ""]),
    )?;
    let redis = backends::redis(&dir.0)?;
    let model = backends::model_provider()?;
    let (tools, tools_port) = backends::mcp_tools()?;
    stopping()?;
    let service_port = options.service_port.to_string();
    let fixtures = root().join("tests/fixtures/agent_service");
    let mut service = Group::spawn(
        Command::new("python3")
            .args(["-m", "uvicorn", "app:app", "--app-dir"])
            .arg(&fixtures)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &service_port,
                "--workers",
                "2",
            ])
            .args(["--log-level", "warning"])
            .env("DATABASE_URL", &postgres.url)
            .env("REDIS_URL", &redis.url)
            .env("MODEL_URL", &model.url)
            .env("MCP_URL", &tools.url)
            .env("DEMO_SQLITE", dir.0.join("service.sqlite3")),
        "the demo service (uvicorn)",
        libc::SIGTERM,
    )?;
    wait_port(options.service_port, 30, "the demo service")?;
    stopping()?;

    let config = dir.0.join("loupe.toml");
    fs::write(
        &config,
        config_text(options.port, &postgres.url, &redis.url, tools_port),
    )?;
    let mut loupe = Group::spawn(
        Command::new(&loupe_bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--port", &service_port, "--service", SERVICE])
            .env("LOUPE_DEMO_PRINCIPAL_SECRET", principal_secret()?),
        "loupe",
        libc::SIGTERM,
    )?;
    wait_port(options.port, 30, "loupe")?;
    std::thread::sleep(Duration::from_secs(1));
    stopping()?;
    let base = format!("http://127.0.0.1:{service_port}");
    sh::run(
        Command::new("python3")
            .arg(fixtures.join("traffic.py"))
            .args([&base, "12"]),
    )?;
    let mut traffic = Group::spawn(
        Command::new("python3")
            .arg(fixtures.join("traffic.py"))
            .args([&base, "6", "--forever", "2"])
            .stdout(std::process::Stdio::null()),
        "the demo traffic",
        libc::SIGTERM,
    )?;
    let prometheus = if options.prometheus {
        Some(backends::prometheus(&dir.0, options.port)?)
    } else {
        None
    };
    // The collectors run every 5 s: their first results are in.
    std::thread::sleep(Duration::from_secs(6));
    stopping()?;
    print!("{}", summary(options.port, options.service_port));
    if let Some(prometheus) = &prometheus {
        println!(
            "Prometheus: {url} (the shipped recording and alert rules; try \
             {url}/alerts and {url}/graph?g0.expr=service:agent_requests:rate5m)",
            url = prometheus.url
        );
    }

    let deadline = options
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let why = loop {
        if let Some(signal) = stop_signal() {
            break format!("{signal} received");
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "time is up".to_owned();
        }
        if let Some(exited) = [&mut loupe, &mut service, &mut traffic]
            .into_iter()
            .find_map(|g| g.exited().map(|status| (g.what(), status)))
        {
            break format!("{} exited ({})", exited.0, exited.1);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "\ndemo: {why}; stopping the traffic, loupe, the service, the model provider, Redis and PostgreSQL"
    );
    drop((traffic, loupe, service, model, redis, postgres));
    drop(dir);
    eprintln!("demo: stopped; nothing it started is left running");
    Ok(())
}

/// Fails when a stop signal came in (the guards stop what was started).
fn stopping() -> anyhow::Result<()> {
    match stop_signal() {
        Some(signal) => bail!("{signal} received while starting: stopping what was started"),
        None => Ok(()),
    }
}

/// A fresh secret for the demo's principal pseudonyms.
fn principal_secret() -> anyhow::Result<String> {
    let bytes = fs::read("/proc/sys/kernel/random/uuid").context("no random source")?;
    Ok(String::from_utf8_lossy(&bytes).trim().replace('-', ""))
}

/// loupe's configuration for the demo: principals, both collectors every
/// 5 s against the demo's own database and Redis, prices for two of the
/// fake provider's models, the OpenTelemetry names beside loupe's, and the
/// MCP tool server on `tools_port` as a second service.
fn config_text(port: u16, database: &str, redis: &str, tools_port: u16) -> String {
    let collectors = collectors(database, redis, SERVICE);
    format!(
        "# Written by `cargo xtask demo`.\n\
         listen = \"0.0.0.0:{port}\"\n\n\
         [principals]\n\
         enabled = true\n\
         secret_env = \"LOUPE_DEMO_PRINCIPAL_SECRET\"\n\n\
         {collectors}\n\
         # Demo prices (dollars per million tokens); the other models stay\n\
         # unpriced, and are counted as such.\n\
         [llm.prices]\n\
         \"gpt-4o-mini\" = {{ input = 0.15, output = 0.60 }}\n\
         \"claude-sonnet-4*\" = {{ input = 3.00, output = 15.00 }}\n\n\
         [export]\n\
         conventions = [\"loupe\", \"otel\"]\n\n\
         [[services]]\n\
         name = \"{TOOLS_SERVICE}\"\n\
         ports = [{tools_port}]\n"
    )
}

/// The `[collectors]` section: both collectors every 5 s, the database
/// one for `service`.
pub fn collectors(database: &str, redis: &str, service: &str) -> String {
    format!(
        "[collectors]\n\
         interval = \"5s\"\n\n\
         [collectors.redis]\n\
         url = \"{redis}\"\n\n\
         [collectors.database]\n\
         url = \"{database}\"\n\
         service = \"{service}\"\n"
    )
}

/// What to look at, once the demo serves.
fn summary(port: u16, service_port: u16) -> String {
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let scrape = sh::output(Command::new("curl").args(["-s", &metrics])).unwrap_or_default();
    let families = [
        ("agent_requests_total", "requests by endpoint and status"),
        (
            "agent_invocations_total",
            "agent invocations by agent and status",
        ),
        ("agent_tokens_used_total", "tokens the agents reported"),
        ("tool_invocations_total", "tool executions (one tool fails)"),
        ("auth_failed_attempts_total", "failed logins by reason"),
        (
            "db_queries_total",
            "statements on the service's PostgreSQL pool",
        ),
        ("redis_operations_total", "Redis commands by operation"),
        (
            "llm_tokens_used_total",
            "tokens of the service's model calls",
        ),
        (
            "mcp_client_requests_total",
            "its tool calls through MCP, by tool and outcome",
        ),
        ("users_total", "database collector: business gauges"),
        ("redis_server_connected_clients", "Redis collector"),
    ];
    let mut out = format!(
        "\nloupe is watching the demo service (uvicorn on 127.0.0.1:{service_port}), \
         traffic keeps flowing.\n\n  family                          series  what\n"
    );
    for (family, what) in families {
        let series = scrape
            .lines()
            .filter(|l| l.starts_with(family) && !l.starts_with('#'))
            .count();
        let _ = writeln!(out, "  {family:<31} {series:>6}  {what}");
    }
    let _ = write!(
        out,
        "\nEvery family: curl -s {metrics} | grep -v '^#' | cut -d'{{' -f1 | sort -u\n\
         One of them:  curl -s {metrics} | grep ^agent_requests_total\n\
         The catalogue: docs/metrics.md. Dashboards: deploy/grafana.\n\n\
         Scrape: {metrics}   (Ctrl-C, SIGTERM or SIGHUP stops the demo)\n"
    );
    out
}
