//! `cargo xtask bench --node`: loupe on a busy node. Thousands of idle
//! processes it must look at and ignore, a configuration of 100 services of
//! which 20 match (two processes each: 40 tracked), first idle, then all 20
//! serving at once; and the tax on a process it does not track.
use std::{
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    thread::{self, sleep},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Bench, FLOOR_HOOK, LOUPE_PORT, TICKS_PER_SECOND, dd_seconds,
    measure::{scrape, scrape_where, usage},
    median, spawn_loupe,
    targets::{self, Nginx, Target},
};
use crate::sh::Stop;

/// Idle processes started (each a `sleep` in its own process group).
const SLEEPERS: usize = 3_000;
const CONFIGURED: usize = 100;
const MATCHING: usize = 20;
/// nginx with one worker: a master and a worker per matching service.
const TRACKED: usize = 2 * MATCHING;
/// Requests per second each matching service serves under load.
const RATE: u32 = 500;
/// How long the idle agent is measured.
const IDLE_SECONDS: u64 = 30;
/// The first service's port; the others follow.
const FIRST_PORT: u16 = 18_500;

fn service_name(i: usize) -> String {
    format!("svc-{i:03}")
}

/// 100 services selected by port; only the first 20 ports are served.
fn config(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut text = String::new();
    for i in 0..CONFIGURED {
        let port = FIRST_PORT + u16::try_from(i)?;
        writeln!(
            text,
            "[[services]]\nname = \"{}\"\nports = [{port}]\n",
            service_name(i)
        )?;
    }
    let path = dir.join("node.toml");
    fs::write(&path, text)?;
    Ok(path)
}

fn sleepers() -> anyhow::Result<Vec<Stop>> {
    (0..SLEEPERS)
        .map(|_| {
            let child = Command::new("sleep")
                .arg("3600")
                .process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .context("cannot start sleep")?;
            Ok(Stop(child))
        })
        .collect()
}

/// Starts loupe with the node's configuration; waits until it tracks
/// every process of the matching services.
fn start_node_loupe(loupe: &Path, hook: &str, config: &Path) -> anyhow::Result<Stop> {
    let args = ["--config".as_ref(), config.as_os_str()];
    let agent = spawn_loupe(loupe, hook, &args)?;
    let started = Instant::now();
    while scrape(LOUPE_PORT, "loupe_targets") < TRACKED as f64 {
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "loupe tracks {} processes of the {TRACKED} expected after 30 s",
                scrape(LOUPE_PORT, "loupe_targets")
            );
        }
        sleep(Duration::from_millis(200));
    }
    Ok(agent)
}

/// One keep-alive connection to nginx on `port`, a request every
/// 1/`rate` s (a late answer delays the next) for `seconds`; returns the
/// requests answered.
fn paced_client(port: u16, rate: u32, seconds: u64) -> anyhow::Result<u64> {
    let connect = || -> anyhow::Result<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    };
    let mut stream = connect()?;
    let period = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut next, mut answered) = (start, 0);
    while next < end {
        if !exchange(&mut stream)? {
            // nginx closes a connection after 1,000 requests: again on a
            // new one.
            stream = connect()?;
            if !exchange(&mut stream)? {
                bail!("nginx on {port} closed a new connection without answering");
            }
        }
        answered += 1;
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
    }
    Ok(answered)
}

/// One request; `false` if the connection was closed before an answer.
fn exchange(stream: &mut TcpStream) -> anyhow::Result<bool> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n")?;
    // nginx's answer ends with the body "hello\n" (see `targets::nginx`).
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while !buf[..len].ends_with(b"hello\n") {
        match stream.read(&mut buf[len..])? {
            0 if len == 0 => return Ok(false),
            n if n == 0 || len + n == buf.len() => bail!("an unexpected answer from nginx"),
            n => len += n,
        }
    }
    Ok(true)
}

pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let dir = bench.pace.parent().context("bench directory")?;
    let config = config(dir)?;
    println!(
        "busy node: {SLEEPERS} idle processes, {CONFIGURED} configured services of which \
         {MATCHING} match (nginx, {TRACKED} processes tracked), collectors off"
    );
    let started = Instant::now();
    let _sleepers = sleepers()?;
    println!(
        "{SLEEPERS} sleepers started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let servers = (0..MATCHING)
        .map(|i| targets::nginx(dir, FIRST_PORT + i as u16, Nginx::Http))
        .collect::<anyhow::Result<Vec<Target>>>()?;

    if let Some(baseline) = &bench.options.baseline {
        let base = start_node_loupe(baseline, &bench.options.data_hook, &config)?;
        idle(base.0.id(), "baseline binary");
    }
    let agent = start_node_loupe(&bench.loupe, &bench.options.data_hook, &config)?;
    let pid = agent.0.id();
    println!(
        "loupe tracks {TRACKED} processes after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let idle_ticks = idle(pid, "this binary");
    let seconds = u64::from(bench.options.seconds.max(10));
    let spread: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let many = load(pid, &spread, seconds, idle_ticks)?;
    let one = load(pid, &[servers[0].port; MATCHING], seconds, idle_ticks)?;
    for (what, load) in [
        ("all 20 services", &many),
        ("one service, the same rate", &one),
    ] {
        println!(
            "load, {what}: {} requests in {seconds} s ({:.0}/s), counted exactly for {} of {} \
             services; agent CPU {:.2} us/request ({:.2} without the idle share)",
            load.answered,
            load.answered as f64 / seconds as f64,
            load.exact,
            load.services,
            load.us,
            load.us_busy
        );
    }
    println!(
        "after the loads: {} records lost, RSS {:.1} MB",
        scrape(LOUPE_PORT, "loupe_events_lost_total"),
        usage(pid).rss_kb as f64 / 1024.0
    );
    drop(agent);

    let (mut added, mut floor_added) = (Vec::new(), Vec::new());
    let syscalls = 2.0 * f64::from(super::DD_BYTES);
    for _ in 0..bench.options.rounds {
        let bare = dd_seconds()?;
        let floor = {
            let _agent = start_node_loupe(&bench.loupe, FLOOR_HOOK, &config)?;
            dd_seconds()?
        };
        let with = {
            let _agent = start_node_loupe(&bench.loupe, &bench.options.data_hook, &config)?;
            dd_seconds()?
        };
        added.push((with - bare) * 1e9 / syscalls);
        floor_added.push((floor - bare) * 1e9 / syscalls);
    }
    println!(
        "untracked process on the busy node: +{:.0} ns per syscall with loupe (floor +{:.0}), \
         medians of {} rounds",
        median(&mut added),
        median(&mut floor_added),
        bench.options.rounds
    );
    Ok(())
}

/// Measures the agent `pid` idle for `IDLE_SECONDS` (after 5 s to settle);
/// returns its CPU ticks.
fn idle(pid: u32, what: &str) -> u64 {
    sleep(Duration::from_secs(5));
    let before = usage(pid);
    sleep(Duration::from_secs(IDLE_SECONDS));
    let after = usage(pid);
    let ticks = after.ticks - before.ticks;
    println!(
        "idle, {what}: agent CPU {:.2}% of one core over {IDLE_SECONDS} s (target <= 1%), RSS \
         {:.1} MB (target <= 60), peak {:.1} MB",
        ticks as f64 / TICKS_PER_SECOND / IDLE_SECONDS as f64 * 100.0,
        after.rss_kb as f64 / 1024.0,
        after.peak_kb as f64 / 1024.0
    );
    ticks
}

/// What one paced load measured.
struct Measured {
    answered: u64,
    /// Services whose count is exact, of those loaded.
    exact: usize,
    services: usize,
    /// Agent CPU per request, and without the idle rate's share.
    us: f64,
    us_busy: f64,
}

/// `RATE` requests/s on each of `ports` (one connection each) for
/// `seconds`, with the agent `pid`, whose idle CPU was `idle_ticks` in
/// `IDLE_SECONDS`.
fn load(pid: u32, ports: &[u16], seconds: u64, idle_ticks: u64) -> anyhow::Result<Measured> {
    let services: Vec<usize> = {
        let mut s: Vec<usize> = ports.iter().map(|&p| usize::from(p - FIRST_PORT)).collect();
        s.dedup();
        s
    };
    let before_counts: Vec<f64> = services.iter().map(|&i| counted(i)).collect();
    let before = usage(pid);
    let answered = thread::scope(|scope| {
        let clients: Vec<_> = ports
            .iter()
            .map(|&port| scope.spawn(move || paced_client(port, RATE, seconds)))
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    sleep(Duration::from_secs(1));
    let after = usage(pid);
    let mut exact = 0;
    for (k, &i) in services.iter().enumerate() {
        let sent: u64 = ports
            .iter()
            .zip(&answered)
            .filter(|(p, _)| usize::from(**p - FIRST_PORT) == i)
            .map(|(_, n)| n)
            .sum();
        let got = counted(i) - before_counts[k];
        if got == sent as f64 {
            exact += 1;
        } else {
            println!("  {}: {sent} answered, {got} counted", service_name(i));
        }
    }
    let total: u64 = answered.iter().sum();
    let ticks = (after.ticks - before.ticks) as f64;
    let per_request = |ticks: f64| ticks / TICKS_PER_SECOND * 1e6 / total.max(1) as f64;
    // The idle rate over the load's duration (plus the settling second).
    let idle_part = idle_ticks as f64 * (seconds + 1) as f64 / IDLE_SECONDS as f64;
    Ok(Measured {
        answered: total,
        exact,
        services: services.len(),
        us: per_request(ticks),
        us_busy: per_request(ticks - idle_part),
    })
}

/// Requests loupe counted for matching service `i`.
fn counted(i: usize) -> f64 {
    let label = format!("service=\"{}\"", service_name(i));
    scrape_where(LOUPE_PORT, "agent_requests_total{", &label)
}
