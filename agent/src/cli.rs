//! Command-line interface. Doc comments are the help text.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    config::{FileService, Overrides},
    kernel::DataHookChoice,
};

/// loupe: eBPF-assisted Prometheus metrics for services you do not modify.
#[derive(Debug, Parser)]
#[command(name = "loupe", version, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info`, `loupe=debug`.
    #[arg(long, global = true, env = "LOUPE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the selected processes and serve their metrics.
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Report what this machine allows (kernel, BTF, tracefs, capabilities,
    /// each hook type); exits non-zero when loupe cannot run here.
    Check {
        /// Also report how the TLS of this process would be seen: the
        /// OpenSSL files it maps and the functions found in each
        /// (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
    },
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Collector-only mode: run the `[collectors]` of the config file and
    /// serve their metrics, without eBPF or privileges (one replica per
    /// cluster, while the per-node agents run with collectors off).
    Collect(CollectArgs),
    /// The agent's privileged helper (started by `loupe run` itself).
    #[command(hide = true)]
    Helper,
}

/// The common ways to run the agent (the end of `loupe run --help`).
const RUN_EXAMPLES: &str = "\
Examples:
  # The service listening on port 8000, named agent-api
  loupe run --port 8000 --service agent-api

  # Every process whose command line matches (gunicorn and its workers)
  loupe run --process 'gunicorn .*app:app' --service agent-api

  # Everything from a configuration file (several services, rules,
  # collectors); check it first
  loupe config check /etc/loupe/loupe.toml
  loupe run --config /etc/loupe/loupe.toml

  # In a Kubernetes DaemonSet (hostPID, privileged): the node's pods
  # selected by [[services]] k8s_namespace / k8s_pods in the mounted config
  loupe run --config /etc/loupe/loupe.toml --listen 0.0.0.0:9477

  # What this machine allows before anything is attached
  loupe check";

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Configuration file (TOML) with a `[collectors]` section.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address of the /metrics, /healthz and /readyz endpoint [default: 0.0.0.0:9477].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub web: WebArgs,
}

/// How the endpoint is protected.
#[derive(Debug, Default, Clone, Args)]
pub struct WebArgs {
    /// Web configuration file in the format Prometheus exporters share
    /// (YAML): TLS, client certificates and basic authentication for the
    /// endpoint (`tls_server_config`, `basic_auth_users`). Re-read when it
    /// or a file it names changes.
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        env = "LOUPE_WEB_CONFIG_FILE"
    )]
    pub config_file: Option<PathBuf>,
    /// Ask for the web configuration's basic authentication on /healthz
    /// and /readyz too (by default only /metrics and / ask: a kubelet's
    /// probes send no credentials).
    #[arg(long = "web.auth-probes")]
    pub auth_probes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print each service and route rule
    /// as the agent understands it; errors name the line and the fix.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Track this process ID and its children (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Track processes whose command line matches this regular expression
    /// (repeatable; loupe itself never matches).
    #[arg(long = "process", value_name = "REGEX")]
    pub processes: Vec<String>,
    /// Track the processes listening on this TCP port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Track the processes of this container: its id, or at least its
    /// first 12 hex digits, as `docker ps` or `crictl ps` show it (repeatable).
    #[arg(long = "container", value_name = "ID")]
    pub containers: Vec<String>,
    /// Track the processes of every container of this Kubernetes pod, by
    /// its UID (repeatable).
    #[arg(long = "pod-uid", value_name = "UID")]
    pub pod_uids: Vec<String>,
    /// Name of the service the selector flags form (default: the first
    /// matched process's executable name).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// A route template for the `endpoint` label, e.g. `/users/{id}` (repeatable).
    #[arg(long = "route", value_name = "TEMPLATE")]
    pub routes: Vec<String>,
    /// A request path left out of the request metrics, e.g. `/health` (repeatable).
    #[arg(long = "exclude-path", value_name = "PATH")]
    pub exclude_paths: Vec<String>,
    /// Configuration file (TOML); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the /metrics, /healthz and /readyz endpoint [default: 0.0.0.0:9477].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// How often loupe looks for new and restarted targets: /proc is scanned when the probes saw an exec, a new listener or a tracked exit, and every 30 s [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub rescan_interval: Option<String>,
    /// Series of a target, peer or label value idle this long are dropped [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub series_ttl: Option<String>,
    /// How to hook the syscalls: `auto` (fentry/fexit on the syscalls'
    /// functions where the kernel allows it, else their tracepoints, with
    /// the BTF `sys_exit` tracepoint for the data syscalls where theirs do
    /// not load), `fentry`, `tracepoints` or `sys-exit` (force one of them).
    #[arg(long, alias = "syscall-hook", value_enum, default_value_t = DataHookChoice::Auto)]
    pub data_hook: DataHookChoice,
    #[command(flatten)]
    pub web: WebArgs,
}

impl RunArgs {
    /// The flags as overrides of the configuration file.
    pub fn overrides(&self) -> Overrides {
        let selects = !self.pids.is_empty()
            || !self.processes.is_empty()
            || !self.ports.is_empty()
            || !self.containers.is_empty()
            || !self.pod_uids.is_empty();
        Overrides {
            listen: self.listen.clone(),
            rescan_interval: self.rescan_interval.clone(),
            series_ttl: self.series_ttl.clone(),
            service: (selects || self.service.is_some()).then(|| FileService {
                name: self.service.clone(),
                pids: self.pids.clone(),
                processes: self.processes.clone(),
                ports: self.ports.clone(),
                containers: self.containers.clone(),
                pod_uids: self.pod_uids.clone(),
                routes: self.routes.clone(),
                exclude_paths: self.exclude_paths.clone(),
                ..FileService::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn selectors_are_repeatable_and_form_one_service() {
        let cli = Cli::parse_from([
            "loupe",
            "run",
            "--pid",
            "1",
            "--pid",
            "2",
            "--process",
            "uvicorn",
            "--port",
            "8000",
            "--service",
            "api",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        let service = args.overrides().service.unwrap();
        assert_eq!(service.pids, [1, 2]);
        assert_eq!(service.processes, ["uvicorn"]);
        assert_eq!(service.ports, [8000]);
        assert_eq!(service.name.as_deref(), Some("api"));
    }

    #[test]
    fn no_selector_flags_add_no_service() {
        let cli = Cli::parse_from(["loupe", "run", "--config", "x.toml"]);
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        assert!(args.overrides().service.is_none());
    }
}
