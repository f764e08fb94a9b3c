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
    pub database: Option<FileDatabase>,
}

/// The database collector: a connection string and the business tables.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDatabase {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub users_table: Option<String>,
    pub api_keys_table: Option<String>,
    pub api_keys_active_column: Option<String>,
    pub api_keys_expires_column: Option<String>,
    pub sessions_table: Option<String>,
    pub sessions_expires_column: Option<String>,
}

/// Where the business gauges are counted (validated SQL identifiers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessTables {
    pub users: String,
    pub api_keys: String,
    pub api_keys_active: String,
    pub api_keys_expires: String,
    pub sessions: String,
    pub sessions_expires: String,
}

impl Default for BusinessTables {
    fn default() -> Self {
        Self {
            users: "users".into(),
            api_keys: "api_keys".into(),
            api_keys_active: "is_active".into(),
            api_keys_expires: "expires_at".into(),
            sessions: "sessions".into(),
            sessions_expires: "expires_at".into(),
        }
    }
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
    /// `text` (an error message) with the secret's value blanked out.
    pub fn redact(&self, text: String) -> String {
        match self.reveal() {
            Ok(value) if !value.is_empty() && text.contains(&value) => {
                text.replace(&value, "<redacted>")
            }
            _ => text,
        }
    }

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
    pub database: Option<(Secret, BusinessTables)>,
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            redis: None,
            database: None,
        }
    }
}

impl CollectorsConfig {
    pub fn is_empty(&self) -> bool {
        self.redis.is_none() && self.database.is_none()
    }
}

/// A table or column name: letters, digits, `_`, and `.` for a schema.
fn identifier(
    origin: &str,
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let valid = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::Collector {
            origin: format!("{origin}.{key}"),
            reason: format!("`{value}` is not a table or column name (letters, digits, _ and .)"),
        })
    }
}

fn database(origin: &str, raw: FileDatabase) -> Result<(Secret, BusinessTables), ConfigError> {
    let d = BusinessTables::default();
    let tables = BusinessTables {
        users: identifier(origin, "users_table", raw.users_table, &d.users)?,
        api_keys: identifier(origin, "api_keys_table", raw.api_keys_table, &d.api_keys)?,
        api_keys_active: identifier(
            origin,
            "api_keys_active_column",
            raw.api_keys_active_column,
            &d.api_keys_active,
        )?,
        api_keys_expires: identifier(
            origin,
            "api_keys_expires_column",
            raw.api_keys_expires_column,
            &d.api_keys_expires,
        )?,
        sessions: identifier(origin, "sessions_table", raw.sessions_table, &d.sessions)?,
        sessions_expires: identifier(
            origin,
            "sessions_expires_column",
            raw.sessions_expires_column,
            &d.sessions_expires,
        )?,
    };
    let url = endpoint(
        origin,
        FileEndpoint {
            url: raw.url,
            url_env: raw.url_env,
            url_file: raw.url_file,
        },
    )?;
    Ok((url, tables))
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
    let database = raw
        .database
        .map(|raw| database(&origin("database"), raw))
        .transpose()?;
    Ok(CollectorsConfig {
        interval,
        timeout,
        redis,
        database,
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
        let bad_table = FileDatabase {
            url: Some("sqlite::memory:".into()),
            users_table: Some("users; DROP TABLE x".into()),
            ..FileDatabase::default()
        };
        let err = database("f", bad_table).unwrap_err().to_string();
        assert!(
            err.contains("users_table") && err.contains("not a table"),
            "{err}"
        );
        let zero = FileCollectors {
            interval: Some("0s".into()),
            ..FileCollectors::default()
        };
        assert!(build("f", zero).is_err());
    }
}
