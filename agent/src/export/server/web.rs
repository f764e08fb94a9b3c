//! The web configuration file Prometheus exporters share (the Prometheus
//! exporter-toolkit's `--web.config.file`, YAML): TLS for the endpoint,
//! optionally with client certificates (`tls_server_config`), basic
//! authentication with bcrypt hashes (`basic_auth_users`), and extra
//! response headers (`http_server_config.headers`). The same file and the
//! same Prometheus scrape configuration work unchanged.
//!
//! The file and the files it names are re-read when any of them changes
//! (Kubernetes rotates mounted Secrets by swapping a symlink), checked at
//! most once a second as connections arrive; a change that does not load
//! is reported and the last good configuration kept.
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use tracing::{info, warn};

use super::tls::{self, FileTls};

/// Why a web configuration file cannot be used. Each names the file and,
/// where it can, the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read the web configuration: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a web configuration file: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{path}: {field}: {reason}")]
    Field {
        path: String,
        field: &'static str,
        reason: String,
    },
}

/// The file, as written (exporter-toolkit's fields; unknown ones are
/// refused, as the toolkit refuses them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWeb {
    tls_server_config: Option<FileTls>,
    http_server_config: Option<FileHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    /// Accepted for the same file's sake: loupe serves HTTP/1.1.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers the toolkit lets a file set.
const HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// A loaded web configuration.
#[derive(Debug)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name -> bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The files it was read from (the configuration first).
    files: Vec<PathBuf>,
}

impl WebConfig {
    /// Reads `path` and the files it names (relative to its directory).
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The configuration `text` says, read from `path` (the files it names
    /// are relative to its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Self, WebConfigError> {
        let shown = path.display().to_string();
        let file: FileWeb = if text.trim().is_empty() {
            FileWeb::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|err| WebConfigError::Syntax {
                path: shown.clone(),
                reason: err.to_string(),
            })?
        };
        let field = |field: &'static str, reason: String| WebConfigError::Field {
            path: shown.clone(),
            field,
            reason,
        };
        for (user, hash) in &file.basic_auth_users {
            if bcrypt_cost(hash).is_none() {
                return Err(field(
                    "basic_auth_users",
                    format!(
                        "the hash of `{user}` is not a bcrypt hash ($2a$, $2b$ or $2y$); make \
                         one with `htpasswd -nBC 10 {user}`"
                    ),
                ));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in file
            .http_server_config
            .map(|h| h.headers)
            .unwrap_or_default()
        {
            let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
                let reason = format!("`{name}` cannot be set; the headers are {HEADERS:?}");
                return Err(field("http_server_config.headers", reason));
            };
            let value = HeaderValue::from_str(&value).map_err(|_| {
                field(
                    "http_server_config.headers",
                    format!("the value of `{name}` is not a valid header value"),
                )
            })?;
            // `from_bytes` lower-cases the name.
            let name = HeaderName::from_bytes(known.as_bytes()).expect("a listed header name");
            headers.push((name, value));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![path.to_path_buf()];
        let tls = match file.tls_server_config {
            Some(section) => {
                let built =
                    tls::build(&section, dir).map_err(|(name, reason)| field(name, reason))?;
                files.extend(built.files);
                Some(Arc::new(built.config))
            }
            None => None,
        };
        Ok(Self {
            tls,
            users: file.basic_auth_users,
            headers,
            files,
        })
    }
}

/// The cost of a bcrypt hash (`$2b$10$...`), if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    let (cost, tail) = rest.split_once('$')?;
    (tail.len() == 53).then_some(())?;
    cost.parse().ok().filter(|c| (4..=31).contains(c))
}

/// What identifies a file's content without reading it: its inode,
/// length and modification time (through symlinks, as Kubernetes mounts
/// Secrets).
type Stamp = Vec<Option<(u64, u64, i64, i64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let m = fs::metadata(f).ok()?;
            Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A web configuration kept current with its files.
#[derive(Debug)]
pub struct Web {
    path: PathBuf,
    /// Require authentication on `/healthz` and `/readyz` too.
    pub auth_probes: bool,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<WebConfig>,
    stamp: Stamp,
    checked: Instant,
    /// The stamp a reload failed at (not retried until the files change).
    failed: Option<Stamp>,
}

/// What a reload did, for `loupe_web_config_reloads_total` (and the
/// configuration file's, `loupe_config_reloads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    Loaded,
    Failed,
}

impl Reload {
    pub const ALL: [Self; 2] = [Self::Loaded, Self::Failed];

    /// The `result` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "success",
            Self::Failed => "failure",
        }
    }
}

impl Web {
    /// Loads `path`; an unusable file stops the start-up.
    pub fn load(path: &Path, auth_probes: bool) -> Result<Self, WebConfigError> {
        let config = WebConfig::load(path)?;
        info!(
            file = %path.display(),
            tls = config.tls.is_some(),
            users = config.users.len(),
            "web configuration loaded"
        );
        let stamp = stamp(&config.files);
        Ok(Self {
            path: path.to_path_buf(),
            auth_probes,
            state: Mutex::new(Loaded {
                config: Arc::new(config),
                stamp,
                checked: Instant::now(),
                failed: None,
            }),
        })
    }

    /// The configuration now, re-read first if its files changed; and
    /// what a reload did, if one was tried.
    pub fn current(&self) -> (Arc<WebConfig>, Option<Reload>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.checked.elapsed() < CHECK_EVERY {
            return (Arc::clone(&state.config), None);
        }
        state.checked = Instant::now();
        let now = stamp(&state.config.files);
        if now == state.stamp || state.failed.as_ref() == Some(&now) {
            return (Arc::clone(&state.config), None);
        }
        let outcome = match WebConfig::load(&self.path) {
            Ok(config) => {
                info!(file = %self.path.display(), "web configuration re-read");
                state.stamp = stamp(&config.files);
                state.config = Arc::new(config);
                state.failed = None;
                Reload::Loaded
            }
            Err(err) => {
                warn!(error = %err, "web configuration changed but cannot be used; the last good one stays");
                state.failed = Some(now);
                Reload::Failed
            }
        };
        (Arc::clone(&state.config), Some(outcome))
    }
}

#[cfg(test)]
mod tests;
