//! Harness for loupe's root integration tests: start the real agent binary,
//! real servers and clients, scrape `/metrics`, and wait for exact values.
//!
//! Every test needs root (it loads eBPF programs); run them with
//! `cargo xtask test`, which builds the agent and starts PostgreSQL and Redis.
pub mod agent_service;
pub mod cgroup;
pub mod matrix;
pub mod pg_cluster;
pub mod server_records;
pub mod tls;

use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// How long a test waits for a metric to reach its expected value.
pub const WAIT: Duration = Duration::from_secs(15);

/// Panics unless running as root: these tests load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and needs root: run `cargo xtask test` as root"
    );
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// The loupe binary: `$LOUPE_BIN`, else `target/release/loupe`.
pub fn loupe_bin() -> PathBuf {
    let path = std::env::var_os("LOUPE_BIN").map_or_else(
        || workspace().join("target/release/loupe"),
        |path| workspace().join(path),
    );
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build --release -p loupe` (cargo xtask test \
         does)",
        path.display()
    );
    path
}

pub fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// Builds one Go file into `target/tools/NAME`, in GOPATH mode with
/// Debian's Go packages (`/usr/share/gocode`: grpc-go) beside the
/// standard library.
pub fn go_build(source: &Path, name: &str) -> PathBuf {
    let binary = workspace().join("target/tools").join(name);
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(source)
        .env("GOCACHE", workspace().join("target/tools/go-cache"))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .status()
        .expect("run go (golang-go)");
    assert!(built.success(), "go build {}", source.display());
    binary
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A path for a test's own files, unique to this process and call.
pub fn scratch_file(tag: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "loupe-test-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn terminate(child: &mut Child) -> Option<ExitStatus> {
    // SAFETY: plain syscall on a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// One parsed `/metrics` exposition.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    values: HashMap<String, f64>,
}

/// A series key as the Prometheus client prints it (labels sorted by name,
/// a histogram bucket's `le` last).
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut labels = labels.to_vec();
    labels.sort_unstable_by_key(|(k, _)| (*k == "le", *k));
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// `tcp_connections_opened_total{service, direction}`.
pub fn opened(service: &str, direction: &str) -> String {
    series(
        "tcp_connections_opened_total",
        &[("service", service), ("direction", direction)],
    )
}

/// `tcp_connections_active{service, direction}`.
pub fn active(service: &str, direction: &str) -> String {
    series(
        "tcp_connections_active",
        &[("service", service), ("direction", direction)],
    )
}

/// `loupe_targets{service}`.
pub fn targets(service: &str) -> String {
    series("loupe_targets", &[("service", service)])
}

impl Scrape {
    pub fn parse(text: String) -> Self {
        let values = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self { text, values }
    }

    pub fn get(&self, series: &str) -> Option<f64> {
        self.values.get(series).copied()
    }

    /// Sum of the series of `family` for `service`.
    pub fn total(&self, family: &str, service: &str) -> f64 {
        let label = format!("service=\"{service}\"");
        self.matching(&format!("{family}{{"))
            .iter()
            .filter(|(k, _)| k.contains(&label))
            .map(|(_, v)| v)
            .sum()
    }

    /// Series whose name starts with `prefix`.
    pub fn matching(&self, prefix: &str) -> Vec<(&str, f64)> {
        let mut found: Vec<(&str, f64)> = self
            .values
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, &v)| (k.as_str(), v))
            .collect();
        found.sort_by(|a, b| a.0.cmp(b.0));
        found
    }
}

/// Established TCP connections from process `pid` to `port`, as the kernel
/// lists them (`ss`): the ground truth for pool gauges.
pub fn established(pid: u32, port: u16) -> f64 {
    let out = Command::new("ss")
        .args([
            "-Htnp",
            "state",
            "established",
            "dport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .expect("ss");
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .count() as f64
}

/// A response from [`http_get`].
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// A minimal HTTP/1.0 GET (the connection closes after the response).
pub fn http_get(port: u16, path: &str) -> std::io::Result<Response> {
    http_get_with(port, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Response {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    })
}

/// `promtool check metrics` on an exposition: whether it passed, and what
/// it reported.
pub fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (cargo xtask setup installs it)");
    promtool
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool ran");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), report)
}

/// Whether `/readyz` answers 200 over plain HTTP.
fn plain_ready(port: u16) -> bool {
    http_get(port, "/readyz").is_ok_and(|r| r.status == 200)
}

/// The agent under test.
pub struct Agent {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Agent {
    /// Starts `loupe run ARGS --listen 127.0.0.1:<free port>` and waits
    /// until `/readyz` answers 200.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Agent::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        require_root();
        Self::spawn("run", args, env, &plain_ready)
    }

    /// [`Agent::start`], ready when `ready(port)` says so (an endpoint
    /// behind TLS).
    pub fn start_until(args: &[&str], ready: &dyn Fn(u16) -> bool) -> Self {
        require_root();
        Self::spawn("run", args, &[], ready)
    }

    /// `loupe collect ARGS --listen ...` (collector-only mode, no eBPF).
    pub fn collect(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn("collect", args, env, &plain_ready)
    }

    fn spawn(
        command: &str,
        args: &[&str],
        env: &[(&str, &str)],
        ready: &dyn Fn(u16) -> bool,
    ) -> Self {
        let port = free_port();
        let log = scratch_file("agent.log");
        let child = Command::new(loupe_bin())
            .arg(command)
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .env("LOUPE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("create the agent log"))
            .spawn()
            .expect("start loupe");
        let mut agent = Self { child, port, log };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("loupe exited at start-up ({status}):\n{}", agent.log());
            }
            if ready(port) {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "loupe not ready within {WAIT:?}:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent's log contains `text`; returns the log.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log within {WAIT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn scrape(&self) -> Scrape {
        let response = http_get(self.port, "/metrics").expect("scrape /metrics");
        assert_eq!(response.status, 200, "{}", response.body);
        Scrape::parse(response.body)
    }

    /// Asserts that no probe record was lost so far (exact counts are
    /// meaningful only then).
    pub fn assert_nothing_lost(&self) {
        let scrape = self.scrape();
        assert_eq!(
            scrape.get("loupe_events_lost_total"),
            Some(0.0),
            "{}",
            scrape.text
        );
    }

    /// Waits until `series` has exactly `expected`, panicking with the last
    /// exposition and the agent's log otherwise. A missing series reads as 0.
    pub fn wait_for(&self, series: &str, expected: f64) -> Scrape {
        let deadline = Instant::now() + WAIT;
        loop {
            let scrape = self.scrape();
            let value = scrape.get(series).unwrap_or(0.0);
            if value == expected {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{series} = {value}, expected {expected} within {WAIT:?}\n--- exposition\n{}\n--- log\n{}",
                scrape.text,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the series of counter `family` for `service` add up to
    /// `expected`; returns their sum (which the caller asserts on).
    pub fn wait_for_total(&self, family: &str, service: &str, expected: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let total = self.scrape().total(family, service);
            if total == expected || Instant::now() >= deadline {
                return total;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `series` is at least `minimum`; returns the scrape.
    pub fn wait_for_at_least(&self, series: &str, minimum: f64) -> Scrape {
        let deadline = Instant::now() + WAIT;
        loop {
            let scrape = self.scrape();
            let value = scrape.get(series).unwrap_or(0.0);
            if value >= minimum {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{series} = {value}, expected at least {minimum} within {WAIT:?}\n{}",
                scrape.text
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let status = terminate(&mut self.child).expect("loupe exits within 10s of SIGTERM");
        std::mem::forget(self);
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = fs::remove_file(&self.log);
    }
}

/// A fixture process driven through stdin/stdout lines. It runs in its own
/// process group, so that killing it also kills the children it forked.
pub struct Fixture {
    /// The `ready` line the fixture printed (some add details to it).
    pub ready: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Fixture {
    /// Starts `program ARGS` and waits for it to print `ready`.
    pub fn start(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {program}: {err}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut fixture = Self {
            ready: String::new(),
            child,
            stdin,
            stdout,
        };
        fixture.ready = fixture.expect("ready");
        fixture
    }

    /// Starts a Python fixture from `tests/fixtures`.
    pub fn python(script: &str, args: &[&str]) -> Self {
        let path = fixture(script);
        let mut all = vec![path.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        Self::start("python3", &all)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one starts with `prefix`; returns it.
    pub fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .stdout
                .read_line(&mut line)
                .expect("read fixture output");
            assert!(read > 0, "fixture exited before printing {prefix:?}");
            if line.starts_with(prefix) {
                return line.trim_end().to_owned();
            }
        }
    }

    /// Sends one line without waiting for a reply.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("fixture stdin");
        writeln!(stdin, "{line}").expect("write to fixture");
        stdin.flush().expect("flush fixture stdin");
    }

    /// Sends one command line and waits for the reply starting with `reply`.
    pub fn command(&mut self, line: &str, reply: &str) -> String {
        self.send(line);
        self.expect(reply)
    }

    /// Kills the fixture and its children (SIGKILL to the process group:
    /// no cleanup of their own) and reaps it.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: plain syscall on the process group of a child we spawned.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Opens `n` connections to 127.0.0.1:`port`.
pub fn connect(port: u16, n: usize) -> Vec<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect()
}

/// Sends `n` HTTP/1.0 requests, one connection each, asserting 200s.
pub fn requests(port: u16, n: usize) {
    requests_on(port, "/", n);
}

/// [`requests`] for `path`.
pub fn requests_on(port: u16, path: &str, n: usize) {
    for _ in 0..n {
        let response = http_get(port, path).expect("HTTP request");
        assert_eq!(response.status, 200, "{}", response.headers);
    }
}

/// The hyper test server (`tests/src/bin/http_app.rs`; integration tests
/// pass `env!("CARGO_BIN_EXE_http_app")`) on a free port.
pub fn http_app(binary: &str) -> (u16, Fixture) {
    let port = free_port();
    let server = Fixture::start(binary, &[&port.to_string()]);
    (port, server)
}

/// `http_server.py` on a free port.
pub fn http_server() -> (u16, Fixture) {
    let port = free_port();
    let server = Fixture::python("http_server.py", &[&port.to_string()]);
    (port, server)
}

/// An agent selecting the listener of `port` as `service` (plus `extra`
/// flags), once it tracks that one process.
pub fn watch_port(port: u16, service: &str, extra: &[&str]) -> Agent {
    let port = port.to_string();
    let mut args = vec!["--port", &port, "--service", service];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    agent.wait_for(&targets(service), 1.0);
    agent
}

/// An agent watching `port` as `service` with pseudonymised principals
/// on, under HMAC `secret` (passed in the environment), once it tracks the
/// server.
pub fn watch_with_principals(port: u16, service: &str, secret: &str) -> Agent {
    let config = std::env::temp_dir().join(format!("loupe-principals-{service}-{port}.toml"));
    fs::write(
        &config,
        "[principals]\nenabled = true\nsecret_env = \"LOUPE_TEST_PRINCIPAL_SECRET\"\n",
    )
    .expect("write the config");
    let port = port.to_string();
    let args = [
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--port",
        &port,
        "--service",
        service,
    ];
    let agent = Agent::start_with_env(&args, &[("LOUPE_TEST_PRINCIPAL_SECRET", secret)]);
    let _ = fs::remove_file(&config);
    agent.wait_for(&targets(service), 1.0);
    agent
}

/// One request on a connection of its own (`Connection: close`), with a
/// JSON body when `body` is given (an empty one too: `Content-Length: 0`);
/// returns the status.
pub fn one_shot(port: u16, method: &str, path: &str, body: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let body_headers = body.map_or(String::new(), |body| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    });
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{body_headers}Connection: close\r\n\r\n{}",
        body.unwrap_or_default()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A keep-alive HTTP/1.1 client. It reads responses by their framing:
/// `Content-Length`, chunked (with trailers), none for `HEAD`, 1xx, 204
/// and 304, or the close; after a server's `Connection: close` it connects
/// again for the next request.
pub struct KeepAlive {
    port: u16,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn connect(port: u16) -> Self {
        let mut client = Self { port, stream: None };
        client.reader();
        client
    }

    fn reader(&mut self) -> &mut BufReader<TcpStream> {
        let port = self.port;
        self.stream.get_or_insert_with(|| {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            BufReader::new(stream)
        })
    }

    /// Sends `method path` with extra header lines; returns the status.
    pub fn request(&mut self, method: &str, path: &str, headers: &str) -> u16 {
        self.send(method, path, headers, "")
    }

    /// Sends `method path` with extra header lines and a JSON body (none
    /// when empty); returns the status.
    pub fn send(&mut self, method: &str, path: &str, headers: &str, body: &str) -> u16 {
        let length = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}\r\n{body}");
        self.reader()
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send request");
        loop {
            let status = self.read_response(method == "HEAD");
            if !(100..200).contains(&status) {
                return status;
            }
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader().read_line(&mut line).expect("read a line");
        line.trim_end().to_owned()
    }

    /// Reads one response; returns its status.
    fn read_response(&mut self, head_only: bool) -> u16 {
        let status_line = self.line();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let (mut length, mut chunked) = (None, false);
        let mut close = status_line.starts_with("HTTP/1.0");
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        } else if chunked {
            self.read_chunks();
        } else if let Some(length) = length {
            let mut body = vec![0; length];
            self.reader()
                .read_exact(&mut body)
                .expect("read response body");
        } else {
            // Delimited by the close.
            let mut body = Vec::new();
            self.reader()
                .read_to_end(&mut body)
                .expect("read response body");
            close = true;
        }
        if close {
            self.stream = None;
        }
        status
    }

    fn read_chunks(&mut self) {
        loop {
            let size_line = self.line();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("not a chunk size: {size_line:?}"));
            if size == 0 {
                while !self.line().is_empty() {} // trailers
                return;
            }
            let mut chunk = vec![0; size + 2];
            self.reader().read_exact(&mut chunk).expect("read a chunk");
        }
    }
}

/// Runs a server command line under bash and prints "ready" once `port`
/// accepts connections (for servers that print nothing when they start).
pub fn served(command: &str, port: u16) -> Fixture {
    let script = format!(
        "{command} & \
         while ! (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done; \
         echo ready; wait"
    );
    Fixture::start("bash", &["-c", &script])
}

/// A Redis server of the test's own on 127.0.0.1:`port` (no persistence),
/// with `extra` arguments (e.g. `--requirepass ...`).
pub fn redis_server(port: u16, extra: &str) -> Fixture {
    served(
        &format!(
            "exec redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --loglevel warning {extra}"
        ),
        port,
    )
}

/// nginx (master and two workers) on 127.0.0.1:`port`, its configuration
/// and scratch files in a directory of its own, removed when dropped.
pub struct Nginx {
    /// The bash wrapper of [`served`]; nginx is its child.
    pub server: Fixture,
    dir: PathBuf,
}

impl Nginx {
    /// `locations` are the `location` blocks of the one server.
    pub fn start(port: u16, locations: &str) -> Self {
        Self::listening(port, "", locations)
    }

    /// [`Nginx::start`] over TLS with `certificate`, HTTP/2 negotiated
    /// with ALPN (and HTTP/1.1 for the clients that ask for it).
    pub fn start_h2_tls(port: u16, certificate: &tls::Certificate, locations: &str) -> Self {
        let tls = format!(
            " ssl http2;\n  ssl_certificate {};\n  ssl_certificate_key {}",
            certificate.cert(),
            certificate.key()
        );
        Self::listening(port, &tls, locations)
    }

    /// `listen 127.0.0.1:PORT{listen};`
    fn listening(port: u16, listen: &str, locations: &str) -> Self {
        let dir = scratch_file("nginx");
        fs::create_dir_all(&dir).expect("create the nginx directory");
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n \
                 fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n \
                 server {{\n  listen 127.0.0.1:{port}{listen};\n  root {d};\n  {locations}\n }}\n}}\n"
            ),
        )
        .expect("write nginx.conf");
        let server = served(
            &format!("nginx -c {} -g 'daemon off;'", conf.display()),
            port,
        );
        Self { server, dir }
    }

    /// Its document root.
    pub fn root(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
