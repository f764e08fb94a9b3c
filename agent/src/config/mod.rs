//! Configuration: the TOML file's schema, its validation into typed structs,
//! and how command-line flags override it. Unknown keys are an error that
//! names the line.
pub mod collectors;
pub mod http;
pub mod kubernetes;
pub mod llm;
pub mod mcp;
pub mod queries;
pub mod rules;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use regex::Regex;
use serde::Deserialize;

use self::{
    collectors::{CollectorsConfig, FileCollectors},
    http::{FileHttp, FilePrincipals, HttpConfig},
    rules::{FileRule, FileSemantic},
};
use crate::enrich::{endpoint::Template, rules::RuleSet};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9477";
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(1);
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(600);
/// Longest service name accepted (it becomes a label value).
pub(crate) const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{value}` is not a valid duration ({reason}); write e.g. \"30s\", \"5m\"")]
    Duration {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("{origin}: `{value}` is not a listen address; write e.g. \"0.0.0.0:9477\"")]
    Listen { origin: String, value: String },
    #[error("{origin}: bad --process regular expression `{pattern}`: {source}")]
    Regex {
        origin: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("{origin}: port 0 cannot be selected; give the TCP port the service listens on")]
    PortZero { origin: String },
    #[error("{origin}: PID 0 cannot be selected")]
    PidZero { origin: String },
    #[error(
        "{origin}: service selects no process; give at least one of pids, processes, ports, \
         containers, pod_uids, k8s_namespace, k8s_pods, k8s_containers"
    )]
    NoSelector { origin: String },
    #[error("{origin}: {reason}")]
    Selector { origin: String, reason: String },
    #[error("{origin}: service name `{name}` is empty or longer than {MAX_NAME_LEN} characters")]
    BadName { origin: String, name: String },
    #[error("{origin}: service name `{name}` is used twice; service names must be unique")]
    DuplicateName { origin: String, name: String },
    #[error(
        "nothing to monitor: give --pid, --process, --port, --container or --pod-uid, or a \
         --config file with [[services]] (which may also select by Kubernetes namespace, pod \
         and container names)"
    )]
    NoServices,
    #[error(
        "{origin}: route `{template}` must start with `/`, e.g. \"/agents/{{agent_name}}/invoke\""
    )]
    Route { origin: String, template: String },
    #[error("{origin}: must be at least 1")]
    Zero { origin: String },
    #[error("{origin}: {reason}")]
    Principals { origin: String, reason: String },
    #[error("{origin}: {reason}")]
    Rule { origin: String, reason: String },
    #[error("{origin}: {reason}")]
    Collector { origin: String, reason: String },
}

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub rescan_interval: Option<String>,
    pub series_ttl: Option<String>,
    #[serde(default)]
    pub services: Vec<FileService>,
    #[serde(default)]
    pub http: FileHttp,
    #[serde(default)]
    pub principals: FilePrincipals,
    #[serde(default)]
    pub semantic: FileSemantic,
    #[serde(default)]
    pub llm: llm::FileLlm,
    #[serde(default)]
    pub mcp: mcp::FileMcp,
    #[serde(default)]
    pub export: FileExport,
    #[serde(default)]
    pub collectors: FileCollectors,
    pub kubernetes: Option<kubernetes::FileKubernetes>,
    #[serde(default)]
    pub rules: Vec<toml::Spanned<FileRule>>,
    /// Byte offsets where the file's lines start (for messages).
    #[serde(skip)]
    pub line_starts: Vec<usize>,
}

/// A service as the file (or the command line) gives it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    pub name: Option<String>,
    #[serde(default)]
    pub pids: Vec<u32>,
    #[serde(default)]
    pub processes: Vec<String>,
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Container ids (or their first 12 or more hex digits).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Kubernetes pod UIDs: every container of the pod.
    #[serde(default)]
    pub pod_uids: Vec<String>,
    /// By Kubernetes metadata (the pod list of the node, see
    /// `[kubernetes]`): namespace, pod names (regular expressions over the
    /// whole name), container names.
    pub k8s_namespace: Option<String>,
    #[serde(default)]
    pub k8s_pods: Vec<String>,
    #[serde(default)]
    pub k8s_containers: Vec<String>,
    /// Route templates for the `endpoint` label, e.g. `/users/{id}`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Request paths left out of the request metrics (e.g. a health check).
    #[serde(default)]
    pub exclude_paths: Vec<String>,
}

/// The `[export]` section, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExport {
    /// The names the measurements are exported under: `"loupe"` (always),
    /// and `"otel"` for OpenTelemetry's semantic conventions as well.
    pub conventions: Option<Vec<String>>,
}

/// How the measurements are exported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportConfig {
    /// Also under OpenTelemetry's names (`export::otel`).
    pub otel: bool,
}

fn export(file: FileExport, path: &str) -> Result<ExportConfig, ConfigError> {
    let conventions = file.conventions.unwrap_or_else(|| vec!["loupe".to_owned()]);
    let refuse = |reason: String| ConfigError::Rule {
        origin: format!("{path}: export.conventions"),
        reason,
    };
    if let Some(unknown) = conventions
        .iter()
        .find(|c| !["loupe", "otel"].contains(&c.as_str()))
    {
        return Err(refuse(format!(
            "`{unknown}` is not a convention loupe exports; use \"loupe\" and \"otel\""
        )));
    }
    if !conventions.iter().any(|c| c == "loupe") {
        return Err(refuse(
            "\"loupe\" must be listed: its names cannot be turned off (the dashboards, alerts \
             and loupe_* self-metrics use them); write [\"loupe\", \"otel\"]"
                .to_owned(),
        ));
    }
    Ok(ExportConfig {
        otel: conventions.iter().any(|c| c == "otel"),
    })
}

/// What the command line gives; every field overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub rescan_interval: Option<String>,
    pub series_ttl: Option<String>,
    /// The service the selector flags form, if any selector flag was given.
    pub service: Option<FileService>,
}

/// A validated service: which processes belong to it.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// `None`: named after the first matched process's executable.
    pub name: Option<String>,
    pub pids: Vec<u32>,
    pub processes: Vec<Regex>,
    pub ports: Vec<u16>,
    /// Lower-case container id prefixes.
    pub containers: Vec<String>,
    /// Lower-case pod UIDs.
    pub pod_uids: Vec<String>,
    pub k8s: Option<kubernetes::K8sSelector>,
    pub routes: Vec<Template>,
    pub exclude_paths: Vec<String>,
    /// Where it was defined, for messages.
    pub origin: String,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub rescan_interval: Duration,
    pub series_ttl: Duration,
    pub services: Vec<ServiceSpec>,
    pub http: HttpConfig,
    pub llm: llm::LlmConfig,
    pub mcp: mcp::McpConfig,
    pub export: ExportConfig,
    pub rules: RuleSet,
    pub collectors: CollectorsConfig,
    /// Set when a service selects by Kubernetes metadata or the file has
    /// a `[kubernetes]` section (`loupe run` only).
    pub kubernetes: Option<kubernetes::KubernetesConfig>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut file: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        file.line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ok(file)
    }
}

/// Route templates, each starting with `/`.
pub(crate) fn templates(origin: &str, texts: &[String]) -> Result<Vec<Template>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            Template::parse(text).ok_or_else(|| ConfigError::Route {
                origin: origin.to_owned(),
                template: text.clone(),
            })
        })
        .collect()
}

/// A count that must be at least 1: `value`, or `default` when not given.
pub(crate) fn at_least_one(
    origin: String,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::Zero { origin }),
        n => Ok(n),
    }
}

pub(crate) fn duration(origin: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|err| ConfigError::Duration {
        origin: origin.to_owned(),
        value: value.to_owned(),
        reason: err.to_string(),
    })
}

fn service(origin: String, raw: FileService) -> Result<ServiceSpec, ConfigError> {
    if let Some(name) = &raw.name
        && (name.is_empty() || name.chars().count() > MAX_NAME_LEN)
    {
        return Err(ConfigError::BadName {
            origin,
            name: name.clone(),
        });
    }
    if raw.pids.is_empty()
        && raw.processes.is_empty()
        && raw.ports.is_empty()
        && raw.containers.is_empty()
        && raw.pod_uids.is_empty()
        && raw.k8s_namespace.is_none()
        && raw.k8s_pods.is_empty()
        && raw.k8s_containers.is_empty()
    {
        return Err(ConfigError::NoSelector { origin });
    }
    if raw.ports.contains(&0) {
        return Err(ConfigError::PortZero { origin });
    }
    if raw.pids.contains(&0) {
        return Err(ConfigError::PidZero { origin });
    }
    // Container and pod selectors, lower-cased, or the one that is not.
    let select = |values: &[String], valid: fn(&str) -> bool, what: &str| {
        values
            .iter()
            .map(|value| {
                let value = value.to_ascii_lowercase();
                if valid(&value) {
                    Ok(value)
                } else {
                    Err(ConfigError::Selector {
                        origin: origin.clone(),
                        reason: format!("`{value}` is not {what}"),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let containers = select(
        &raw.containers,
        kubernetes::is_id_prefix,
        "a container id (12 to 64 hex digits)",
    )?;
    let pod_uids = select(
        &raw.pod_uids,
        kubernetes::is_pod_uid,
        "a pod UID (metadata.uid: 8-4-4-4-12 hex digits)",
    )?;
    let processes = raw
        .processes
        .iter()
        .map(|pattern| {
            selector_regex(pattern).map_err(|source| ConfigError::Regex {
                origin: origin.clone(),
                pattern: pattern.clone(),
                source: Box::new(source),
            })
        })
        .collect::<Result<_, _>>()?;
    let routes = templates(&origin, &raw.routes)?;
    Ok(ServiceSpec {
        name: raw.name,
        pids: raw.pids,
        processes,
        ports: raw.ports,
        containers,
        pod_uids,
        k8s: kubernetes::selector(
            &origin,
            raw.k8s_namespace,
            &raw.k8s_pods,
            raw.k8s_containers,
        )?,
        routes,
        exclude_paths: raw.exclude_paths,
        origin,
    })
}

impl Config {
    /// The configuration as the agent understands it (for `config check`).
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "listen: {}", self.listen);
        if self.services.is_empty() {
            out.push_str(
                "no [[services]]: give --pid, --process, --port, --container or --pod-uid when \
                 running\n",
            );
        }
        for s in &self.services {
            let name = s.name.as_deref().unwrap_or("(named after its executable)");
            let _ = writeln!(
                out,
                "service {name}: pids {:?}, processes {:?}, ports {:?}, containers {:?}, pod UIDs \
                 {:?}, {} route template(s)",
                s.pids,
                s.processes.iter().map(Regex::as_str).collect::<Vec<_>>(),
                s.ports,
                s.containers,
                s.pod_uids,
                s.routes.len()
            );
            if let Some(k8s) = &s.k8s {
                let _ = writeln!(
                    out,
                    "  in Kubernetes: namespace {}, pods {:?}, containers {:?}",
                    k8s.namespace.as_deref().unwrap_or("any"),
                    k8s.pods.iter().map(Regex::as_str).collect::<Vec<_>>(),
                    k8s.containers
                );
            }
        }
        let semantic = &self.rules.semantic;
        let _ = writeln!(
            out,
            "route rules: {} (bodies read up to {} bytes, {} values per label)",
            self.rules.rules.len(),
            semantic.max_body,
            semantic.max_label_values
        );
        for rule in &self.rules.rules {
            out.push_str(&rule.to_string());
        }
        let statuses: Vec<String> = semantic
            .failure_statuses
            .iter()
            .map(|(code, reason)| format!("{code} {reason}"))
            .collect();
        let _ = writeln!(
            out,
            "failed-attempt reasons by status: {}",
            statuses.join(", ")
        );
        if let Some(source) = &semantic.failure_reason {
            let _ = writeln!(
                out,
                "failed-attempt reason from {source} when one of: {}",
                semantic.failure_reasons.join(", ")
            );
        }
        out.push_str(&self.collectors.describe());
        out
    }

    /// Validates the file (if any) with the command line laid over it.
    pub fn build(file: Option<(&Path, FileConfig)>, flags: Overrides) -> Result<Self, ConfigError> {
        Self::validate(file, flags, true)
    }

    /// Validates a file on its own (`loupe config check`): services may
    /// come from command-line selectors later.
    pub fn check_file(path: &Path, file: FileConfig) -> Result<Self, ConfigError> {
        Self::validate(Some((path, file)), Overrides::default(), false)
    }

    /// For `loupe collect`: collectors only, no services needed.
    pub fn for_collectors(
        file: Option<(&Path, FileConfig)>,
        flags: Overrides,
    ) -> Result<Self, ConfigError> {
        Self::validate(file, flags, false)
    }

    fn validate(
        file: Option<(&Path, FileConfig)>,
        flags: Overrides,
        needs_services: bool,
    ) -> Result<Self, ConfigError> {
        let (path, mut file) = match file {
            Some((path, file)) => (path.display().to_string(), file),
            None => (String::new(), FileConfig::default()),
        };
        let line_starts = std::mem::take(&mut file.line_starts);
        let line = |offset| line_starts.partition_point(|&start| start <= offset);
        let rules = rules::build(
            &path,
            std::mem::take(&mut file.semantic),
            std::mem::take(&mut file.rules),
            &line,
        )?;
        let pick = |flag: Option<String>, key: &str, from_file: Option<String>| match flag {
            Some(value) => Some((format!("--{}", key.replace('_', "-")), value)),
            None => from_file.map(|value| (format!("{path}: {key}"), value)),
        };
        let listen = match pick(flags.listen, "listen", file.listen) {
            Some((origin, value)) => value
                .parse()
                .map_err(|_| ConfigError::Listen { origin, value })?,
            None => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        let rescan_interval = match pick(
            flags.rescan_interval,
            "rescan_interval",
            file.rescan_interval,
        ) {
            Some((origin, value)) => duration(&origin, &value)?,
            None => DEFAULT_RESCAN,
        };
        let series_ttl = match pick(flags.series_ttl, "series_ttl", file.series_ttl) {
            Some((origin, value)) => duration(&origin, &value)?,
            None => DEFAULT_SERIES_TTL,
        };
        let mut services = file
            .services
            .into_iter()
            .enumerate()
            .map(|(i, raw)| service(format!("{path}: services[{i}]"), raw))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(raw) = flags.service {
            services.push(service("command line".to_owned(), raw)?);
        }
        if services.is_empty() && needs_services {
            return Err(ConfigError::NoServices);
        }
        let named: Vec<&str> = services.iter().filter_map(|s| s.name.as_deref()).collect();
        let only_service = (services.len() == 1)
            .then(|| named.first().copied())
            .flatten();
        let collectors =
            collectors::build(&path, std::mem::take(&mut file.collectors), only_service)?;
        let mut http = http::build(file.http, file.principals, &path, &|var| {
            std::env::var(var).ok()
        })?;
        http.auth.label_headers = rules.label_headers();
        let by_k8s = services.iter().any(|s| s.k8s.is_some());
        let kubernetes = if needs_services {
            kubernetes::build(&path, file.kubernetes.take(), by_k8s, &|var| {
                std::env::var(var).ok()
            })?
        } else {
            None
        };
        let mut names = std::collections::HashSet::new();
        for s in &services {
            if let Some(name) = &s.name
                && !names.insert(name.as_str())
            {
                return Err(ConfigError::DuplicateName {
                    origin: s.origin.clone(),
                    name: name.clone(),
                });
            }
        }
        let llm = llm::build(std::mem::take(&mut file.llm), &path)?;
        let mcp = mcp::build(std::mem::take(&mut file.mcp), &path)?;
        let export = export(std::mem::take(&mut file.export), &path)?;
        Ok(Self {
            listen,
            rescan_interval,
            series_ttl,
            services,
            http,
            llm,
            mcp,
            export,
            rules,
            collectors,
            kubernetes,
        })
    }
}

/// How deeply a selector's regex may nest groups and repetitions. The
/// regex crate compiles nested repetitions recursively; under its own
/// limit (250), `a` followed by 240 `+`/`*` overflowed a 2 MiB thread
/// stack in a debug build (a fuzz seed of `config_files`). No real
/// process or pod pattern nests more than a few levels.
const REGEX_NEST_LIMIT: u32 = 64;

/// A selector's regex (`processes`, `k8s_pods`), nesting bounded.
pub fn selector_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("loupe.toml"), text)
    }

    fn build(text: &str, flags: Overrides) -> Result<Config, ConfigError> {
        Config::build(Some((Path::new("loupe.toml"), parse(text)?)), flags)
    }

    const FILE: &str = r#"
listen = "127.0.0.1:9000"
series_ttl = "5m"

[[services]]
name = "api"
processes = ["uvicorn .*main:app"]
ports = [8000]

[[services]]
name = "worker"
pids = [1]
"#;

    #[test]
    fn reads_a_complete_file() {
        let config = build(FILE, Overrides::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.series_ttl, Duration::from_secs(300));
        assert_eq!(config.rescan_interval, DEFAULT_RESCAN);
        assert_eq!(config.services.len(), 2);
        assert_eq!(config.services[0].ports, [8000]);
        assert!(config.services[0].processes[0].is_match("uvicorn app.main:app"));
    }

    #[test]
    fn flags_override_the_file_and_add_a_service() {
        let flags = Overrides {
            listen: Some("0.0.0.0:9555".into()),
            service: Some(FileService {
                name: Some("cli".into()),
                ports: vec![9999],
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = build(FILE, flags).unwrap();
        assert_eq!(config.listen.port(), 9555);
        assert_eq!(config.services.len(), 3);
        assert_eq!(config.services[2].name.as_deref(), Some("cli"));
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = parse("listen = \"0.0.0.0:1\"\nlisten_adress = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("listen_adress"), "{text}");
        let err = parse("[[services]]\nname = \"a\"\nport = [1]\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn rejects_bad_values_with_their_origin() {
        let err = build(
            "[[services]]\nprocesses = [\"(unclosed\"]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("services[0]") && err.to_string().contains("(unclosed"));
        let err = build(
            "series_ttl = \"soon\"\n[[services]]\npids=[1]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Duration { .. }), "{err}");
        let err = build("[[services]]\nname = \"x\"\n", Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::NoSelector { .. }), "{err}");
        let err = build("[[services]]\nports = [0]\n", Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::PortZero { .. }), "{err}");
        let err = build(
            "[[services]]\ncontainers = [\"abc\"]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`abc` is not a container id"),
            "{err}"
        );
        let err = build(
            "[[services]]\npod_uids = [\"pod-1\"]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a pod UID"), "{err}");
        let ok = build(
            "[[services]]\ncontainers = [\"3F1C2B9E8D7A\"]\npod_uids = [\"7D3C9A1E-2B4F-4E6A-8C0D-1F2E3A4B5C6D\"]\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(ok.services[0].containers, ["3f1c2b9e8d7a"]);
        assert_eq!(
            ok.services[0].pod_uids,
            ["7d3c9a1e-2b4f-4e6a-8c0d-1f2e3a4b5c6d"]
        );
        let err = build(
            "[[services]]\nname=\"a\"\npids=[1]\n[[services]]\nname=\"a\"\npids=[2]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateName { .. }), "{err}");
        assert!(
            err.to_string().starts_with("loupe.toml: services[1]: "),
            "{err}"
        );
        let flags = Overrides {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let err = build(FILE, flags).unwrap_err();
        assert!(err.to_string().starts_with("--listen"), "{err}");
    }

    #[test]
    fn deeply_nested_selector_patterns_are_refused_not_compiled() {
        // 240 repetitions of a repetition: under the regex crate's own
        // nesting limit (250), and enough to overflow a 2 MiB thread stack
        // while compiling in a debug build.
        let pattern = format!("a{}", "+*".repeat(120));
        let err = build(
            &format!("[[services]]\nprocesses = [\"{pattern}\"]\n"),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Regex { .. }), "{err}");
        assert!(err.to_string().contains("nest"), "{err}");
        // Real patterns nest a few levels and stay valid.
        build(
            "[[services]]\nprocesses = [\"^(uvicorn|gunicorn)( .*)?((main|app):app)+$\"]\n",
            Overrides::default(),
        )
        .unwrap();
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/loupe.example.toml");
        let config = Config::build(
            Some((&path, FileConfig::load(&path).unwrap())),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.services.len(), 2);
        assert_eq!(config.listen.port(), 9477);
    }

    #[test]
    fn the_opentelemetry_names_are_asked_for_beside_loupes() {
        let with = |conventions: &str| {
            let text = format!("{FILE}\n[export]\nconventions = {conventions}\n");
            build(&text, Overrides::default()).map(|c| c.export.otel)
        };
        assert!(!build(FILE, Overrides::default()).unwrap().export.otel);
        assert!(!with("[\"loupe\"]").unwrap());
        assert!(with("[\"loupe\", \"otel\"]").unwrap());
        let alone = with("[\"otel\"]").unwrap_err().to_string();
        assert!(alone.contains("export.conventions") && alone.contains("\"loupe\" must be listed"));
        let unknown = with("[\"loupe\", \"datadog\"]").unwrap_err().to_string();
        assert!(
            unknown.contains("`datadog` is not a convention"),
            "{unknown}"
        );
    }

    #[test]
    fn something_must_be_monitored() {
        let err = Config::build(None, Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::NoServices));
    }
}
