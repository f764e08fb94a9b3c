//! The same measurements a second time under OpenTelemetry's semantic
//! convention names (v1.41.0), as Prometheus renders them (dots to
//! underscores, the unit `s` as `_seconds`), when `[export] conventions`
//! lists `"otel"`. Label values are those loupe already bounds (routes,
//! hosts, models, tools), renamed to the conventions' attributes.
use prometheus::HistogramVec;

use crate::protocols::http1::head::Method;

use super::{
    Builder,
    catalogue::{self as c, buckets},
    series::Expiring,
};

/// The families of the OpenTelemetry names.
#[derive(Clone)]
pub struct Otel {
    pub http_server: Expiring<HistogramVec>,
    pub db_client: Expiring<HistogramVec>,
    pub gen_ai_tokens: Expiring<HistogramVec>,
    pub gen_ai_duration: Expiring<HistogramVec>,
    pub gen_ai_first_chunk: Expiring<HistogramVec>,
    pub mcp_client: Expiring<HistogramVec>,
    pub mcp_server: Expiring<HistogramVec>,
}

impl Otel {
    pub(super) fn build(b: &mut Builder) -> Self {
        Self {
            http_server: b.expiring_histograms(&c::OTEL_HTTP_SERVER_DURATION, buckets::OTEL_HTTP),
            db_client: b.expiring_histograms(&c::OTEL_DB_CLIENT_DURATION, buckets::OTEL_DB),
            gen_ai_tokens: b.expiring_histograms(&c::OTEL_GEN_AI_TOKEN_USAGE, buckets::OTEL_TOKENS),
            gen_ai_duration: b.expiring_histograms(&c::OTEL_GEN_AI_DURATION, buckets::OTEL_GEN_AI),
            gen_ai_first_chunk: b
                .expiring_histograms(&c::OTEL_GEN_AI_TIME_TO_FIRST_CHUNK, buckets::OTEL_GEN_AI),
            mcp_client: b.expiring_histograms(&c::OTEL_MCP_CLIENT_DURATION, buckets::OTEL_MCP),
            mcp_server: b.expiring_histograms(&c::OTEL_MCP_SERVER_DURATION, buckets::OTEL_MCP),
        }
    }
}

/// The labels `http_client_request_duration_seconds` carries besides
/// loupe's own (`service`, `host`) when the OpenTelemetry names are on:
/// its OpenTelemetry name is loupe's, so one family carries both.
pub const HTTP_CLIENT_LABELS: &[&str] = &[
    "service",
    "host",
    "http_request_method",
    "server_address",
    "server_port",
    "http_response_status_code",
    "network_protocol_version",
];

/// Error type of an operation whose error is not named.
pub const OTHER_ERROR: &str = "_OTHER";

/// `http.request.method`: the methods HTTP defines (those [`Method`]
/// names), `_OTHER` for others.
pub const fn http_method(method: Method) -> &'static str {
    match method {
        Method::Other => "_OTHER",
        known => known.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_take_the_conventions_values() {
        assert_eq!(http_method(Method::parse("PATCH")), "PATCH");
        assert_eq!(http_method(Method::parse("PROPFIND")), "_OTHER");
    }
}
