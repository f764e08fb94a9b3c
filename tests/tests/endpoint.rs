//! The `/metrics` endpoint as operators protect it and as hostile clients
//! treat it: a real Prometheus scraping over mutual TLS with basic
//! authentication from a web configuration file (`--web.config.file`, the
//! format Prometheus exporters share), a certificate rotated in place
//! while it scrapes; and slowloris, 10,000 idle connections, oversized
//! heads, garbage and scrapes that never read their answer, while a
//! well-behaved scraper keeps getting its answer within a second. Root
//! required.
use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use loupe_tests::{Agent, Fixture, Scrape, free_port, http_get, served, tls::Authority};

const PASSWORD: &str = "s3cret";

/// curl with the test's CA and, unless `anonymous`, its client
/// certificate; `user` as `name:password`.
struct Curl<'a> {
    ca: &'a Authority,
}

impl Curl<'_> {
    /// The status (0: no HTTP answer), the body, and curl's own account.
    fn get(&self, url: &str, client: bool, user: Option<&str>) -> (u16, String, String) {
        let body = self.ca.path("body");
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "-v",
                "--max-time",
                "5",
                "-o",
                &body,
                "-w",
                "%{http_code}",
            ])
            .args(["--cacert", &self.ca.path("ca.pem")]);
        if client {
            command.args(["--cert", &self.ca.path("client.pem")]);
            command.args(["--key", &self.ca.path("client.key")]);
        }
        if let Some(user) = user {
            command.args(["-u", user]);
        }
        let out = command.arg(url).output().expect("curl");
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let text = fs::read_to_string(&body).unwrap_or_default();
        let _ = fs::remove_file(&body);
        (
            status,
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn query(port: u16, expr: &str) -> usize {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok(response) = http_get(port, &format!("/api/v1/query?query={encoded}")) else {
        return 0;
    };
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap_or_default();
    json["data"]["result"].as_array().map_or(0, Vec::len)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_over_mutual_tls_with_basic_auth() {
    loupe_tests::require_root();
    let ca = Authority::new("endpoint");
    ca.issue("server", "loupe");
    ca.issue("client", "prometheus");
    let hash = bcrypt::hash(PASSWORD, 6).expect("bcrypt");
    let web = ca.path("web.yml");
    fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             basic_auth_users:\n  prometheus: {hash}\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        ),
    )
    .expect("write the web configuration");
    let curl = Curl { ca: &ca };
    let url = |port: u16, path: &str| format!("https://127.0.0.1:{port}{path}");
    let user = format!("prometheus:{PASSWORD}");
    let agent = Agent::start_until(
        &[
            "--port",
            &free_port().to_string(),
            "--web.config.file",
            &web,
        ],
        &|port| curl.get(&url(port, "/readyz"), true, None).0 == 200,
    );
    let port = agent.port;

    // What is refused, and how.
    let (status, _, _) = curl.get(&url(port, "/metrics"), false, Some(&user));
    assert_eq!(status, 0, "no client certificate: no TLS session");
    let (status, _, _) = curl.get(&format!("http://127.0.0.1:{port}/metrics"), true, None);
    assert_eq!(status, 0, "plain HTTP to a TLS endpoint");
    let (status, _, account) = curl.get(&url(port, "/metrics"), true, None);
    assert_eq!(status, 401, "no credentials");
    assert!(account.contains("www-authenticate: Basic"), "{account}");
    let wrong = Some("prometheus:guess");
    assert_eq!(curl.get(&url(port, "/metrics"), true, wrong).0, 401);
    let (status, body, account) = curl.get(&url(port, "/metrics"), true, Some(&user));
    assert_eq!(status, 200, "{account}");
    assert!(body.contains("loupe_programs_attached"), "{body}");
    assert!(
        account.contains("x-content-type-options: nosniff"),
        "{account}"
    );
    // The probes answer without credentials (a kubelet sends none).
    assert_eq!(curl.get(&url(port, "/healthz"), true, None).0, 200);

    // A real Prometheus, with the same settings an exporter would get.
    let dir = ca.path("prometheus");
    let prom = free_port();
    let config = ca.path("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: loupe\n    scheme: https\n    tls_config:\n\
             \x20     ca_file: {}\n      cert_file: {}\n      key_file: {}\n\
             \x20     server_name: localhost\n    basic_auth:\n      username: prometheus\n\
             \x20     password: {PASSWORD}\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{port}']\n",
            ca.path("ca.pem"),
            ca.path("client.pem"),
            ca.path("client.key"),
        ),
    )
    .expect("write the Prometheus configuration");
    let _prometheus: Fixture = served(
        &format!(
            "exec prometheus --config.file={config} --storage.tsdb.path={dir} \
             --web.listen-address=127.0.0.1:{prom} --log.level=warn"
        ),
        prom,
    );
    wait_until("Prometheus scraping loupe", Duration::from_secs(30), || {
        query(prom, "up{job=\"loupe\"} == 1") == 1
            && query(prom, "loupe_programs_attached{job=\"loupe\"} > 0") == 1
    });

    // The server certificate rotated in place (as Kubernetes does with a
    // mounted Secret): new connections get the new one, and Prometheus
    // goes on scraping.
    ca.issue("server", "loupe-rotated");
    wait_until(
        "the rotated certificate served",
        Duration::from_secs(15),
        || {
            let (status, _, account) = curl.get(&url(port, "/healthz"), true, None);
            status == 200 && account.contains("CN=loupe-rotated")
        },
    );
    wait_until(
        "Prometheus scraping after the rotation",
        Duration::from_secs(30),
        || {
            query(
                prom,
                "loupe_web_config_reloads_total{job=\"loupe\",result=\"success\"} >= 1",
            ) == 1
        },
    );
    // A broken file is refused and the last good one kept.
    fs::write(&web, "tls_server_config: [\n").expect("break the web configuration");
    wait_until("the broken file reported", Duration::from_secs(15), || {
        let (_, body, _) = curl.get(&url(port, "/metrics"), true, Some(&user));
        Scrape::parse(body)
            .get("loupe_web_config_reloads_total{result=\"failure\"}")
            .is_some_and(|n| n >= 1.0)
    });
    assert_eq!(curl.get(&url(port, "/metrics"), true, Some(&user)).0, 200);
}

/// Kilobytes of resident memory of process `pid`.
fn rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect")
}

/// One scrape as Prometheus makes it; how long it took.
fn scrape_time(port: u16) -> Duration {
    let start = Instant::now();
    let response = http_get(port, "/metrics").expect("a well-behaved scrape");
    assert_eq!(response.status, 200);
    assert!(response.body.contains("loupe_programs_attached"));
    start.elapsed()
}

#[test]
fn the_endpoint_holds_against_hostile_clients() {
    loupe_tests::require_root();
    // SAFETY: plain libc calls on this process's own limit.
    let raised = unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    };
    assert!(
        raised >= 11_000,
        "10,000 connections need more file descriptors ({raised})"
    );
    let agent = Agent::start(&["--port", &free_port().to_string()]);
    let (port, pid) = (agent.port, agent.pid());
    scrape_time(port);
    let (rss_before, fds_before) = (rss_kb(pid), open_fds(pid));

    // Scrapes that never read their answer, and slowloris heads.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = connect(port);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut slow: Vec<TcpStream> = (0..100).map(|_| connect(port)).collect();
    // 10,000 idle connections.
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..10_000).map(|_| connect(port)).collect();
    eprintln!("10,000 connections in {:?}", started.elapsed());
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        for s in &mut slow {
            let _ = s.write_all(&[b"GET /metrics HTTP/1.1\r\nX: "[round % 20]]);
        }
        // An oversized head and garbage: refused, nothing kept.
        let mut big = connect(port);
        let head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 << 10));
        let _ = big.write_all(head.as_bytes());
        let mut junk = connect(port);
        let _ = junk.write_all(&[0x16, 0x03, 0xff, 0, 1, 2, b'\r', b'\n', 0xfe, 0xff]);
        let _ = junk.write_all(b"\r\n\r\n");
        for mut refused in [big, junk] {
            refused
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = Vec::new();
            let _ = refused.read_to_end(&mut answer);
            let text = String::from_utf8_lossy(&answer);
            assert!(
                answer.is_empty() || text.starts_with("HTTP/1.1 4"),
                "an error or a close, not {text:?}"
            );
        }
        slowest = slowest.max(scrape_time(port));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest well-behaved scrape took {slowest:?}"
    );

    // Bounded: connections beyond the limit were closed to make room,
    // and memory did not follow the clients.
    // (512 connections at most, and the agent's own.)
    let fds = open_fds(pid);
    assert!(
        fds <= fds_before + 512 + 8,
        "{fds} descriptors open, {fds_before} before"
    );
    let grown = rss_kb(pid).saturating_sub(rss_before);
    assert!(grown < 64 << 10, "resident memory grew by {grown} kB");
    let scrape = agent.scrape();
    let evicted = scrape.get("loupe_web_refused_total{reason=\"evicted\"}");
    eprintln!(
        "slowest scrape {slowest:?}, {fds} descriptors, resident memory +{grown} kB, \
         {evicted:?} evicted"
    );
    assert!(evicted.is_some_and(|n| n >= 9_000.0), "{evicted:?}");
    drop(idle);
    drop(stalled);
    drop(slow);
    scrape_time(port);
}
