//! The FastAPI agent-service fixture (`fixtures/agent_service`) under
//! uvicorn (or hypercorn, for HTTP/2), backed by the PostgreSQL and Redis
//! `cargo xtask test` starts, and its scripted session.
use std::fs;

use crate::{Fixture, fixture, http_get, served};

/// The agent service under uvicorn, with the databases `cargo xtask test`
/// started (it checks that it reached both).
pub fn agent_service(port: u16) -> Fixture {
    agent_service_with(port, "")
}

/// [`agent_service`] with more environment (`NAME=value ...`), e.g.
/// `MODEL_URL`.
pub fn agent_service_with(port: u16, extra_env: &str) -> Fixture {
    start(port, extra_env, false)
}

/// [`agent_service`] under hypercorn, which also speaks HTTP/2 with prior
/// knowledge (h2c) on its port.
pub fn agent_service_h2c(port: u16) -> Fixture {
    start(port, "", true)
}

fn start(port: u16, extra_env: &str, hypercorn: bool) -> Fixture {
    let mut env = format!("{extra_env} ");
    for (var, name) in [
        ("LOUPE_TEST_DATABASE_URL", "DATABASE_URL"),
        ("LOUPE_TEST_REDIS_URL", "REDIS_URL"),
    ] {
        let url = std::env::var(var)
            .unwrap_or_else(|_| panic!("{var} is not set: run the tests with `cargo xtask test`"));
        env.push_str(&format!("{name}={url} "));
    }
    let sqlite = std::env::temp_dir().join(format!("loupe-semantic-{port}.sqlite3"));
    let _ = fs::remove_file(&sqlite);
    let (dir, sqlite) = (fixture("agent_service"), sqlite.display());
    let command = if hypercorn {
        format!(
            "cd {} && {env} DEMO_SQLITE={sqlite} python3 -m hypercorn app:app \
             --bind 127.0.0.1:{port}",
            dir.display()
        )
    } else {
        format!(
            "{env} DEMO_SQLITE={sqlite} python3 -m uvicorn app:app --app-dir {} \
             --host 127.0.0.1 --port {port} --log-level warning",
            dir.display()
        )
    };
    let server = served(&command, port);
    let health = http_get(port, "/health").expect("health");
    assert!(
        health.body.contains("\"postgres\":true") && health.body.contains("\"redis\":true"),
        "the service must reach PostgreSQL and Redis: {}",
        health.body
    );
    server
}

/// The fake model provider (`fixtures/model_provider.py`) under uvicorn,
/// over plain HTTP on `port`.
pub fn model_provider(port: u16) -> Fixture {
    served(
        &format!(
            "python3 -m uvicorn model_provider:app --app-dir {} --host 127.0.0.1 \
             --port {port} --log-level warning",
            fixture("").display()
        ),
        port,
    )
}

/// Runs the scripted session; returns how many requests it sent.
pub fn scenario(port: u16) -> f64 {
    scenario_with(port, false)
}

/// [`scenario`], in HTTP/2 with prior knowledge when `http2`.
pub fn scenario_with(port: u16, http2: bool) -> f64 {
    let base = format!("http://127.0.0.1:{port}");
    let args: &[&str] = if http2 { &[&base, "--http2"] } else { &[&base] };
    let mut client = Fixture::python("agent_service/scenario.py", args);
    let done = client.expect("done ");
    done.trim_start_matches("done ")
        .trim()
        .parse()
        .expect("a request count")
}

/// A prompt the fake model provider (`fixtures/model_provider.py`) refuses
/// with its API's error answer; the agent then answers 502.
pub const REFUSED_PROMPT: &str = "please refuse this";

/// Invokes `agent` with `prompt`; returns the HTTP status.
pub fn invoke_agent(port: u16, agent: &str, prompt: &str, stream: bool) -> String {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "X-API-Key: lk_demo_0123456789abcdef"])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            &format!("{{\"prompt\": \"{prompt}\", \"stream\": {stream}}}"),
        ])
        .arg(format!("http://127.0.0.1:{port}/agents/{agent}/invoke"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A client that gives up: it asks the slow agent (with the demo API key)
/// and closes its connection at once; uvicorn then never answers, and the
/// request is counted as abandoned.
pub fn give_up(port: u16) {
    use std::io::Write as _;
    let body = r#"{"prompt": "never mind"}"#;
    let request = format!(
        "POST /agents/researcher/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-API-Key: lk_demo_0123456789abcdef\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
}
