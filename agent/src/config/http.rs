//! The `[http]` and `[principals]` sections of the configuration: request
//! capture, the endpoint budget, which headers carry credentials, OpenAPI
//! discovery, and pseudonymised principals.
use std::{fs, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, duration};
use crate::protocols::http1::auth::{AuthConfig, PrincipalKey};

pub const DEFAULT_MAX_ENDPOINTS: usize = 100;
pub const DEFAULT_MAX_PRINCIPALS: usize = 100;
pub const DEFAULT_MAX_CLIENT_HOSTS: usize = 50;
pub const DEFAULT_OPENAPI_PATH: &str = "/openapi.json";
pub const DEFAULT_OPENAPI_REFRESH: Duration = Duration::from_secs(300);
/// Shortest principal secret accepted.
const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    /// Capture and parse the requests services serve (default true).
    pub capture: Option<bool>,
    /// Capture and parse what services send as clients: HTTP calls,
    /// database queries, Redis commands (default true).
    pub capture_clients: Option<bool>,
    /// Distinct `host` values of HTTP calls per service (default 50).
    pub max_client_hosts: Option<usize>,
    /// Read TLS plaintext through uprobes on OpenSSL (default false: each
    /// hooked OpenSSL call traps into the kernel, docs/capture.md).
    pub tls: Option<bool>,
    /// Distinct `endpoint` values per service (default 100).
    pub max_endpoints: Option<usize>,
    /// Header names that carry an API key (default `x-api-key`, `api-key`).
    pub api_key_headers: Option<Vec<String>>,
    /// Cookie names that mark a session (default `session`, `sessionid`,
    /// `session_id`).
    pub session_cookies: Option<Vec<String>>,
    /// Fetch route templates from each service's OpenAPI document (default true).
    pub openapi: Option<bool>,
    pub openapi_path: Option<String>,
    pub openapi_refresh: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrincipals {
    /// Export `agent_requests_by_principal_total` (default false).
    pub enabled: Option<bool>,
    /// Environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// File holding the HMAC secret (e.g. a mounted Kubernetes Secret).
    pub secret_file: Option<PathBuf>,
    /// Distinct principals with their own series (default 100).
    pub max: Option<usize>,
    /// Hex characters of each pseudonym (default 8).
    pub hex_len: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenApiConfig {
    pub path: String,
    pub refresh: Duration,
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub capture: bool,
    pub capture_clients: bool,
    pub max_endpoints: usize,
    pub auth: AuthConfig,
    pub openapi: Option<OpenApiConfig>,
    pub max_principals: usize,
    pub max_client_hosts: usize,
    pub tls: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            capture: true,
            capture_clients: true,
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            auth: AuthConfig::default(),
            openapi: Some(OpenApiConfig {
                path: DEFAULT_OPENAPI_PATH.to_owned(),
                refresh: DEFAULT_OPENAPI_REFRESH,
            }),
            max_principals: DEFAULT_MAX_PRINCIPALS,
            max_client_hosts: DEFAULT_MAX_CLIENT_HOSTS,
            tls: false,
        }
    }
}

fn lower(names: Vec<String>) -> Vec<String> {
    names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
}

fn principal_key(
    file: &FilePrincipals,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PrincipalKey, ConfigError> {
    let bad = |reason: String| ConfigError::Principals {
        origin: origin.to_owned(),
        reason,
    };
    let secret = match (&file.secret_env, &file.secret_file) {
        (Some(var), _) => env(var)
            .ok_or_else(|| bad(format!("environment variable {var} is not set")))?
            .into_bytes(),
        (None, Some(path)) => fs::read(path)
            .map_err(|err| bad(format!("cannot read secret_file {}: {err}", path.display())))?,
        (None, None) => {
            return Err(bad(
                "enabled without a secret: set secret_env or secret_file (an unkeyed hash of \
                 a user ID can be reversed by trying every ID)"
                    .into(),
            ));
        }
    };
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(bad(format!(
            "the secret has {} bytes; use at least {MIN_SECRET_BYTES} random bytes",
            secret.len()
        )));
    }
    Ok(PrincipalKey {
        secret,
        hex_len: file.hex_len.unwrap_or(8).clamp(4, 64),
    })
}

/// Validates the two sections; `env` reads environment variables.
pub fn build(
    http: FileHttp,
    principals: FilePrincipals,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpConfig, ConfigError> {
    let defaults = HttpConfig::default();
    let max_endpoints = http.max_endpoints.unwrap_or(DEFAULT_MAX_ENDPOINTS);
    if max_endpoints == 0 {
        return Err(ConfigError::Zero {
            origin: format!("{path}: http.max_endpoints"),
        });
    }
    let openapi = match http.openapi {
        Some(false) => None,
        _ => Some(OpenApiConfig {
            path: http
                .openapi_path
                .unwrap_or_else(|| DEFAULT_OPENAPI_PATH.to_owned()),
            refresh: match &http.openapi_refresh {
                Some(value) => duration(&format!("{path}: http.openapi_refresh"), value)?,
                None => DEFAULT_OPENAPI_REFRESH,
            },
        }),
    };
    let principal = if principals.enabled.unwrap_or(false) {
        Some(principal_key(
            &principals,
            &format!("{path}: principals"),
            env,
        )?)
    } else {
        None
    };
    Ok(HttpConfig {
        capture: http.capture.unwrap_or(true),
        capture_clients: http.capture_clients.unwrap_or(true),
        max_endpoints,
        auth: AuthConfig {
            api_key_headers: http
                .api_key_headers
                .map_or(defaults.auth.api_key_headers, lower),
            session_cookies: http
                .session_cookies
                .unwrap_or(defaults.auth.session_cookies),
            principal,
            label_headers: Vec::new(),
        },
        openapi,
        max_principals: principals.max.unwrap_or(DEFAULT_MAX_PRINCIPALS).max(1),
        max_client_hosts: http
            .max_client_hosts
            .unwrap_or(DEFAULT_MAX_CLIENT_HOSTS)
            .max(1),
        tls: http.tls.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults() {
        let config = build(FileHttp::default(), FilePrincipals::default(), "f", &no_env).unwrap();
        assert!(config.capture);
        assert_eq!(config.max_endpoints, 100);
        assert_eq!(config.openapi.unwrap().path, "/openapi.json");
        assert!(config.auth.principal.is_none());
    }

    #[test]
    fn principals_need_a_real_secret() {
        let enabled = FilePrincipals {
            enabled: Some(true),
            ..FilePrincipals::default()
        };
        let err = build(FileHttp::default(), enabled.clone(), "f", &no_env).unwrap_err();
        assert!(err.to_string().contains("without a secret"), "{err}");
        let from_env = FilePrincipals {
            secret_env: Some("LOUPE_SECRET".into()),
            ..enabled.clone()
        };
        let err = build(FileHttp::default(), from_env.clone(), "f", &no_env).unwrap_err();
        assert!(err.to_string().contains("LOUPE_SECRET is not set"), "{err}");
        let short = |_: &str| Some("short".to_owned());
        let err = build(FileHttp::default(), from_env.clone(), "f", &short).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
        let long = |_: &str| Some("0123456789abcdef0123\n".to_owned());
        let config = build(FileHttp::default(), from_env, "f", &long).unwrap();
        let key = config.auth.principal.unwrap();
        assert_eq!(key.secret, b"0123456789abcdef0123");
        assert!(
            !format!("{key:?}").contains("0123"),
            "the secret is never printed"
        );
    }

    #[test]
    fn rejects_zero_and_bad_durations() {
        let zero = FileHttp {
            max_endpoints: Some(0),
            ..FileHttp::default()
        };
        assert!(build(zero, FilePrincipals::default(), "f", &no_env).is_err());
        let bad = FileHttp {
            openapi_refresh: Some("often".into()),
            ..FileHttp::default()
        };
        assert!(build(bad, FilePrincipals::default(), "f", &no_env).is_err());
        let off = FileHttp {
            openapi: Some(false),
            api_key_headers: Some(vec!["X-Token".into()]),
            ..FileHttp::default()
        };
        let config = build(off, FilePrincipals::default(), "f", &no_env).unwrap();
        assert_eq!(config.openapi, None);
        assert_eq!(config.auth.api_key_headers, ["x-token"]);
    }
}
