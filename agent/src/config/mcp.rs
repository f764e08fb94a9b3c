//! The `[mcp]` section: where the services serve or call MCP over HTTP.
use serde::Deserialize;

use super::{ConfigError, at_least_one, templates};
pub use crate::enrich::mcp::McpConfig;

/// The path the SDKs serve the streamable HTTP transport on by default
/// (Python's FastMCP, the TypeScript SDK's examples).
const DEFAULT_PATHS: &[&str] = &["/mcp", "/mcp/"];
/// The path both SDKs serve the HTTP+SSE transport's event stream on.
const DEFAULT_SSE_PATHS: &[&str] = &["/sse"];
pub const DEFAULT_MAX_BODY: usize = 64 << 10;
pub const DEFAULT_MAX_TOOLS: usize = 50;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcp {
    /// Request paths (templates) of MCP endpoints, served or called
    /// (default: `/mcp`, with or without a final `/`).
    pub paths: Option<Vec<String>>,
    /// Paths (templates) of the HTTP+SSE transport's event streams
    /// (default: `/sse`); its message paths are learned from the streams.
    pub sse_paths: Option<Vec<String>>,
    /// Bytes kept of each message post and its answer (default 64 KiB).
    pub max_body: Option<usize>,
    /// Distinct `tool_name` values per service (default 50).
    pub max_tools: Option<usize>,
}

pub fn build(file: FileMcp, path: &str) -> Result<McpConfig, ConfigError> {
    let origin = |field: &str| format!("{path}: mcp.{field}");
    let or_default = |paths: Option<Vec<String>>, default: &[&str]| {
        paths.unwrap_or_else(|| default.iter().map(|p| (*p).to_owned()).collect())
    };
    let paths = or_default(file.paths, DEFAULT_PATHS);
    let sse_paths = or_default(file.sse_paths, DEFAULT_SSE_PATHS);
    Ok(McpConfig {
        paths: templates(&origin("paths"), &paths)?,
        sse_paths: templates(&origin("sse_paths"), &sse_paths)?,
        max_body: at_least_one(origin("max_body"), file.max_body, DEFAULT_MAX_BODY)?,
        max_tools: at_least_one(origin("max_tools"), file.max_tools, DEFAULT_MAX_TOOLS)?,
    })
}

impl Default for McpConfig {
    fn default() -> Self {
        build(FileMcp::default(), "defaults").expect("valid defaults")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http1::head::Method;

    #[test]
    fn defaults_cover_both_transports_and_bad_values_are_named() {
        let config = McpConfig::default();
        let post = Method::parse("POST");
        for path in ["/mcp", "/mcp/"] {
            assert!(config.is_mcp(&post, path), "{path}");
        }
        assert!(!config.is_mcp(&post, "/v1/chat/completions"));
        assert!(config.is_sse(&Method::Get, "/sse"));
        assert!(config.wants(&Method::Get, "/sse").live);
        assert!(!config.is_sse(&post, "/sse"));
        let bad = build(
            FileMcp {
                paths: Some(vec!["mcp".into()]),
                ..FileMcp::default()
            },
            "loupe.toml",
        );
        assert!(bad.unwrap_err().to_string().contains("mcp.paths"));
        let zero = build(
            FileMcp {
                max_tools: Some(0),
                ..FileMcp::default()
            },
            "loupe.toml",
        );
        assert!(zero.unwrap_err().to_string().contains("mcp.max_tools"));
    }
}
