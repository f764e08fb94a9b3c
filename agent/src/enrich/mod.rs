//! From what the parsers found to labelled metrics: route templates (from
//! the configuration and OpenAPI documents), route rules for the business
//! metrics, model provider calls, and MCP.
pub mod calls;
pub mod endpoint;
pub mod llm;
pub mod mcp;
pub mod openapi;
pub mod rules;
