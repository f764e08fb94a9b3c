//! `cargo xtask bench`: servers under wrk (h2load for HTTP/2) without and
//! with loupe, in alternating rounds of the same run (nginx over HTTP,
//! HTTPS and h2c, a hyper server, the FastAPI agent service alone and with
//! PostgreSQL and Redis behind it; for FastAPI also with the in-process
//! Prometheus middleware loupe replaces), then the
//! tax loupe puts on processes it does not track. Prints throughput and latency (kernel BPF statistics off),
//! BPF time per request (statistics on, in a run of its own), agent CPU and
//! memory, and whether loupe counted every request. A report, not a test: this machine is shared and noisy, so only
//! side-by-side ratios mean something.
mod measure;
mod node;
mod targets;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use self::{
    measure::{
        Load, Meter, PACE_SCRIPT, Programs, Split, TICKS_PER_SECOND, h2load, pin, scrape, tree,
        usage, wrk, wrk_paced,
    },
    targets::{Nginx, Target},
};
use crate::sh::{self, Stop, is_root, root, wait_port};

const LOUPE_PORT: u16 = 18_481;
const NGINX_PORT: u16 = 18_480;
const HYPER_PORT: u16 = 18_482;
const NGINX_TLS_PORT: u16 = 18_483;
const NGINX_H2C_PORT: u16 = 18_484;
/// And the next port for the instrumented copy.
const FASTAPI_PORT: u16 = 18_486;
const FASTAPI_DB_PORT: u16 = 18_488;
/// 1-byte reads and writes of `dd` in the untracked-process measurement.
const DD_BYTES: u32 = 500_000;

pub struct Options {
    pub rounds: u32,
    pub seconds: u32,
    pub connections: u32,
    /// Passed to `loupe run --data-hook`.
    pub data_hook: String,
    /// Only this target (nginx, nginx-tls, nginx-h2c, hyper, fastapi,
    /// fastapi-db).
    pub target: Option<String>,
    /// An earlier loupe binary measured in every round too.
    pub baseline: Option<PathBuf>,
    /// The busy-node scenario instead of the targets (see `node`).
    pub node: bool,
}

/// What loupe cost during one run.
#[derive(Default, Clone)]
struct Cost {
    bpf: Programs,
    /// Requests wrk completed while `bpf` was measured.
    bpf_requests: u64,
    cpu_ticks: u64,
    rss_kb: u64,
    peak_kb: u64,
    counted: f64,
    lost: f64,
    /// PostgreSQL queries and Redis commands counted (targets with
    /// backends).
    queries: f64,
    commands: f64,
    /// Where the machine's CPU went in the measured run, per request (us).
    split: Split,
}

/// The data hook of the floor runs: the same tracepoints with programs that
/// return at once.
const FLOOR_HOOK: &str = "empty";

/// Starts `loupe run` on the target's port with data hook `hook`; stopped
/// when dropped.
fn start_loupe(hook: &str, loupe: &Path, target: &Target) -> anyhow::Result<Stop> {
    let port = target.port.to_string();
    let mut args = vec![
        "--port".as_ref(),
        port.as_ref(),
        "--service".as_ref(),
        target.name.as_ref(),
    ];
    // The OpenSSL uprobes are opt-in.
    let config = std::env::temp_dir().join("loupe-bench-tls.toml");
    if target.scheme == "https" {
        fs::write(&config, "[http]\ntls = true\n")?;
        args.extend(["--config".as_ref(), config.as_os_str()]);
    }
    let agent = spawn_loupe(loupe, hook, &args)?;
    sleep(Duration::from_secs(2));
    Ok(agent)
}

/// Starts `loupe run ARGS` with data hook `hook`, serving on `LOUPE_PORT`;
/// stopped when dropped.
fn spawn_loupe(loupe: &Path, hook: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Stop> {
    let child = Command::new(loupe)
        .arg("run")
        .args(args)
        .args(["--data-hook", hook])
        .args(["--listen", &format!("127.0.0.1:{LOUPE_PORT}")])
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start loupe")?;
    let agent = Stop(child);
    wait_port(LOUPE_PORT, 30, "loupe")?;
    Ok(agent)
}

/// What one bench run needs besides the target.
struct Bench<'a> {
    options: &'a Options,
    loupe: PathBuf,
    /// The wrk script of the paced runs.
    pace: PathBuf,
    /// Where h2load writes each request's latency.
    h2_log: PathBuf,
}

impl Bench<'_> {
    /// The load at saturation on the target's server at `port`: wrk, or
    /// h2load for an HTTP/2 target.
    fn saturate(&self, target: &Target, port: u16) -> anyhow::Result<Load> {
        self.saturate_on(target, port, None)
    }

    /// [`Self::saturate`], the load generator on CPU `cpu` only if given.
    fn saturate_on(&self, target: &Target, port: u16, cpu: Option<u32>) -> anyhow::Result<Load> {
        let (connections, seconds) = (self.options.connections, self.options.seconds);
        if target.h2 {
            h2load(
                &target.url(port),
                connections,
                seconds,
                None,
                &self.h2_log,
                cpu,
            )
        } else {
            wrk(&target.url(port), connections, seconds, cpu)
        }
    }

    /// [`Self::saturate`], with where the machine's CPU went meanwhile
    /// (`agent` is loupe's PID, if it runs).
    fn saturate_metered(
        &self,
        target: &Target,
        port: u16,
        agent: Option<u32>,
    ) -> anyhow::Result<(Load, Split)> {
        let meter = Meter::start(&target.server_pids(), agent);
        let load = self.saturate(target, port)?;
        Ok((load, meter.stop()))
    }

    /// The paced load on the target (see `measure::PACE_SCRIPT`; h2load
    /// paces each connection to 1,000 requests per second).
    fn paced(&self, target: &Target) -> anyhow::Result<Load> {
        let (url, seconds) = (target.url(target.port), self.options.seconds);
        if target.h2 {
            let connections = target.paced_connections;
            h2load(&url, connections, seconds, Some(1000), &self.h2_log, None)
        } else {
            wrk_paced(&url, target.paced_connections, seconds, &self.pace)
        }
    }
}

/// The kernel's BPF run-time statistics, on while this lives. They cost
/// two clock reads per program run, so throughput and latency are measured
/// with them off, as users run loupe, and BPF time in a run of its own.
struct BpfStats;

impl BpfStats {
    fn on() -> anyhow::Result<Self> {
        sh::run(Command::new("sysctl").args(["-q", "kernel.bpf_stats_enabled=1"]))?;
        Ok(Self)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = sh::run(Command::new("sysctl").args(["-q", "kernel.bpf_stats_enabled=0"]));
    }
}

/// A wrk run with loupe attached through data hook `hook` (then, if
/// `paced`, a paced run with the same agent), then one more wrk run with
/// BPF statistics on for the programs' run time.
fn with_loupe(
    bench: &Bench,
    hook: &str,
    target: &Target,
    paced: bool,
) -> anyhow::Result<(Load, Cost, Option<Load>)> {
    with_binary(bench, &bench.loupe, hook, target, paced)
}

/// [`with_loupe`] with the loupe binary `loupe`.
fn with_binary(
    bench: &Bench,
    loupe: &Path,
    hook: &str,
    target: &Target,
    paced: bool,
) -> anyhow::Result<(Load, Cost, Option<Load>)> {
    let agent = start_loupe(hook, loupe, target)?;
    let pid = agent.0.id();
    let families = [
        "agent_requests_total",
        "db_queries_total",
        "redis_operations_total",
    ];
    let counts = || families.map(|family| scrape(LOUPE_PORT, family));
    let counted_before = counts();
    let before = usage(pid);
    let (load, split) = bench.saturate_metered(target, target.port, Some(pid))?;
    sleep(Duration::from_secs(1));
    let after = usage(pid);
    let [counted, queries, commands] = {
        let now = counts();
        [0, 1, 2].map(|i| now[i] - counted_before[i])
    };
    let paced = paced.then(|| bench.paced(target)).transpose()?;
    let stats = BpfStats::on()?;
    let bpf_before = Programs::of(pid);
    let timed = bench.saturate(target, target.port)?;
    let bpf = Programs::of(pid).since(&bpf_before);
    drop(stats);
    let cost = Cost {
        bpf,
        bpf_requests: timed.requests.max(1),
        cpu_ticks: after.ticks - before.ticks,
        rss_kb: after.rss_kb,
        peak_kb: usage(pid).peak_kb,
        counted,
        lost: scrape(LOUPE_PORT, "loupe_events_lost_total"),
        queries,
        commands,
        split: split.per_request_us(load.requests),
    };
    Ok((load, cost, paced))
}

/// Throughput at saturation with the server and the load generator on CPU
/// 0 and the agent alone on CPU 1 (a node with a core to spare), without
/// loupe, with the floor and with loupe: `[rps bare, rps floor, rps loupe,
/// requests counted, requests completed]` (the last two with loupe).
fn spare_core(bench: &Bench, target: &Target) -> anyhow::Result<[f64; 5]> {
    /// Lets the server run anywhere again when dropped.
    struct Pinned(Vec<u32>);
    impl Drop for Pinned {
        fn drop(&mut self) {
            let all = format!("0-{}", num_cpus() - 1);
            let _ = pin(&self.0, &all);
        }
    }
    let server = Pinned(tree(&target.server_pids()));
    pin(&server.0, "0")?;
    let bare = bench.saturate_on(target, target.port, Some(0))?;
    let mut with = [0.0; 2];
    let (mut counted, mut sent) = (0.0, 0.0);
    for (rps, hook) in with.iter_mut().zip([FLOOR_HOOK, &bench.options.data_hook]) {
        let agent = start_loupe(hook, &bench.loupe, target)?;
        pin(&[agent.0.id()], "1")?;
        let before = scrape(LOUPE_PORT, "agent_requests_total");
        let load = bench.saturate_on(target, target.port, Some(0))?;
        sleep(Duration::from_secs(1));
        counted = scrape(LOUPE_PORT, "agent_requests_total") - before;
        sent = load.requests as f64;
        *rps = load.rps;
    }
    Ok([bare.rps, with[0], with[1], counted, sent])
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Rounds of bare / floor / loupe (/ middleware) runs on one target.
fn bench_target(bench: &Bench, target: &Target) -> anyhow::Result<()> {
    let options = bench.options;
    println!(
        "\n{} ({}{}; `floor`: loupe's data hooks with empty programs), {} -c{} -d{}s; \
         `paced`: -c{} {}:",
        target.name,
        target.url(target.port),
        if target.instrumented.is_some() {
            "; `mw`: the same app with prometheus-fastapi-instrumentator, no loupe"
        } else {
            ""
        },
        if target.h2 {
            "h2load (HTTP/2, 10 streams per connection)"
        } else {
            "wrk -t1"
        },
        options.connections,
        options.seconds,
        target.paced_connections,
        if target.h2 {
            "at 1,000 requests/s each"
        } else {
            "with 1 ms between an answer and the next request"
        }
    );
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>15} {:>8} {:>8} {:>10} {:>8} {:>8} {:>13} {:>5} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}",
        "round",
        "rps bare",
        "rps floor",
        "rps loupe",
        "fl rat",
        "ratio",
        "p50 +us",
        "p99 +us",
        "paced rps",
        "paced p99 us",
        "floor ns",
        "BPF ns",
        "core/10k",
        "CPU us",
        "RSS MB",
        "counted/sent",
        "lost",
        "rps mw",
        "mw rat",
        "base rat",
        "base ns",
        "base us",
        "base MB"
    );
    let (mut ratios, mut bpf, mut cpu, mut mw_ratios) = (vec![], vec![], vec![], vec![]);
    let (mut floor_ratios, mut floor_bpf, mut paced_p99) = (vec![], vec![], vec![]);
    let (mut base_ratios, mut base_bpf, mut base_cpu) = (vec![], vec![], vec![]);
    let (mut rss, mut base_rss) = (vec![], vec![]);
    let (mut splits, mut spare) = (vec![], vec![]);
    let mut last = None;
    for round in 1..=options.rounds {
        let (bare, bare_split) = bench.saturate_metered(target, target.port, None)?;
        let bare_split = bare_split.per_request_us(bare.requests);
        let bare_paced = bench.paced(target)?;
        let (floor, floor_cost, _) = with_loupe(bench, FLOOR_HOOK, target, false)?;
        let (load, cost, paced) = with_loupe(bench, &options.data_hook, target, true)?;
        let paced = paced.unwrap_or_default();
        let base = options
            .baseline
            .as_deref()
            .map(|loupe| with_binary(bench, loupe, &options.data_hook, target, false))
            .transpose()?
            .map(|(load, cost, _)| {
                let cpu_us =
                    cost.cpu_ticks as f64 / TICKS_PER_SECOND * 1e6 / load.requests.max(1) as f64;
                (
                    load.rps / bare.rps,
                    cost.bpf.total_ns() as f64 / cost.bpf_requests as f64,
                    cpu_us,
                    cost.rss_kb as f64 / 1024.0,
                )
            });
        let middleware = target
            .instrumented
            .map(|port| bench.saturate(target, port))
            .transpose()?;
        let ratio = load.rps / bare.rps;
        let floor_ratio = floor.rps / bare.rps;
        let requests = load.requests.max(1) as f64;
        let per_request = cost.bpf.total_ns() as f64 / cost.bpf_requests as f64;
        let floor_per_request = floor_cost.bpf.total_ns() as f64 / floor_cost.bpf_requests as f64;
        let cpu_seconds = cost.cpu_ticks as f64 / TICKS_PER_SECOND;
        let cores_per_10k = cpu_seconds / f64::from(options.seconds) / (load.rps / 10_000.0);
        let cpu_us = cpu_seconds * 1e6 / requests;
        let mw_ratio = middleware.map(|m| m.rps / bare.rps);
        println!(
            "{round:>5} {:>9.0} {:>9.0} {:>9.0} {:>7.3} {:>7.3} {:>8.0} {:>8.0} {:>8.0} {:>15} {:>8.0} {:>8.0} {:>10.4} {:>8.2} {:>8.1} {:>13} {:>5} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}",
            bare.rps,
            floor.rps,
            load.rps,
            floor_ratio,
            ratio,
            load.p50_us - bare.p50_us,
            load.p99_us - bare.p99_us,
            paced.rps,
            format!("{:.0} -> {:.0}", bare_paced.p99_us, paced.p99_us),
            floor_per_request,
            per_request,
            cores_per_10k,
            cpu_us,
            cost.rss_kb as f64 / 1024.0,
            format!("{:.0}/{}", cost.counted, load.requests),
            cost.lost,
            middleware.map_or("-".into(), |m| format!("{:.0}", m.rps)),
            mw_ratio.map_or("-".into(), |r| format!("{r:.3}")),
            base.map_or("-".into(), |b| format!("{:.3}", b.0)),
            base.map_or("-".into(), |b| format!("{:.0}", b.1)),
            base.map_or("-".into(), |b| format!("{:.2}", b.2)),
            base.map_or("-".into(), |b| format!("{:.1}", b.3)),
        );
        println!(
            "      CPU us/request, server + load + agent + rest: bare {bare_split} | floor {} | \
             loupe {}",
            floor_cost.split, cost.split
        );
        splits.push([bare_split, floor_cost.split, cost.split]);
        if num_cpus() >= 2 {
            let [bare, floor, with, counted, sent] = spare_core(bench, target)?;
            println!(
                "      a core to spare (server and load generator on CPU 0, the agent alone on \
                 CPU 1): rps bare {bare:.0}, floor {floor:.0}, loupe {with:.0}: loupe / floor \
                 {:.3}, counted/sent {counted:.0}/{sent:.0}",
                with / floor
            );
            spare.push(with / floor);
        }
        if target.backends {
            let per = |n: f64| n / cost.counted.max(1.0);
            println!(
                "      counted with loupe: {:.0} requests, {:.0} PostgreSQL statements ({:.2} per \
                 request: the SELECT and the four of asyncpg's reset on release), {:.0} Redis \
                 commands ({:.2} per request)",
                cost.counted,
                cost.queries,
                per(cost.queries),
                cost.commands,
                per(cost.commands)
            );
        }
        if let Some((ratio, ns, us, mib)) = base {
            base_ratios.push(ratio);
            base_bpf.push(ns);
            base_cpu.push(us);
            base_rss.push(mib);
        }
        ratios.push(ratio);
        bpf.push(per_request);
        floor_ratios.push(floor_ratio);
        floor_bpf.push(floor_per_request);
        paced_p99.push(paced.p99_us / bare_paced.p99_us);
        cpu.push(cpu_us);
        rss.push(cost.rss_kb as f64 / 1024.0);
        mw_ratios.extend(mw_ratio);
        last = Some((cost.bpf, cost.bpf_requests, cost.peak_kb));
    }
    let ratio = median(&mut ratios);
    let floor = median(&mut floor_ratios);
    println!(
        "median: throughput ratio {ratio:.3} (floor {floor:.3}), BPF {:.0} ns/request (floor \
         {:.0}), agent userspace {:.2} us/request",
        median(&mut bpf),
        median(&mut floor_bpf),
        median(&mut cpu)
    );
    let [bare, floor_split, with] =
        [0, 1, 2].map(|i| Split::median(&splits.iter().map(|s| s[i]).collect::<Vec<_>>()));
    println!(
        "CPU us/request (medians), server + load generator + agent + rest: bare {bare}; floor \
         {floor_split}; loupe {with}; loupe's busy time per request is {:.3}x the floor's",
        with.busy() / floor_split.busy()
    );
    if !spare.is_empty() {
        println!(
            "with a core to spare for the agent, loupe / floor {:.3} (median)",
            median(&mut spare)
        );
    }
    if let Some((points, ns, us)) = target.goal {
        println!(
            "  targets: throughput within {points} points of the floor (here {:.0}), BPF <= {ns} \
             ns/request, agent <= {us} us/request",
            (floor - ratio) * 100.0
        );
    }
    println!(
        "paced load: p99 with loupe / without {:.2} (target <= 1.10)",
        median(&mut paced_p99)
    );
    if !base_ratios.is_empty() {
        println!(
            "baseline binary: throughput ratio {:.3}, BPF {:.0} ns/request, agent userspace \
             {:.2} us/request, RSS {:.1} MiB (this binary: {:.1} MiB)",
            median(&mut base_ratios),
            median(&mut base_bpf),
            median(&mut base_cpu),
            median(&mut base_rss),
            median(&mut rss)
        );
    }
    if !mw_ratios.is_empty() {
        let mw = median(&mut mw_ratios);
        println!(
            "in-process middleware: throughput ratio {mw:.3}; loupe's throughput cost is {:.2} of \
             the middleware's (target <= 0.10)",
            (1.0 - ratio) / (1.0 - mw)
        );
    }
    println!("(counted/sent: wrk does not report requests still in flight when it stops)");
    if let Some((programs, requests, peak_kb)) = last {
        println!(
            "agent peak RSS {:.1} MB; BPF time by program, last round ({requests} requests):",
            peak_kb as f64 / 1024.0
        );
        for (name, (ns, runs)) in &programs.0 {
            println!(
                "  {name:<20} {:>7.2} runs/req {:>7.0} ns/run {:>7.0} ns/req",
                *runs as f64 / requests as f64,
                *ns as f64 / (*runs).max(1) as f64,
                *ns as f64 / requests as f64
            );
        }
    }
    Ok(())
}

/// Seconds `dd` takes for DD_BYTES one-byte reads and writes.
fn dd_seconds() -> anyhow::Result<f64> {
    let started = Instant::now();
    sh::run(Command::new("dd").args([
        "if=/dev/zero",
        "of=/dev/null",
        "bs=1",
        &format!("count={DD_BYTES}"),
        "status=none",
    ]))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds of `dd_seconds` while loupe runs with data hook `hook`.
fn dd_seconds_with(bench: &Bench, hook: &str, target: &Target) -> anyhow::Result<f64> {
    let _agent = start_loupe(hook, &bench.loupe, target)?;
    dd_seconds()
}

/// What loupe adds to a syscall of a process it does not track (its
/// tracepoints fire for every process), next to the floor (the same hooks
/// with empty programs). Measured with the kernel's BPF statistics off, as
/// users run it.
fn untracked_tax(bench: &Bench, target: &Target) -> anyhow::Result<()> {
    let options = bench.options;
    let syscalls = 2.0 * f64::from(DD_BYTES);
    let (mut added, mut floor_added) = (Vec::new(), Vec::new());
    println!(
        "\nuntracked process: dd with {DD_BYTES} one-byte reads and writes, without loupe, with \
         loupe's hooks running empty programs (floor) and with loupe, attached to {}:",
        target.name
    );
    for round in 1..=options.rounds {
        let bare = dd_seconds()?;
        let floor = dd_seconds_with(bench, FLOOR_HOOK, target)?;
        let with = dd_seconds_with(bench, &options.data_hook, target)?;
        let per_syscall = |seconds: f64| seconds * 1e9 / syscalls;
        let (ns, floor_ns) = (per_syscall(with - bare), per_syscall(floor - bare));
        println!(
            "{round:>5} {:>8.0} ns/syscall bare {:>8.0} floor {:>8.0} with loupe: {:>+6.0} \
             added (floor {:>+6.0})",
            per_syscall(bare),
            per_syscall(floor),
            per_syscall(with),
            ns,
            floor_ns
        );
        added.push(ns);
        floor_added.push(floor_ns);
    }
    println!(
        "median added per syscall: {:.0} ns (floor {:.0} ns)",
        median(&mut added),
        median(&mut floor_added)
    );
    Ok(())
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run `cargo xtask bench` as root");
    }
    sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
    let dir = PathBuf::from(format!("/tmp/loupe-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let bench = Bench {
        options,
        loupe: root().join("target/release/loupe"),
        pace: dir.join("pace.lua"),
        h2_log: dir.join("h2load.log"),
    };
    fs::write(&bench.pace, PACE_SCRIPT)?;
    if options.node {
        let result = node::run(&bench);
        let _ = fs::remove_dir_all(&dir);
        return result;
    }
    let wanted = |name: &str| options.target.as_deref().is_none_or(|t| t == name);
    let mut chosen = Vec::new();
    for (kind, port) in [
        (Nginx::Http, NGINX_PORT),
        (Nginx::Https, NGINX_TLS_PORT),
        (Nginx::H2c, NGINX_H2C_PORT),
    ] {
        if wanted(kind.name()) {
            chosen.push(targets::nginx(&dir, port, kind)?);
        }
    }
    if wanted("hyper") {
        chosen.push(targets::hyper(HYPER_PORT)?);
    }
    if wanted("fastapi") {
        chosen.push(targets::fastapi(&dir, FASTAPI_PORT)?);
    }
    if wanted("fastapi-db") {
        chosen.push(targets::fastapi_db(&dir, FASTAPI_DB_PORT)?);
    }
    if chosen.is_empty() {
        bail!("no such target; use nginx, nginx-tls, nginx-h2c, hyper, fastapi or fastapi-db");
    }
    println!(
        "{} alternating rounds per target, data hook {}",
        options.rounds, options.data_hook
    );
    let result = chosen
        .iter()
        .try_for_each(|target| bench_target(&bench, target))
        .and_then(|()| untracked_tax(&bench, &chosen[0]));
    drop(chosen);
    let _ = fs::remove_dir_all(&dir);
    result
}
