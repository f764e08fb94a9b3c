//! What the benchmark reads: wrk's report, the kernel's BPF statistics of
//! loupe's programs, a process's CPU time and memory, loupe's own metrics.
use std::{collections::BTreeMap, fs, path::Path, process::Command};

use anyhow::Context as _;

use crate::sh::output;

/// One wrk run.
#[derive(Default, Clone, Copy)]
pub struct Load {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// wrk at saturation: each connection sends its next request as soon as the
/// answer is in.
/// With `cpu`, wrk runs on that CPU only.
pub fn wrk(url: &str, connections: u32, seconds: u32, cpu: Option<u32>) -> anyhow::Result<Load> {
    run_wrk(url, connections, seconds, None, cpu)
}

/// A wrk Lua script that waits a millisecond after each answer: a paced
/// load of about `connections` thousand requests per second (less the
/// server's latency), for latency below saturation.
pub const PACE_SCRIPT: &str = "function delay()\n  return 1\nend\n";

/// wrk paced by `script` (see [`PACE_SCRIPT`]).
pub fn wrk_paced(url: &str, connections: u32, seconds: u32, script: &Path) -> anyhow::Result<Load> {
    run_wrk(url, connections, seconds, Some(script), None)
}

/// `program`, on CPU `cpu` only if given.
fn on_cpu(program: &str, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string(), program]);
            command
        }
        None => Command::new(program),
    }
}

fn run_wrk(
    url: &str,
    connections: u32,
    seconds: u32,
    script: Option<&Path>,
    cpu: Option<u32>,
) -> anyhow::Result<Load> {
    let mut command = on_cpu("wrk", cpu);
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let text = output(command.arg(url)).context("wrk failed (cargo xtask setup installs it)")?;
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

/// Concurrent streams per connection of the HTTP/2 load.
pub const H2_STREAMS: u32 = 10;

/// h2load (HTTP/2 with prior knowledge, `H2_STREAMS` streams on each of
/// `connections` connections) for `seconds`; with `rps`, each connection
/// paced to that many requests per second. Latencies from its per-request
/// log (`log`). With `cpu`, h2load runs on that CPU only.
pub fn h2load(
    url: &str,
    connections: u32,
    seconds: u32,
    rps: Option<u32>,
    log: &Path,
    cpu: Option<u32>,
) -> anyhow::Result<Load> {
    let mut command = on_cpu("h2load", cpu);
    command.args([
        &format!("-c{connections}"),
        &format!("-m{H2_STREAMS}"),
        "-D",
        &seconds.to_string(),
    ]);
    if let Some(rps) = rps {
        command.arg(format!("--rps={rps}"));
    }
    command.arg("--log-file").arg(log);
    let text = output(command.arg(url))
        .context("h2load failed (Debian's nghttp2-client; cargo xtask setup installs it)")?;
    // `finished in 10.00s, 12345.60 req/s, ...`; `requests: N total, N
    // started, N done, N succeeded, ...`
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .unwrap_or(0.0);
    let requests = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| {
            l.split(", ")
                .find_map(|part| part.strip_suffix(" succeeded"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Tab-separated: start (us since the epoch), status, duration (us).
    let mut latencies: Vec<f64> = fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Load {
        requests,
        rps,
        p50_us: at(0.5),
        p99_us: at(0.99),
    })
}

/// wrk prints `123.45us`, `1.20ms` or `2.00s`.
pub fn duration_us(text: &str) -> f64 {
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
pub struct Programs(pub BTreeMap<String, (u64, u64)>);

impl Programs {
    /// The programs `pid` holds, from its fdinfo (kernel BPF statistics).
    pub fn of(pid: u32) -> Self {
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

    pub fn since(&self, before: &Self) -> Self {
        let mut delta = self.0.clone();
        for (name, (ns, runs)) in &mut delta {
            let (ns0, runs0) = before.0.get(name).copied().unwrap_or_default();
            *ns -= ns0.min(*ns);
            *runs -= runs0.min(*runs);
        }
        Self(delta)
    }

    pub fn total_ns(&self) -> u64 {
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

/// USER_HZ on Linux: the unit of `/proc`'s CPU times.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Where the machine's CPU time went during one load run, in seconds: the
/// server's process tree, the load generator, the agent, everything else
/// that was busy (kernel threads, databases, interrupts the scheduler tick
/// landed in outside these), and idle. BPF programs run in the context of
/// the process whose syscall they hook, so their time is in `server` and
/// `load`. With tick-based accounting these are samples of the scheduler
/// tick, good to a few percent over a run of seconds.
#[derive(Default, Clone, Copy)]
pub struct Split {
    pub server: f64,
    pub load: f64,
    pub agent: f64,
    pub rest: f64,
    pub idle: f64,
}

impl Split {
    /// Each part per request, in microseconds.
    pub fn per_request_us(self, requests: u64) -> Self {
        let us = |seconds: f64| seconds * 1e6 / requests.max(1) as f64;
        Self {
            server: us(self.server),
            load: us(self.load),
            agent: us(self.agent),
            rest: us(self.rest),
            idle: us(self.idle),
        }
    }

    pub fn busy(self) -> f64 {
        self.server + self.load + self.agent + self.rest
    }

    /// The median of each part.
    pub fn median(splits: &[Self]) -> Self {
        let part = |get: fn(&Self) -> f64| {
            let mut values: Vec<f64> = splits.iter().map(get).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        Self {
            server: part(|s| s.server),
            load: part(|s| s.load),
            agent: part(|s| s.agent),
            rest: part(|s| s.rest),
            idle: part(|s| s.idle),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} + {:.2} + {:.2} + {:.2} = {:.2} (idle {:.2})",
            self.server,
            self.load,
            self.agent,
            self.rest,
            self.busy(),
            self.idle
        )
    }
}

/// Measures a [`Split`]: started before a load run, stopped after it. The
/// load generator is this process's child that exits within the run, so
/// its time is the change in the children's resource usage.
pub struct Meter {
    roots: Vec<u32>,
    agent: Option<u32>,
    machine: (u64, u64),
    server: u64,
    agent_ticks: u64,
    children: f64,
}

impl Meter {
    pub fn start(roots: &[u32], agent: Option<u32>) -> Self {
        Self {
            roots: roots.to_vec(),
            agent,
            machine: machine_ticks(),
            server: tree_ticks(roots),
            agent_ticks: agent.map_or(0, |pid| usage(pid).ticks),
            children: children_seconds(),
        }
    }

    pub fn stop(self) -> Split {
        let seconds = |ticks: u64| ticks as f64 / TICKS_PER_SECOND;
        let (busy, idle) = machine_ticks();
        let server = seconds(tree_ticks(&self.roots).saturating_sub(self.server));
        let agent = seconds(
            self.agent
                .map_or(0, |pid| usage(pid).ticks)
                .saturating_sub(self.agent_ticks),
        );
        let load = children_seconds() - self.children;
        let busy = seconds(busy.saturating_sub(self.machine.0));
        Split {
            server,
            load,
            agent,
            rest: (busy - server - load - agent).max(0.0),
            idle: seconds(idle.saturating_sub(self.machine.1)),
        }
    }
}

/// The machine's busy and idle ticks (all CPUs) from `/proc/stat`; time
/// stolen by the hypervisor counts as busy.
fn machine_ticks() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7), at(3) + at(4))
}

/// CPU ticks of `roots` and all their descendants (threads included).
fn tree_ticks(roots: &[u32]) -> u64 {
    tree(roots).iter().map(|&pid| usage(pid).ticks).sum()
}

/// `roots` and all their descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let processes: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect();
    let mut tree = roots.to_vec();
    let mut grew = true;
    while grew {
        let before = tree.len();
        for &(pid, ppid) in &processes {
            if tree.contains(&ppid) && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        grew = tree.len() > before;
    }
    tree
}

/// Lets `pids` (every thread of each) run only on `cpus` (`taskset`'s
/// list syntax).
pub fn pin(pids: &[u32], cpus: &str) -> anyhow::Result<()> {
    for pid in pids {
        output(Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]))
            .with_context(|| format!("cannot pin {pid} to CPUs {cpus}"))?;
    }
    Ok(())
}

/// CPU seconds of this process's children that have been waited for.
fn children_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A process's CPU time (ticks) and memory (kB, now and at its peak).
pub struct Usage {
    pub ticks: u64,
    pub rss_kb: u64,
    pub peak_kb: u64,
}

pub fn usage(pid: u32) -> Usage {
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
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; 11 and 12 after ")".
    Usage {
        ticks: ticks(11) + ticks(12),
        rss_kb: kb("VmRSS:"),
        peak_kb: kb("VmHWM:"),
    }
}

/// The sum of the series starting with `series` on loupe's `/metrics`.
pub fn scrape(port: u16, series: &str) -> f64 {
    scrape_where(port, series, "")
}

/// [`scrape`] of the series that also contain `label` (`name="value"`).
pub fn scrape_where(port: u16, series: &str, label: &str) -> f64 {
    let text =
        output(Command::new("curl").args(["-s", &format!("http://127.0.0.1:{port}/metrics")]))
            .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(series) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
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
