//! The `[collectors]` section: what the agent asks the database and Redis
//! directly, how often, and where the connection strings come from (the
//! file, an environment variable, or a file such as a mounted Kubernetes
//! Secret). Connection strings are secrets: never printed.
use std::{fmt, fs, net::IpAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{
    ConfigError, MAX_NAME_LEN, duration,
    queries::{self, CustomQuery, FileQuery},
};

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

/// The database collector: a connection string, the business tables, the
/// custom queries, and whose connections the server-side view counts.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDatabase {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// `false`: no users_total, api_keys_active, sessions_active.
    pub business_gauges: Option<bool>,
    /// The `service` label of `db_server_connections`.
    pub service: Option<String>,
    /// Which server-side connections are the service's (default: those of
    /// the user the collector logs in as).
    pub connections_user: Option<String>,
    pub connections_application: Option<String>,
    pub connections_client_addr: Option<String>,
    #[serde(default)]
    pub queries: Vec<FileQuery>,
    /// `users_total` counts this table's rows (default `users`).
    pub users_table: Option<String>,
    /// `api_keys_active` counts this table's rows whose active column is
    /// true and whose expiry is unset or ahead (defaults `api_keys`,
    /// `is_active`, `expires_at`).
    pub api_keys_table: Option<String>,
    pub api_keys_active_column: Option<String>,
    pub api_keys_expires_column: Option<String>,
    /// `sessions_active` counts this table's rows whose expiry is ahead
    /// (defaults `sessions`, `expires_at`).
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

/// Which of the server's connections are the service's; all given filters
/// apply, none given means the collector's own user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    pub user: Option<String>,
    pub application: Option<String>,
    pub client_addr: Option<IpAddr>,
}

/// The database collector's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub url: Secret,
    /// `None`: the business gauges are switched off.
    pub tables: Option<BusinessTables>,
    pub queries: Vec<CustomQuery>,
    pub service: String,
    pub connections: ConnectionFilter,
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
    pub database: Option<DatabaseConfig>,
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

    /// What the collectors will do (for `config check`; secrets are named
    /// by where they come from, never shown).
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "collectors: none\n".to_owned();
        }
        let mut out = format!(
            "collectors: every {:?}, each cut off after {:?}\n",
            self.interval, self.timeout
        );
        if let Some(url) = &self.redis {
            out.push_str(&format!("  redis: INFO from {url:?}\n"));
        }
        if let Some(db) = &self.database {
            let business = if db.tables.is_some() {
                "users_total, api_keys_active, sessions_active"
            } else {
                "business gauges off"
            };
            let queries: Vec<&str> = db.queries.iter().map(|q| q.name.as_str()).collect();
            out.push_str(&format!(
                "  database: {:?}; {business}; custom queries: [{}]; \
                 db_server_connections{{service=\"{}\"}} where {}\n",
                db.url,
                queries.join(", "),
                db.service,
                db.connections
            ));
        }
        out
    }
}

impl fmt::Display for ConnectionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::default() {
            return f.write_str("user = the collector's own");
        }
        let parts: Vec<String> = [
            self.user.as_ref().map(|u| format!("user = {u}")),
            self.application
                .as_ref()
                .map(|a| format!("application = {a}")),
            self.client_addr.map(|a| format!("client address = {a}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        f.write_str(&parts.join(" and "))
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

/// The service the server-side connections belong to: named, or the only
/// named service of the file, or `unknown`.
fn service_label(
    origin: &str,
    given: Option<String>,
    default: Option<&str>,
) -> Result<String, ConfigError> {
    match given {
        Some(name) if name.is_empty() || name.chars().count() > MAX_NAME_LEN => {
            Err(ConfigError::BadName {
                origin: format!("{origin}.service"),
                name,
            })
        }
        Some(name) => Ok(name),
        None => Ok(default.unwrap_or("unknown").to_owned()),
    }
}

fn database(
    origin: &str,
    raw: FileDatabase,
    default_service: Option<&str>,
) -> Result<DatabaseConfig, ConfigError> {
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
    let client_addr = raw
        .connections_client_addr
        .map(|addr| {
            addr.parse().map_err(|_| ConfigError::Collector {
                origin: format!("{origin}.connections_client_addr"),
                reason: format!("`{addr}` is not an IP address"),
            })
        })
        .transpose()?;
    let url = endpoint(
        origin,
        FileEndpoint {
            url: raw.url,
            url_env: raw.url_env,
            url_file: raw.url_file,
        },
    )?;
    Ok(DatabaseConfig {
        url,
        tables: raw.business_gauges.unwrap_or(true).then_some(tables),
        queries: queries::build(origin, raw.queries)?,
        service: service_label(origin, raw.service, default_service)?,
        connections: ConnectionFilter {
            user: raw.connections_user,
            application: raw.connections_application,
            client_addr,
        },
    })
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

/// `default_service`: the name `db_server_connections` is labelled with
/// when `[collectors.database]` names none.
pub fn build(
    path: &str,
    raw: FileCollectors,
    default_service: Option<&str>,
) -> Result<CollectorsConfig, ConfigError> {
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
        .map(|raw| database(&origin("database"), raw, default_service))
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
            None,
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
        let err = database("f", bad_table, None).unwrap_err().to_string();
        assert!(
            err.contains("users_table") && err.contains("not a table"),
            "{err}"
        );
        let sqlite = FileDatabase {
            url: Some("sqlite::memory:".into()),
            ..FileDatabase::default()
        };
        let config = database("f", sqlite.clone(), Some("api")).unwrap();
        assert_eq!(config.service, "api");
        assert_eq!(config.connections, ConnectionFilter::default());
        let bad_addr = FileDatabase {
            connections_client_addr: Some("10.0.0.300".into()),
            ..sqlite
        };
        let err = database("f", bad_addr, None).unwrap_err().to_string();
        assert!(err.contains("not an IP address"), "{err}");
        let zero = FileCollectors {
            interval: Some("0s".into()),
            ..FileCollectors::default()
        };
        assert!(build("f", zero, None).is_err());
    }
}
