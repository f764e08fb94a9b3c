//! loupe: an eBPF-assisted Prometheus metrics agent. It attaches to the
//! processes of a service, measures their TCP connections (and, as it grows,
//! their requests and queries) from the kernel, and serves the result on one
//! `/metrics` endpoint.
//!
//! Layout: [`cli`] and [`config`] turn flags and the file into a [`config::Config`];
//! [`runtime`] runs it: [`discovery`] finds processes in [`procfs`], [`ebpf`] loads
//! the probes, [`events`] decodes their records, [`connections`] keeps the
//! picture, [`capture`] hands each connection's bytes to its parser ([`http`]
//! for what the service serves, [`client`] for what it asks of [`redis`],
//! [`postgres`] and [`mysql`]; what they find is a [`found::Found`]),
//! [`rules`] derive business metrics from
//! requests, and [`metrics`] exports it all through [`server`]. [`check`] is
//! the preflight report.
pub mod capture;
pub mod check;
pub mod cli;
pub mod client;
pub mod collectors;
pub mod config;
pub mod connections;
pub mod container;
pub mod discovery;
pub mod ebpf;
pub mod events;
pub mod found;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod k8s;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod mysql;
pub mod naming;
pub mod openapi;
pub mod postgres;
pub mod procfs;
pub mod redis;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod tls;

/// An error followed by those of its causes its message does not already
/// include (loupe's own messages name their cause inline; library errors
/// often do not).
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let message = err.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = err.source();
    }
    text
}

/// Why the kernel refused a program, in a few words: the errno of a load
/// or attach, without the verifier's log (for one plain log line).
pub fn refusal(err: &(dyn std::error::Error + 'static)) -> String {
    let text = describe_error(err);
    let errno = |n: u32| text.contains(&format!("(os error {n})"));
    if errno(1) {
        "the kernel does not permit it (EPERM on load)".to_owned()
    } else if errno(524) || errno(95) {
        "the kernel does not support it (ENOTSUPP)".to_owned()
    } else if errno(22) {
        "the kernel rejects it (EINVAL)".to_owned()
    } else {
        let brief = text.split("Verifier output").next().unwrap_or(&text);
        brief.trim_end_matches([' ', '.', ':']).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::{describe_error, refusal};

    #[test]
    fn refusals_in_a_few_words() {
        let eperm = std::io::Error::from_raw_os_error(1);
        assert_eq!(
            refusal(&eperm),
            "the kernel does not permit it (EPERM on load)"
        );
        let other = std::io::Error::other("load failed. Verifier output: 0: r1 = ...");
        assert_eq!(refusal(&other), "load failed");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer says {source}")]
    struct Inline {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Separate {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn causes_are_named_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(
            describe_error(&Inline { source: io() }),
            "outer says disk on fire"
        );
        assert_eq!(
            describe_error(&Separate { source: io() }),
            "outer: disk on fire"
        );
    }
}
