//! loupe: an eBPF-assisted Prometheus metrics agent. It attaches to the
//! processes of a service, measures their TCP connections (and, as it grows,
//! their requests and queries) from the kernel, and serves the result on one
//! `/metrics` endpoint.
//!
//! The data path, one stage per folder (`docs/architecture.md` draws it):
//! [`targets`] finds the processes of each service; [`kernel`] loads the
//! probes and attaches them to those processes; [`capture`] decodes what the
//! probes deliver and hands each connection's bytes to its parser in
//! [`protocols`]; [`enrich`] turns what the parsers found into labelled
//! observations (route templates, rules, model calls); [`export`] holds the
//! metric families and serves `/metrics`. [`runtime`] runs the stages;
//! [`config`] and [`cli`] say how, [`collectors`] ask databases and Redis
//! directly, [`check`] is the preflight report, and [`privileges`] gives
//! up what the agent no longer needs once its probes are loaded.
pub mod capture;
pub mod check;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod enrich;
pub mod export;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod kernel;
pub mod memory;
pub mod privileges;
pub mod protocols;
pub mod runtime;
pub mod targets;

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
