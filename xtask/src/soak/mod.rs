//! `cargo xtask soak --duration D`: the mission's service shape under
//! steady mixed load for D, with faults on a schedule, scraped every 15 s
//! like Prometheus; at the end every compared counter must equal the load
//! generator's own tally, and loupe's memory, descriptors and threads must
//! stay flat.
//!
//! The demo agent service (FastAPI under uvicorn, two workers) runs with a
//! PostgreSQL, a Redis and the fake model provider of its own; the load
//! (`tests/fixtures/agent_service/soak_load.py`) logs in, refreshes tokens,
//! invokes agents (JSON and streamed answers, each a model call) and tools.
//! The faults, spread evenly over the run: the service restarted,
//! PostgreSQL restarted, Redis restarted, a burst that overflows the ring
//! buffer while loupe is stopped (counted as loss; the only window where
//! counts may fall short), and a configuration with a broken rule sent
//! with SIGHUP (rejected; the old one stays), then the good one again.
//!
//! Around each fault the load pauses and both sides are read (a
//! checkpoint), so that every stretch between checkpoints is compared on
//! its own. A warning in loupe's log is a failure unless it falls in a
//! fault's window (from the fault to 20 s after the load resumed).
mod counts;
mod plot;
mod report;

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use self::{
    counts::{Scrape, Tally},
    plot::Sample,
};
use crate::{
    demo::backends::{self, Backend},
    setup,
    sh::{self, Group, free_port, is_root, root, wait_port},
};

const SERVICE: &str = "agent-api";
/// How often loupe is scraped and sampled.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);
/// Requests of the overflow burst (2 KiB heads: several times the 8 MiB
/// ring buffer).
const BURST: u32 = 6000;
/// A fault's window for warnings lasts this long after the load resumed.
const WARNING_GRACE: Duration = Duration::from_secs(20);
/// Growth allowed after the warm-up, and the absolute slack below which
/// growth is noise.
const FLAT: f64 = 0.05;

pub struct Options {
    pub duration: Duration,
    /// A loupe binary to run instead of building one.
    pub loupe: Option<PathBuf>,
    /// Where to write the samples (`samples.csv`) and their plot
    /// (`soak.svg`).
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    RestartService,
    RestartPostgres,
    RestartRedis,
    Overflow,
    BrokenConfig,
}

impl Fault {
    const ALL: [Self; 5] = [
        Self::RestartService,
        Self::RestartPostgres,
        Self::RestartRedis,
        Self::Overflow,
        Self::BrokenConfig,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::RestartService => "service restart",
            Self::RestartPostgres => "PostgreSQL restart",
            Self::RestartRedis => "Redis restart",
            Self::Overflow => "overflow",
            Self::BrokenConfig => "broken config",
        }
    }
}

/// Both sides read while the load paused.
struct Checkpoint {
    name: String,
    tally: Tally,
    scrape: Scrape,
    /// The stretch that ends here is the overflow window.
    ends_overflow: bool,
}

/// The load generator, driven through its stdin.
struct Load {
    _group: Group,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Load {
    fn start(base: &str) -> anyhow::Result<Self> {
        let mut group = Group::spawn(
            Command::new("python3")
                .arg(root().join("tests/fixtures/agent_service/soak_load.py"))
                .args([base, "0.1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
            "the soak's load",
            libc::SIGTERM,
        )?;
        let stdin = group.child().stdin.take().context("the load's stdin")?;
        let stdout = BufReader::new(group.child().stdout.take().context("the load's stdout")?);
        let mut load = Self {
            _group: group,
            stdin,
            stdout,
        };
        load.answer("ready")?;
        Ok(load)
    }

    /// Reads lines until one starts with `prefix`; returns the rest.
    fn answer(&mut self, prefix: &str) -> anyhow::Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the load generator ended before it said {prefix:?}");
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    fn ask(&mut self, command: &str, prefix: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.answer(prefix)
    }

    fn tally(text: &str) -> anyhow::Result<Tally> {
        serde_json::from_str(text).with_context(|| format!("the load's tally {text:?}"))
    }

    fn pause(&mut self) -> anyhow::Result<Tally> {
        Self::tally(&self.ask("pause", "paused")?)
    }

    fn resume(&mut self) -> anyhow::Result<()> {
        self.ask("resume", "resumed").map(drop)
    }

    fn burst(&mut self, count: u32) -> anyhow::Result<Tally> {
        Self::tally(&self.ask(&format!("burst {count}"), "burst")?)
    }
}

fn scrape(port: u16) -> anyhow::Result<Scrape> {
    let text = sh::output(Command::new("curl").args([
        "-sf",
        "--max-time",
        "5",
        &format!("http://127.0.0.1:{port}/metrics"),
    ]))
    .with_context(|| format!("loupe's /metrics on port {port} did not answer"))?;
    Ok(Scrape::parse(&text))
}

/// Scrapes until loupe has counted as many requests as the tally holds,
/// or (for the overflow window, where some are lost) until its count
/// stops moving.
fn settle(port: u16, tally: &Tally) -> anyhow::Result<Scrape> {
    let want: f64 = tally.values().map(|&n| n as f64).sum();
    let started = Instant::now();
    let mut last = (f64::NAN, Instant::now());
    loop {
        let scrape = scrape(port)?;
        let got: f64 = scrape
            .sum_by("agent_requests_total", &[("service", SERVICE)], &[])
            .values()
            .sum();
        if got == want {
            return Ok(scrape);
        }
        if got != last.0 {
            last = (got, Instant::now());
        }
        let still = last.1.elapsed() > Duration::from_secs(3);
        if started.elapsed() > Duration::from_secs(30)
            || (still && got < want && started.elapsed() > Duration::from_secs(10))
        {
            return Ok(scrape);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// loupe's process: resident memory, descriptors, threads, CPU ticks.
fn process(pid: u32) -> anyhow::Result<(f64, u64, u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("loupe (process {pid}) is gone"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15, 12 and 13 after the command.
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    Ok((
        field("VmRSS:") as f64 / 1024.0,
        fds,
        field("Threads:"),
        ticks,
    ))
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: a plain syscall on our own child.
    unsafe { libc::kill(pid as i32, signal) };
}

/// loupe's configuration: both collectors every 5 s against the soak's
/// database and Redis, the OpenTelemetry names beside loupe's; `extra`
/// appended (the broken rule).
fn config_text(port: u16, urls: &(String, String, String), extra: &str) -> String {
    let collectors = crate::demo::collectors(&urls.0, &urls.1, SERVICE);
    format!(
        "# Written by `cargo xtask soak`.\n\
         listen = \"127.0.0.1:{port}\"\n\n\
         {collectors}\n\
         [export]\n\
         conventions = [\"loupe\", \"otel\"]\n\
         {extra}"
    )
}

/// A rule naming a family that does not exist: the file does not load.
const BROKEN_RULE: &str = "\n[[rules]]\nname = \"soak broken rule\"\nfamily = \"no_such_family\"\n\
                           route = \"/agents/{agent}/invoke\"\n";

/// Waits until `check` holds for a scrape, up to `seconds`.
fn wait_scrape(
    port: u16,
    seconds: u64,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check(&scrape(port)?) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("{what} within {seconds}s")
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("loupe loads eBPF programs: run `cargo xtask soak` as root");
    }
    // Ctrl-C stops what the soak started before it ends.
    sh::catch_stop_signals();
    setup::demo(options.loupe.is_none(), false)?;
    let loupe_bin = match &options.loupe {
        Some(path) => path.clone(),
        None => {
            sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
            root().join("target/release/loupe")
        }
    };
    let dir = std::env::temp_dir().join(format!("loupe-soak-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let result = soak(options, &loupe_bin, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Starts the demo service on `port` (uvicorn, two workers) with
/// PostgreSQL, Redis and the model provider at `urls`.
fn service(port: u16, urls: &(String, String, String), dir: &Path) -> anyhow::Result<Group> {
    let group = Group::spawn(
        Command::new("python3")
            .args(["-m", "uvicorn", "app:app", "--app-dir"])
            .arg(root().join("tests/fixtures/agent_service"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "2",
            ])
            .args(["--log-level", "warning"])
            .env("DATABASE_URL", &urls.0)
            .env("REDIS_URL", &urls.1)
            .env("MODEL_URL", &urls.2)
            .env("DEMO_SQLITE", dir.join("service.sqlite3"))
            // Its tracebacks while PostgreSQL or Redis restart.
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("service.log"))?,
            ),
        "the service (uvicorn)",
        libc::SIGTERM,
    )?;
    wait_port(port, 30, "the service")?;
    Ok(group)
}

/// What the soak runs, and breaks on schedule. Fields drop in order:
/// loupe first, then the service, then what the service uses.
struct Rig<'a> {
    loupe: Group,
    server: Option<Group>,
    _model: Backend,
    redis: Backend,
    postgres: Backend,
    dir: &'a Path,
    /// PostgreSQL's, Redis's and the model provider's URLs.
    urls: (String, String, String),
    service_port: u16,
    /// loupe's /metrics port, configuration file and log.
    port: u16,
    config: PathBuf,
    log: PathBuf,
    /// The service's processes loupe tracks once it found them all.
    targets: f64,
}

impl<'a> Rig<'a> {
    fn start(loupe_bin: &Path, dir: &'a Path) -> anyhow::Result<Self> {
        let postgres = backends::postgres(dir)?;
        sh::quiet(
            Command::new("python3")
                .arg(root().join("tests/fixtures/business_tables.py"))
                .args(["postgres", &postgres.url, ""]),
        )?;
        let redis = backends::redis(dir)?;
        let model = backends::model_provider()?;
        let urls = (postgres.url.clone(), redis.url.clone(), model.url.clone());
        let service_port = free_port()?;
        let server = service(service_port, &urls, dir)?;
        let port = free_port()?;
        let config = dir.join("loupe.toml");
        fs::write(&config, config_text(port, &urls, ""))?;
        let log = dir.join("loupe.log");
        let loupe = Group::spawn(
            Command::new(loupe_bin)
                .arg("run")
                .arg("--config")
                .arg(&config)
                .args(["--port", &service_port.to_string(), "--service", SERVICE])
                .env("LOUPE_LOG", "info")
                .stderr(fs::File::create(&log)?),
            "loupe",
            libc::SIGTERM,
        )?;
        wait_port(port, 30, "loupe")?;
        // The service's three processes, and its route templates (from its
        // OpenAPI document).
        wait_scrape(port, 30, "loupe did not find the service", |s| {
            s.get("loupe_targets", &[("service", SERVICE)]) >= 3.0
                && s.sum_by("loupe_route_templates", &[("service", SERVICE)], &[])
                    .values()
                    .sum::<f64>()
                    > 0.0
        })?;
        let targets = scrape(port)?.get("loupe_targets", &[("service", SERVICE)]);
        Ok(Self {
            dir,
            postgres,
            redis,
            urls,
            service_port,
            server: Some(server),
            _model: model,
            port,
            config,
            log,
            loupe,
            targets,
        })
    }

    fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Causes `fault`, the load paused; the overflow adds the checkpoint
    /// that ends its window.
    fn fault(
        &mut self,
        fault: Fault,
        load: &mut Load,
        checkpoints: &mut Vec<Checkpoint>,
    ) -> anyhow::Result<()> {
        let pid = self.loupe.pid();
        match fault {
            Fault::RestartService => {
                // The old one stops (and is reaped) before the new one starts.
                drop(self.server.take());
                self.server = Some(service(self.service_port, &self.urls, self.dir)?);
                let targets = self.targets;
                wait_scrape(
                    self.port,
                    30,
                    "loupe did not find the restarted service",
                    |s| s.get("loupe_targets", &[("service", SERVICE)]) >= targets,
                )?;
            }
            Fault::RestartPostgres => self.postgres.restart()?,
            Fault::RestartRedis => self.redis.restart()?,
            Fault::Overflow => {
                signal(pid, libc::SIGSTOP);
                let burst = load.burst(BURST);
                signal(pid, libc::SIGCONT);
                let tally = burst?;
                checkpoints.push(Checkpoint {
                    name: format!("{} end", fault.name()),
                    scrape: settle(self.port, &tally)?,
                    tally,
                    ends_overflow: true,
                });
            }
            Fault::BrokenConfig => {
                let reloaded = |result: &'static str| {
                    move |s: &Scrape| {
                        s.get("loupe_config_reloads_total", &[("result", result)]) >= 1.0
                    }
                };
                fs::write(
                    &self.config,
                    config_text(self.port, &self.urls, BROKEN_RULE),
                )?;
                signal(pid, libc::SIGHUP);
                wait_scrape(
                    self.port,
                    10,
                    "loupe did not count the broken configuration",
                    reloaded("failure"),
                )?;
                fs::write(&self.config, config_text(self.port, &self.urls, ""))?;
                signal(pid, libc::SIGHUP);
                wait_scrape(
                    self.port,
                    10,
                    "loupe did not read the good configuration again",
                    reloaded("success"),
                )?;
            }
        }
        Ok(())
    }

    /// One sample of loupe's process; `last` holds the CPU ticks and time
    /// of the one before.
    fn sample(&self, at: f64, last: &mut (u64, Instant)) -> anyhow::Result<Sample> {
        scrape(self.port)?;
        let (rss_mib, fds, threads, ticks) = process(self.loupe.pid())?;
        let now = Instant::now();
        let seconds = now.duration_since(last.1).as_secs_f64().max(0.001);
        // USER_HZ is 100 on Linux.
        let cpu_percent = (ticks - last.0) as f64 / 100.0 / seconds * 100.0;
        *last = (ticks, now);
        Ok(Sample {
            at,
            rss_mib,
            cpu_percent,
            fds,
            threads,
        })
    }
}

/// When each fault comes: evenly spread over the run.
fn schedule(started: Instant, duration: Duration) -> Vec<(Instant, Fault)> {
    let spacing = duration.as_secs_f64() / (Fault::ALL.len() + 1) as f64;
    Fault::ALL
        .iter()
        .enumerate()
        .map(|(i, fault)| {
            (
                started + Duration::from_secs_f64(spacing * (i + 1) as f64),
                *fault,
            )
        })
        .collect()
}

fn soak(options: &Options, loupe_bin: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut rig = Rig::start(loupe_bin, dir)?;
    let mut checkpoints = vec![Checkpoint {
        name: "start".into(),
        tally: Tally::new(),
        scrape: scrape(rig.port)?,
        ends_overflow: false,
    }];
    let mut load = Load::start(&format!("http://127.0.0.1:{}", rig.service_port))?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticks = (process(rig.loupe.pid())?.3, started);
    let mut next_sample = started + SCRAPE_EVERY;
    let mut faults = schedule(started, options.duration).into_iter().peekable();
    let mut done: Vec<(f64, String)> = Vec::new();
    // Log byte ranges where warnings are expected; the open one closes at
    // its instant.
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut open_window: Option<(u64, Instant)> = None;

    while started.elapsed() < options.duration {
        if let Some(reason) = sh::stop_signal() {
            bail!("{reason} received");
        }
        let now = Instant::now();
        if now >= next_sample {
            next_sample += SCRAPE_EVERY;
            samples.push(rig.sample(started.elapsed().as_secs_f64(), &mut ticks)?);
        }
        if open_window.is_some_and(|(_, until)| now >= until) {
            windows.extend(open_window.take().map(|(since, _)| (since, rig.log_len())));
        }
        if let Some((_, fault)) = faults.next_if(|(at, _)| now >= *at) {
            let tally = load.pause()?;
            checkpoints.push(Checkpoint {
                name: fault.name().to_owned(),
                scrape: settle(rig.port, &tally)?,
                tally,
                ends_overflow: false,
            });
            windows.extend(open_window.take().map(|(since, _)| (since, rig.log_len())));
            let since = rig.log_len();
            let at = started.elapsed().as_secs_f64();
            eprintln!("soak: {at:.0} s: {}", fault.name());
            done.push((at, fault.name().to_owned()));
            rig.fault(fault, &mut load, &mut checkpoints)?;
            load.resume()?;
            open_window = Some((since, Instant::now() + WARNING_GRACE));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tally = load.pause()?;
    checkpoints.push(Checkpoint {
        name: "end".into(),
        scrape: settle(rig.port, &tally)?,
        tally,
        ends_overflow: false,
    });
    load.ask("quit", "tally")?;
    windows.extend(open_window.map(|(since, _)| (since, rig.log_len())));
    let elapsed = started.elapsed().as_secs_f64();
    let log = fs::read_to_string(&rig.log).unwrap_or_default();
    drop((load, rig));

    let mut failures = Vec::new();
    let mut report = String::new();
    report::compare(&checkpoints, &mut report, &mut failures);
    report::warnings(&log, &windows, &mut report, &mut failures);
    report::figures(&samples, options.duration, &mut report, &mut failures);
    let last = checkpoints.last().map(|c| &c.scrape);
    let _ = writeln!(
        report,
        "\nsoak: {elapsed:.0} s, {} answers tallied, {} faults, {} records lost in all \
         (loupe_events_lost_total)",
        checkpoints
            .last()
            .map_or(0, |c| c.tally.values().sum::<u64>()),
        done.len(),
        last.map_or(0.0, |s| s.get("loupe_events_lost_total", &[]))
    );
    fs::create_dir_all(&options.out)?;
    fs::write(options.out.join("samples.csv"), plot::csv(&samples))?;
    let title = format!("loupe under cargo xtask soak: {elapsed:.0} s, faults marked");
    fs::write(
        options.out.join("soak.svg"),
        plot::svg(&samples, elapsed, &done, &title),
    )?;
    let _ = writeln!(
        report,
        "samples and plot: {}",
        options.out.join("{samples.csv,soak.svg}").display()
    );
    print!("{report}");
    if failures.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        bail!("soak failed:\n- {}", failures.join("\n- "))
    }
}
