//! The `[collectors]` section: what the agent asks the database and Redis
//! directly, how often, and where the connection strings come from (the
//! file, an environment variable, or a file such as a mounted Kubernetes
//! Secret). Connection strings are secrets: never printed.
use std::{fmt, fs, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, duration};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCollectors {
    /// How often each collector runs (default 30s).
    pub interval: Option<String>,
    /// How long one run may take before it is cut off (default 10s).
    pub timeout: Option<String>,
    pub redis: Option<FileEndpoint>,
}

/// A connection string: exactly one of the three.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpoint {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
}

/// Where a secret is read from; read again at each (re)connection, so a
/// rotated Secret is picked up.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Secret(from the config file, redacted)"),
            Self::Env(var) => write!(f, "Secret(from ${var})"),
            Self::File(path) => write!(f, "Secret(from {})", path.display()),
        }
    }
}

impl Secret {
    /// The value, or an error that names where it should have been (never
    /// the value).
    pub fn reveal(&self) -> Result<String, String> {
        match self {
            Self::Value(value) => Ok(value.clone()),
            Self::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            Self::File(path) => fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|err| format!("cannot read {}: {err}", path.display())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectorsConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub redis: Option<Secret>,
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            redis: None,
        }
    }
}

impl CollectorsConfig {
    pub fn is_empty(&self) -> bool {
        self.redis.is_none()
    }
}

fn endpoint(origin: &str, raw: FileEndpoint) -> Result<Secret, ConfigError> {
    let bad = |reason: &str| ConfigError::Collector {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    let secret = match (raw.url, raw.url_env, raw.url_file) {
        (Some(url), None, None) => Secret::Value(url),
        (None, Some(var), None) => Secret::Env(var),
        (None, None, Some(path)) => Secret::File(path),
        _ => {
            return Err(bad(
                "give exactly one of url, url_env (an environment variable) or url_file \
                 (e.g. a mounted Secret)",
            ));
        }
    };
    // Fail at start-up rather than at the first tick.
    secret.reveal().map_err(|reason| bad(&reason))?;
    Ok(secret)
}

pub fn build(path: &str, raw: FileCollectors) -> Result<CollectorsConfig, ConfigError> {
    let origin = |key: &str| format!("{path}: collectors.{key}");
    let interval = match &raw.interval {
        Some(value) => duration(&origin("interval"), value)?,
        None => DEFAULT_INTERVAL,
    };
    let timeout = match &raw.timeout {
        Some(value) => duration(&origin("timeout"), value)?,
        None => DEFAULT_TIMEOUT,
    };
    if interval.is_zero() || timeout.is_zero() {
        return Err(ConfigError::Zero {
            origin: origin("interval and timeout"),
        });
    }
    let redis = raw
        .redis
        .map(|raw| endpoint(&origin("redis"), raw))
        .transpose()?;
    Ok(CollectorsConfig {
        interval,
        timeout,
        redis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_per_secret_and_never_printed() {
        let value = FileEndpoint {
            url: Some("redis://:hunter2-hunter2@db:6379".into()),
            ..FileEndpoint::default()
        };
        let config = build(
            "f",
            FileCollectors {
                redis: Some(value.clone()),
                ..FileCollectors::default()
            },
        )
        .unwrap();
        assert_eq!(config.interval, DEFAULT_INTERVAL);
        assert!(!format!("{config:?}").contains("hunter2"));
        let both = FileEndpoint {
            url_env: Some("X".into()),
            ..value
        };
        let err = endpoint("f", both).unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
        let missing = FileEndpoint {
            url_env: Some("LOUPE_TEST_NO_SUCH_VAR".into()),
            ..FileEndpoint::default()
        };
        let err = endpoint("f", missing).unwrap_err().to_string();
        assert!(err.contains("LOUPE_TEST_NO_SUCH_VAR is not set"), "{err}");
        let zero = FileCollectors {
            interval: Some("0s".into()),
            ..FileCollectors::default()
        };
        assert!(build("f", zero).is_err());
    }
}
