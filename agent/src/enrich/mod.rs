//! From what the parsers found to labelled metrics: route templates (from
//! the configuration and OpenAPI documents), route rules for the business
//! metrics, and model provider calls.
pub mod calls;
pub mod endpoint;
pub mod llm;
pub mod openapi;
pub mod rules;
