//! The rules used when the configuration has none: the conventional layout
//! of a FastAPI agent service, with and without an `/api/v1` prefix.
use super::{Family, FieldPath, LabelSource, Rule, Side, Tokens};
use crate::{enrich::endpoint::Template, protocols::http1::head::Method};

/// `(family, route, subject source)` of the conventional layout.
const LAYOUT: &[(Family, &str, &str)] = &[
    (Family::Login, "/auth/{provider}/login", "path:provider"),
    (Family::Login, "/auth/login", "request:provider|local"),
    (
        Family::TokenRefresh,
        "/auth/{provider}/refresh",
        "path:provider",
    ),
    (
        Family::TokenRefresh,
        "/auth/refresh",
        "request:provider|local",
    ),
    (
        Family::Agent,
        "/agents/{agent_name}/invoke",
        "path:agent_name",
    ),
    (Family::Tool, "/tools/{tool_name}/execute", "path:tool_name"),
];

const PREFIXES: &[&str] = &["", "/api/v1"];

/// Usage objects as OpenAI-style (`usage`) and Anthropic-style streams
/// (`message.usage` in their first event) put them.
pub fn default_tokens() -> Tokens {
    Tokens::Objects(
        ["usage", "message.usage"]
            .iter()
            .map(|p| (Side::Response, FieldPath::parse(p).expect("valid path")))
            .collect(),
    )
}

pub fn default_rules() -> Vec<Rule> {
    PREFIXES
        .iter()
        .flat_map(|prefix| {
            LAYOUT.iter().map(move |(family, route, subject)| {
                let route = format!("{prefix}{route}");
                Rule {
                    name: format!("default {} {route}", family.as_str()),
                    family: *family,
                    method: Some(Method::parse("POST")),
                    route: Template::parse(&route).expect("valid template"),
                    services: Vec::new(),
                    subject: LabelSource::parse(subject).expect("valid source"),
                    success: None,
                    tokens: (*family == Family::Agent).then(default_tokens),
                }
            })
        })
        .collect()
}
