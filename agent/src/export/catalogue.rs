//! Every metric loupe exports: name, type, help and labels, in one place,
//! `catalogue.toml` (build.rs makes a constant of each family, and `ALL`).
//! `docs/metrics.md` is rendered from it (`reference.rs`; a test keeps them
//! equal), and a test checks that `/metrics` exposes nothing that is not
//! listed here.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Pinned histogram buckets (seconds): every duration histogram uses one of
/// these, so dashboards can rely on the boundaries.
pub mod buckets {
    /// HTTP request durations.
    pub const HTTP: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ];
    /// Database queries and Redis commands.
    pub const DATABASE: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];
    /// OpenTelemetry's advised boundaries (semantic conventions v1.41.0):
    /// http.server.request.duration.
    pub const OTEL_HTTP: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    /// db.client.operation.duration.
    pub const OTEL_DB: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
    /// gen_ai.client.operation.duration and time_to_first_chunk.
    pub const OTEL_GEN_AI: &[f64] = &[
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];
    /// gen_ai.client.token.usage (counts, powers of 4).
    pub const OTEL_TOKENS: &[f64] = &[
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ];
    /// mcp.client.operation.duration and mcp.server.operation.duration.
    pub const OTEL_MCP: &[f64] = &[
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    /// Agent and tool executions (slow by nature).
    pub const EXECUTION: &[f64] = &[
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ];
}

include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));

/// The definition of an exported family, if it is catalogued.
pub fn find(name: &str) -> Option<&'static Def> {
    ALL.iter().chain(PROCESS).find(|def| def.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for def in ALL.iter().chain(PROCESS) {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            // The one documented exception: a gauge kept under its old name.
            let exception = def.name == USERS_TOTAL.name;
            assert_eq!(
                def.kind == Kind::Counter || exception,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
            assert!(!def.help.is_empty());
        }
    }

    #[test]
    fn buckets_ascend() {
        for set in [
            buckets::HTTP,
            buckets::DATABASE,
            buckets::EXECUTION,
            buckets::OTEL_HTTP,
            buckets::OTEL_DB,
            buckets::OTEL_GEN_AI,
            buckets::OTEL_TOKENS,
            buckets::OTEL_MCP,
        ] {
            assert!(set.windows(2).all(|pair| pair[0] < pair[1]), "{set:?}");
        }
    }
}
