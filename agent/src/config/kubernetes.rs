//! The `[kubernetes]` section: where the API server is, how the agent
//! authenticates (its service account's token and CA), which node it is on,
//! and how often it refreshes the node's pod list. Inside a pod every key
//! has a default from the environment Kubernetes provides.
use std::{path::PathBuf, time::Duration};

use regex::Regex;
use serde::Deserialize;

use super::{ConfigError, duration};

/// Selectors: enough of a container id to select it: 12 to 64 hex digits.
pub fn is_id_prefix(text: &str) -> bool {
    (12..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as the API spells it: 8-4-4-4-12 hex digits.
pub fn is_pod_uid(text: &str) -> bool {
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKubernetes {
    /// The node's name (default: `$NODE_NAME`, which the DaemonSet sets
    /// from `spec.nodeName`).
    pub node_name: Option<String>,
    /// `https://HOST[:PORT]` (default: from `$KUBERNETES_SERVICE_HOST` and
    /// `$KUBERNETES_SERVICE_PORT`).
    pub api_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub refresh_interval: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub node_name: String,
    pub host: String,
    pub port: u16,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub refresh: Duration,
}

/// A service's selector by Kubernetes metadata; every part given must
/// match.
#[derive(Clone, Debug)]
pub struct K8sSelector {
    pub namespace: Option<String>,
    /// Pod names (whole-name regular expressions); any may match.
    pub pods: Vec<Regex>,
    /// Container names; any may match.
    pub containers: Vec<String>,
}

impl K8sSelector {
    pub fn matches(&self, namespace: &str, pod: &str, container: Option<&str>) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && (self.pods.is_empty() || self.pods.iter().any(|re| re.is_match(pod)))
            && (self.containers.is_empty()
                || container.is_some_and(|c| self.containers.iter().any(|name| name == c)))
    }
}

/// The selector of `[[services]]` keys `k8s_namespace`, `k8s_pods`,
/// `k8s_containers`, if any is given.
pub fn selector(
    origin: &str,
    namespace: Option<String>,
    pods: &[String],
    containers: Vec<String>,
) -> Result<Option<K8sSelector>, ConfigError> {
    if namespace.is_none() && pods.is_empty() && containers.is_empty() {
        return Ok(None);
    }
    let pods = pods
        .iter()
        .map(|pattern| {
            super::selector_regex(&format!("^(?:{pattern})$")).map_err(|source| {
                ConfigError::Regex {
                    origin: format!("{origin}.k8s_pods"),
                    pattern: pattern.clone(),
                    source: Box::new(source),
                }
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(K8sSelector {
        namespace,
        pods,
        containers,
    }))
}

/// `env`: the process environment (a parameter, for tests).
pub fn build(
    path: &str,
    raw: Option<FileKubernetes>,
    needed: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<KubernetesConfig>, ConfigError> {
    if raw.is_none() && !needed {
        return Ok(None);
    }
    let raw = raw.unwrap_or_default();
    let bad = |key: &str, reason: String| ConfigError::Collector {
        origin: format!("{path}: kubernetes.{key}"),
        reason,
    };
    let node_name = raw.node_name.or_else(|| env("NODE_NAME")).ok_or_else(|| {
        bad(
            "node_name",
            "unknown: set it, or $NODE_NAME from the pod's spec.nodeName (the DaemonSet does)"
                .into(),
        )
    })?;
    let url = match raw.api_url {
        Some(url) => url,
        None => match (
            env("KUBERNETES_SERVICE_HOST"),
            env("KUBERNETES_SERVICE_PORT"),
        ) {
            (Some(host), Some(port)) if host.contains(':') => format!("https://[{host}]:{port}"),
            (Some(host), Some(port)) => format!("https://{host}:{port}"),
            _ => {
                return Err(bad(
                    "api_url",
                    "unknown: not in a pod ($KUBERNETES_SERVICE_HOST is not set); give \
                     https://HOST:PORT"
                        .into(),
                ));
            }
        },
    };
    let (host, port) = parse_url(&url).ok_or_else(|| {
        bad(
            "api_url",
            format!("`{url}` is not https://HOST[:PORT] (the API is only spoken over TLS)"),
        )
    })?;
    let refresh = match &raw.refresh_interval {
        Some(value) => duration(&format!("{path}: kubernetes.refresh_interval"), value)?,
        None => DEFAULT_REFRESH,
    };
    if refresh.is_zero() {
        return Err(ConfigError::Zero {
            origin: format!("{path}: kubernetes.refresh_interval"),
        });
    }
    Ok(Some(KubernetesConfig {
        node_name,
        host,
        port,
        token_file: raw
            .token_file
            .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT).join("token")),
        ca_file: raw
            .ca_file
            .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT).join("ca.crt")),
        refresh,
    }))
}

/// `https://host[:port]` (IPv6 in brackets).
fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?.trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let port = port.map_or(Some(443), |p| p.parse().ok())?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_come_from_the_pod_environment() {
        let in_pod = env(&[
            ("NODE_NAME", "node-1"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]);
        let config = build("f", None, true, &in_pod).unwrap().unwrap();
        assert_eq!((config.host.as_str(), config.port), ("10.96.0.1", 443));
        assert_eq!(config.node_name, "node-1");
        assert!(config.token_file.ends_with("serviceaccount/token"));
        assert_eq!(build("f", None, false, &in_pod).unwrap(), None);
        let outside = env(&[("NODE_NAME", "n")]);
        let err = build("f", None, true, &outside).unwrap_err().to_string();
        assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
        let err = build("f", None, true, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("spec.nodeName"), "{err}");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://api.example:6443"),
            Some(("api.example".into(), 6443))
        );
        assert_eq!(
            parse_url("https://10.0.0.1/"),
            Some(("10.0.0.1".into(), 443))
        );
        assert_eq!(
            parse_url("https://[fd00::1]:443"),
            Some(("fd00::1".into(), 443))
        );
        assert_eq!(parse_url("http://10.0.0.1"), None);
        assert_eq!(parse_url("https://h:port"), None);
        assert_eq!(parse_url("https://h/api"), None);
    }

    #[test]
    fn selectors_match_every_part_given() {
        let sel = selector(
            "s",
            Some("agents".into()),
            &["agent-api-.*".into()],
            vec!["api".into()],
        )
        .unwrap()
        .unwrap();
        assert!(sel.matches("agents", "agent-api-7c9f-x2k", Some("api")));
        assert!(!sel.matches("agents", "agent-api-7c9f-x2k", Some("envoy")));
        assert!(!sel.matches("agents", "agent-api-7c9f-x2k", None));
        assert!(!sel.matches("default", "agent-api-7c9f-x2k", Some("api")));
        assert!(
            !sel.matches("agents", "x-agent-api-1", Some("api")),
            "whole names"
        );
        assert!(selector("s", None, &[], Vec::new()).unwrap().is_none());
        assert!(selector("s", None, &["(".into()], Vec::new()).is_err());
    }
}
