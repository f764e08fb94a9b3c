//! Project tasks: `cargo xtask setup | build | services | test | demo |
//! lint | kernels | bench | fuzz | soak`.
//! Each installs or starts what it needs first, so the README's two commands
//! work on a fresh machine.
mod arch;
mod bench;
mod build;
mod demo;
mod fuzz;
mod kernels;
mod services;
mod setup;
mod sh;
mod soak;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: nightly rust-src, bpf-linker, system and
    /// Python packages. Idempotent; seconds when everything is present.
    Setup {
        /// Only what building loupe needs (nightly rust-src, bpf-linker,
        /// and the cross tools of a `--target` of another architecture):
        /// for a container image's build stage.
        #[arg(long)]
        build_only: bool,
        /// With `--build-only`: the architecture to build for (default:
        /// `LOUPE_TARGET`, else this machine's; `amd64` and `arm64` are
        /// understood too).
        #[arg(long, value_enum)]
        target: Option<arch::Arch>,
    },
    /// Build loupe's release binary, for this machine's architecture or
    /// another one's, and copy it to `target/dist/loupe`.
    Build {
        /// `x86_64` or `aarch64` (`amd64` and `arm64` are understood too);
        /// default: `LOUPE_TARGET`, else this machine's.
        #[arg(long, value_enum)]
        target: Option<arch::Arch>,
    },
    /// Start PostgreSQL and Redis if they are not running.
    Services,
    /// Format and lint checks, unit tests, root integration tests, and a
    /// short run of every fuzz target.
    Test {
        /// Only run tests whose name contains this filter.
        filter: Option<String>,
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// `cargo fmt --check` and clippy (host crates and the eBPF probes).
    Lint,
    /// Run every fuzz target of the parsers for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Benchmark: nginx, a hyper server and the FastAPI agent service under
    /// wrk, without and with loupe (and FastAPI with its in-process
    /// middleware), side by side; then the tax on untracked processes.
    Bench {
        /// Alternating rounds (bare, then with loupe).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// wrk connections.
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// loupe's syscall hooks: `auto`, `fentry`, `tracepoints` or `sys-exit`.
        #[arg(long, default_value = "auto")]
        data_hook: String,
        /// Only this target: nginx, nginx-tls, nginx-h2c, hyper, fastapi or
        /// fastapi-db.
        #[arg(long)]
        target: Option<String>,
        /// An earlier loupe binary, run in every round too (columns `base`),
        /// to show a change's effect side by side.
        #[arg(long)]
        baseline: Option<std::path::PathBuf>,
        /// A busy node instead: 3,000 idle processes, 100 configured
        /// services of which 20 match; loupe idle, then all 20 serving.
        #[arg(long)]
        node: bool,
    },
    /// The kernel matrix: boot Debian's 6.1 and 6.12 kernels, x86_64 and
    /// arm64, under qemu with loupe (built for the guest's architecture)
    /// and a busybox httpd in an initramfs, run the same smoke test on
    /// this machine's kernel, and assert exact counts in each.
    Kernels {
        /// Only the places whose name contains this: `host`, or part of a
        /// kernel package's name such as `6.12`, `amd64` or `arm64`.
        only: Option<String>,
    },
    /// Build loupe, start the demo agent service (with a PostgreSQL, a
    /// Redis and a model provider of its own) and loupe beside it, keep
    /// traffic flowing and serve /metrics until Ctrl-C, SIGTERM or SIGHUP;
    /// then stop everything it started.
    Demo {
        /// Port of loupe's /metrics endpoint.
        #[arg(long, default_value_t = 9477)]
        port: u16,
        /// Port of the demo service.
        #[arg(long, default_value_t = 8000)]
        service_port: u16,
        /// Stop after this many seconds instead of waiting for a signal.
        #[arg(long)]
        seconds: Option<u64>,
        /// Run this loupe binary instead of building one.
        #[arg(long)]
        loupe: Option<std::path::PathBuf>,
        /// Also start Prometheus scraping loupe with the shipped recording
        /// and alert rules, and print its URL.
        #[arg(long)]
        prometheus: bool,
    },
    /// The soak: the demo service under steady mixed load for a while, with
    /// faults on a schedule (the service, PostgreSQL and Redis restarted, a
    /// ring-buffer overflow, a broken configuration); every compared
    /// counter must equal the load's own tally, and loupe's memory,
    /// descriptors and threads must stay flat.
    Soak {
        /// How long, e.g. `3m` or `1h` (also `90s`).
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Run this loupe binary instead of building one.
        #[arg(long)]
        loupe: Option<std::path::PathBuf>,
        /// Where the samples (`samples.csv`) and their plot (`soak.svg`) go.
        #[arg(long, default_value = "target/soak")]
        out: std::path::PathBuf,
    },
}

/// `90s`, `3m`, `1h` (a number alone: seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: write a duration such as 90s, 3m or 1h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("{text:?}: the unit is s, m or h")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup {
            build_only: true,
            target,
        } => setup::build_tools(arch::Arch::chosen(target)?),
        Command::Setup { .. } => setup::run(),
        Command::Build { target } => build::run(arch::Arch::chosen(target)?),
        Command::Services => services::run(),
        Command::Test { filter, no_lint } => test::run(filter.as_deref(), !no_lint),
        Command::Lint => test::lint(),
        Command::Demo {
            port,
            service_port,
            seconds,
            loupe,
            prometheus,
        } => demo::run(&demo::Options {
            port,
            service_port,
            seconds,
            loupe,
            prometheus,
        }),
        Command::Fuzz { seconds } => fuzz::run(seconds),
        Command::Soak {
            duration,
            loupe,
            out,
        } => soak::run(&soak::Options {
            duration,
            loupe,
            out,
        }),
        Command::Kernels { only } => {
            kernels::run(only.as_deref(), kernels::Matrix::Full, Vec::new())
        }
        Command::Bench {
            rounds,
            seconds,
            connections,
            data_hook,
            target,
            baseline,
            node,
        } => bench::run(&bench::Options {
            rounds,
            seconds,
            connections,
            data_hook,
            target,
            baseline,
            node,
        }),
    }
}
