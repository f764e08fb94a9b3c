//! `cargo xtask demo`: the README's first command. Builds loupe, starts the
//! demo agent service (FastAPI under uvicorn with two workers) and loupe
//! beside it, sends some traffic, prints where to scrape, and runs until
//! Ctrl-C.
use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};

use crate::{
    services, setup,
    sh::{self, Stop, is_root, port_open, root, wait_port},
};

const SERVICE_PORT: u16 = 8000;

/// Runs the demo; with `seconds`, stops by itself after that long.
pub fn run(port: u16, seconds: Option<u64>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("loupe loads eBPF programs: run `cargo xtask demo` as root");
    }
    setup::run()?;
    if let Err(err) = services::start() {
        eprintln!("demo: PostgreSQL/Redis not started ({err:#}); the service runs on SQLite alone");
    }
    if port_open(SERVICE_PORT) {
        bail!("port {SERVICE_PORT} is taken; stop whatever listens there first");
    }
    sh::run(Command::new("cargo").args(["build", "--release", "--package", "loupe"]))?;

    let fixtures = root().join("tests/fixtures/agent_service");
    let mut service = Command::new("python3");
    service
        .args(["-m", "uvicorn", "app:app", "--app-dir"])
        .arg(&fixtures)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &SERVICE_PORT.to_string(),
            "--workers",
            "2",
        ])
        .args(["--log-level", "warning"]);
    if port_open(services::REDIS_PORT) {
        service.env(
            "REDIS_URL",
            format!("redis://127.0.0.1:{}/0", services::REDIS_PORT),
        );
    }
    if let Some(url) = services::demo_database() {
        service.env("DATABASE_URL", url);
    }
    let _service = Stop(service.spawn().context("cannot start uvicorn")?);
    wait_port(SERVICE_PORT, 30, "the demo service")?;

    let mut loupe = Command::new(root().join("target/release/loupe"));
    loupe.args([
        "run",
        "--port",
        &SERVICE_PORT.to_string(),
        "--service",
        "agent-api",
    ]);
    loupe.args(["--listen", &format!("0.0.0.0:{port}")]);
    let loupe = Stop(loupe.spawn().context("cannot start loupe")?);
    wait_port(port, 30, "loupe")?;
    std::thread::sleep(Duration::from_secs(1));

    sh::run(
        Command::new("python3")
            .arg(fixtures.join("traffic.py"))
            .arg(format!("http://127.0.0.1:{SERVICE_PORT}"))
            .arg("20"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let metrics =
        sh::output(Command::new("curl").args(["-s", &format!("http://127.0.0.1:{port}/metrics")]))
            .unwrap_or_default();
    println!("\nloupe is watching the demo service (uvicorn on 127.0.0.1:{SERVICE_PORT}).");
    println!("A few of its series:\n");
    let shown = [
        "agent_requests_total",
        "auth_",
        "agent_invocations_total",
        "agent_tokens_used_total",
        "tool_invocations_total",
        "tcp_",
        "loupe_targets",
    ];
    for line in metrics
        .lines()
        .filter(|l| shown.iter().any(|prefix| l.starts_with(prefix)))
    {
        println!("  {line}");
    }
    println!("\nScrape: http://127.0.0.1:{port}/metrics   (Ctrl-C stops the demo)");
    let mut loupe = loupe;
    match seconds {
        Some(seconds) => {
            std::thread::sleep(Duration::from_secs(seconds));
            drop(loupe);
        }
        None => {
            let status = loupe.0.wait()?;
            eprintln!("loupe exited: {status}");
        }
    }
    Ok(())
}
