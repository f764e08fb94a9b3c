//! `cargo xtask bench`: nginx under wrk, without and with loupe, in
//! alternating rounds of the same run; prints throughput, latency, BPF time
//! per request (kernel BPF statistics), agent CPU and memory, and whether
//! loupe counted every request. A report, not a test: this machine is
//! shared and noisy, so only side-by-side ratios mean something.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::sh::{self, Stop, is_root, output, root, wait_port};

const NGINX_PORT: u16 = 18_480;
const LOUPE_PORT: u16 = 18_481;

pub struct Options {
    pub rounds: u32,
    pub seconds: u32,
    pub connections: u32,
    /// Passed to `loupe run --data-hook`.
    pub data_hook: String,
}

/// One wrk run.
#[derive(Default, Clone, Copy)]
struct Load {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

/// What loupe cost during one run.
#[derive(Default, Clone)]
struct Cost {
    bpf: Programs,
    cpu_ticks: u64,
    rss_kb: u64,
    counted: f64,
    lost: f64,
}

fn nginx(dir: &Path) -> anyhow::Result<Stop> {
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n \
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n \
             server {{ listen 127.0.0.1:{NGINX_PORT}; location / {{ return 200 \"hello\\n\"; }} }}\n}}\n"
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
    let stop = Stop(child);
    wait_port(NGINX_PORT, 10, "nginx")?;
    Ok(stop)
}

fn wrk(options: &Options) -> anyhow::Result<Load> {
    let text = output(Command::new("wrk").args([
        "-t1",
        &format!("-c{}", options.connections),
        &format!("-d{}s", options.seconds),
        "--latency",
        &format!("http://127.0.0.1:{NGINX_PORT}/"),
    ]))
    .context("wrk failed (cargo xtask setup installs it)")?;
    let micros = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| duration_us(v.trim()))
            .unwrap_or(f64::NAN)
    };
    Ok(Load {
        requests: text
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0),
        rps: text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
        p50_us: micros("50%"),
        p99_us: micros("99%"),
    })
}

/// wrk prints `123.45us`, `1.20ms` or `2.00s`.
fn duration_us(text: &str) -> f64 {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        (text, f64::NAN)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// Run time and run count of each BPF program, by program name.
#[derive(Default, Clone)]
struct Programs(BTreeMap<String, (u64, u64)>);

impl Programs {
    /// The programs `pid` holds, from its fdinfo (kernel BPF statistics).
    fn of(pid: u32) -> Self {
        let mut programs = BTreeMap::new();
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return Self(programs);
        };
        for info in entries.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok()) {
            let value = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let (Some(id), Some(ns), Some(runs)) =
                (value("prog_id:"), value("run_time_ns:"), value("run_cnt:"))
            else {
                continue;
            };
            let entry = programs.entry(program_name(id)).or_insert((0, 0));
            entry.0 += ns;
            entry.1 += runs;
        }
        Self(programs)
    }

    fn since(&self, before: &Self) -> Self {
        let mut delta = self.0.clone();
        for (name, (ns, runs)) in &mut delta {
            let (ns0, runs0) = before.0.get(name).copied().unwrap_or_default();
            *ns -= ns0.min(*ns);
            *runs -= runs0.min(*runs);
        }
        Self(delta)
    }

    fn total_ns(&self) -> u64 {
        self.0.values().map(|(ns, _)| ns).sum()
    }
}

/// `bpftool prog show id N` prints `N: type  name NAME  tag ...`.
fn program_name(id: u64) -> String {
    output(Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]))
        .and_then(|text| {
            let mut words = text.split_whitespace();
            words.find(|w| *w == "name")?;
            words.next().map(str::to_owned)
        })
        .unwrap_or_else(|| format!("id {id}"))
}

/// `(utime + stime in ticks, RSS in kB)` of a process.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; 11 and 12 after ")".
    (ticks(11) + ticks(12), rss)
}

fn scrape(series: &str) -> f64 {
    let text = output(
        Command::new("curl").args(["-s", &format!("http://127.0.0.1:{LOUPE_PORT}/metrics")]),
    )
    .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn with_loupe(options: &Options, loupe: &Path) -> anyhow::Result<(Load, Cost)> {
    let child = Command::new(loupe)
        .args([
            "run",
            "--port",
            &NGINX_PORT.to_string(),
            "--service",
            "nginx",
            "--data-hook",
            &options.data_hook,
        ])
        .args(["--listen", &format!("127.0.0.1:{LOUPE_PORT}")])
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start loupe")?;
    let agent = Stop(child);
    let pid = agent.0.id();
    wait_port(LOUPE_PORT, 30, "loupe")?;
    sleep(Duration::from_secs(2));
    let counted_before = scrape("agent_requests_total");
    let (cpu_before, _) = cpu_and_rss(pid);
    let bpf_before = Programs::of(pid);
    let load = wrk(options)?;
    sleep(Duration::from_secs(1));
    let (cpu_after, rss_kb) = cpu_and_rss(pid);
    let cost = Cost {
        bpf: Programs::of(pid).since(&bpf_before),
        cpu_ticks: cpu_after - cpu_before,
        rss_kb,
        counted: scrape("agent_requests_total") - counted_before,
        lost: scrape("loupe_events_lost_total"),
    };
    drop(agent);
    Ok((load, cost))
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run `cargo xtask bench` as root");
    }
    sh::run(Command::new("cargo").args(["build", "--release", "--package", "loupe"]))?;
    let loupe = root().join("target/release/loupe");
    let dir = PathBuf::from(format!("/tmp/loupe-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let _nginx = nginx(&dir)?;
    sh::run(Command::new("sysctl").args(["-q", "kernel.bpf_stats_enabled=1"]))?;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    println!(
        "nginx (1 worker, 6-byte response), wrk -t1 -c{} -d{}s, {} alternating rounds, \
         data hook {}\n",
        options.connections, options.seconds, options.rounds, options.data_hook
    );
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>9} {:>9} {:>10} {:>12} {:>9} {:>10} {:>8}",
        "round",
        "rps bare",
        "rps loupe",
        "ratio",
        "p50 +us",
        "p99 +us",
        "BPF ns/req",
        "CPU core/10k",
        "RSS MB",
        "counted",
        "lost"
    );
    let mut ratios = Vec::new();
    let mut bpf = Vec::new();
    let mut last = None;
    for round in 1..=options.rounds {
        let bare = wrk(options)?;
        let (load, cost) = with_loupe(options, &loupe)?;
        let ratio = load.rps / bare.rps;
        let per_request = cost.bpf.total_ns() as f64 / load.requests.max(1) as f64;
        let cores = cost.cpu_ticks as f64 / ticks_per_second / f64::from(options.seconds);
        let cores_per_10k = cores / (load.rps / 10_000.0);
        println!(
            "{round:>5} {:>12.0} {:>12.0} {:>8.3} {:>9.0} {:>9.0} {:>10.0} {:>12.4} {:>9.1} {:>10} {:>8}",
            bare.rps,
            load.rps,
            ratio,
            load.p50_us - bare.p50_us,
            load.p99_us - bare.p99_us,
            per_request,
            cores_per_10k,
            cost.rss_kb as f64 / 1024.0,
            format!("{:.0}/{}", cost.counted, load.requests),
            cost.lost
        );
        ratios.push(ratio);
        bpf.push(per_request);
        last = Some((cost.bpf, load.requests.max(1)));
    }
    sh::run(Command::new("sysctl").args(["-q", "kernel.bpf_stats_enabled=0"]))?;
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "\nmedian throughput ratio {:.3}, median BPF time {:.0} ns per request (target: <= 500)",
        median(&mut ratios),
        median(&mut bpf)
    );
    println!("(counted/sent: wrk does not report requests still in flight when it stops)");
    if let Some((programs, requests)) = last {
        println!("\nBPF time by program, last round ({requests} requests):");
        println!(
            "{:<20} {:>10} {:>10} {:>10}",
            "program", "runs/req", "ns/run", "ns/req"
        );
        for (name, (ns, runs)) in &programs.0 {
            println!(
                "{name:<20} {:>10.2} {:>10.0} {:>10.0}",
                *runs as f64 / requests as f64,
                *ns as f64 / (*runs).max(1) as f64,
                *ns as f64 / requests as f64
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::duration_us;

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(duration_us("81.69us"), 81.69);
        assert_eq!(duration_us("4.20ms"), 4200.0);
        assert_eq!(duration_us("1.5s"), 1_500_000.0);
        assert!(duration_us("?").is_nan());
    }
}
