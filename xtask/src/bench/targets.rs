//! The servers the benchmark loads: nginx (a small static answer, over
//! HTTP/1.1, over HTTPS, and over HTTP/2 without TLS), the hyper test
//! server (a Rust service), and the FastAPI agent service under uvicorn,
//! plain and with the Prometheus middleware it would otherwise use, and
//! with PostgreSQL and Redis behind it.
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::{
    services,
    sh::{self, Stop, root, wait_port},
};

/// A server under load.
pub struct Target {
    pub name: &'static str,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Loaded over HTTP/2 with prior knowledge (h2load), not HTTP/1.1 (wrk).
    pub h2: bool,
    pub port: u16,
    pub path: &'static str,
    /// The same service instrumented in-process (FastAPI only).
    pub instrumented: Option<u16>,
    /// Each request makes one PostgreSQL query and one Redis command, which
    /// loupe counts too.
    pub backends: bool,
    /// The targets this server is held to (issue 22): throughput within
    /// this many points of the floor at saturation, BPF ns and agent us
    /// per request.
    pub goal: Option<(u32, u32, f64)>,
    /// Connections of the paced load (each at most 1,000 requests/s; wrk's
    /// millisecond timers make it about 750): about 10k requests/s, or
    /// less than half of what a slower server can do.
    pub paced_connections: u32,
    /// Held so that dropping the target stops its servers.
    _servers: Vec<Stop>,
}

impl Target {
    /// The processes started for this target (their children are the
    /// server's too).
    pub fn server_pids(&self) -> Vec<u32> {
        self._servers.iter().map(|server| server.0.id()).collect()
    }

    pub fn url(&self, port: u16) -> String {
        format!("{}://127.0.0.1:{port}{}", self.scheme, self.path)
    }
}

/// How nginx serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nginx {
    Http,
    Https,
    /// HTTP/2 without TLS (prior knowledge).
    H2c,
}

impl Nginx {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "nginx",
            Self::Https => "nginx-tls",
            Self::H2c => "nginx-h2c",
        }
    }
}

/// nginx on `port`: HTTP/1.1; HTTPS (OpenSSL, a self-signed certificate
/// made here), read through loupe's uprobes; or h2c.
pub fn nginx(dir: &Path, port: u16, kind: Nginx) -> anyhow::Result<Target> {
    let tls = kind == Nginx::Https;
    let dir = dir.join(kind.name());
    fs::create_dir_all(&dir)?;
    let d = dir.display();
    let listen = if tls {
        sh::run(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .stderr(Stdio::null()),
        )?;
        format!("{port} ssl; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem")
    } else if kind == Nginx::H2c {
        // h2load does not reconnect: no GOAWAY after nginx's default of
        // 1,000 requests per connection.
        format!("{port} http2; keepalive_requests 100000000")
    } else {
        port.to_string()
    };
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n \
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n \
             server {{ listen 127.0.0.1:{listen}; location / {{ return 200 \"hello\\n\"; }} }}\n}}\n"
        ),
    )?;
    let child = Command::new("nginx")
        .args([
            "-c",
            conf.to_str().context("UTF-8 path")?,
            "-g",
            "daemon off;",
        ])
        .spawn()
        .context("cannot start nginx (cargo xtask setup installs it)")?;
    let server = Stop(child);
    wait_port(port, 10, "nginx")?;
    Ok(Target {
        name: kind.name(),
        scheme: if tls { "https" } else { "http" },
        h2: kind == Nginx::H2c,
        port,
        path: "/",
        instrumented: None,
        paced_connections: 13,
        backends: false,
        goal: (kind == Nginx::Http).then_some((8, 900, 0.7)),
        _servers: vec![server],
    })
}

/// `tests/src/bin/http_app.rs` (hyper, one thread), built in release.
pub fn hyper(port: u16) -> anyhow::Result<Target> {
    sh::run(sh::cargo().args([
        "build",
        "--release",
        "--package",
        "loupe-tests",
        "--bin",
        "http_app",
    ]))?;
    let child = Command::new(root().join("target/release/http_app"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start http_app")?;
    let server = Stop(child);
    wait_port(port, 10, "http_app")?;
    Ok(Target {
        name: "hyper",
        scheme: "http",
        h2: false,
        port,
        path: "/items/1",
        instrumented: None,
        paced_connections: 13,
        backends: false,
        goal: Some((8, 900, 0.7)),
        _servers: vec![server],
    })
}

/// The agent service (one uvicorn worker) on `port`, with
/// prometheus-fastapi-instrumentator if `instrument`, and PostgreSQL and
/// Redis clients if `backends` (`DATABASE_URL`, `REDIS_URL`).
fn uvicorn(
    dir: &Path,
    port: u16,
    instrument: bool,
    backends: Option<(&str, &str)>,
) -> anyhow::Result<Stop> {
    let mut command = Command::new("python3");
    command
        .args(["-m", "uvicorn", "app:app", "--app-dir"])
        .arg(root().join("tests/fixtures/agent_service"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-level", "warning"])
        .env("DEMO_SQLITE", dir.join(format!("agents-{port}.sqlite3")));
    if instrument {
        command.env("AGENT_SERVICE_INSTRUMENT", "1");
    }
    if let Some((database, redis)) = backends {
        command
            .env("DATABASE_URL", database)
            .env("REDIS_URL", redis);
    }
    let server = Stop(command.spawn().context("cannot start uvicorn")?);
    wait_port(port, 30, "uvicorn")?;
    Ok(server)
}

/// The agent service (SQLite only), twice: plain on `port`, with the
/// middleware on `port + 1`; loaded on `GET /health`.
pub fn fastapi(dir: &Path, port: u16) -> anyhow::Result<Target> {
    Ok(Target {
        name: "fastapi",
        scheme: "http",
        h2: false,
        port,
        path: "/health",
        instrumented: Some(port + 1),
        paced_connections: 5,
        backends: false,
        goal: Some((2, 1_500, 1.5)),
        _servers: vec![
            uvicorn(dir, port, false, None)?,
            uvicorn(dir, port + 1, true, None)?,
        ],
    })
}

/// The mission's service shape: the agent service with PostgreSQL and
/// Redis, loaded on `GET /quota` (one Redis `INCR` and one `SELECT 1` per
/// request, so loupe parses three protocols per request).
pub fn fastapi_db(dir: &Path, port: u16) -> anyhow::Result<Target> {
    let database = services::demo_database()
        .context("PostgreSQL is not running: `cargo xtask services` starts it")?;
    let redis = format!("redis://127.0.0.1:{}/0", services::REDIS_PORT);
    Ok(Target {
        name: "fastapi-db",
        scheme: "http",
        h2: false,
        port,
        path: "/quota",
        instrumented: None,
        paced_connections: 5,
        backends: true,
        goal: None,
        _servers: vec![uvicorn(dir, port, false, Some((&database, &redis)))?],
    })
}
