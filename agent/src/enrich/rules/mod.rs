//! Route rules: from observed requests to the service's business metrics
//! (logins, token refreshes, failed auth attempts, agent runs and their
//! token usage, tool calls), configured, not coded.
//!
//! A rule matches a method and a route template and feeds one [`Family`].
//! Its label values come from a [`Source`]: a path parameter, a fixed value,
//! an allowlisted request header, or a field of the JSON request or response
//! body. Bodies are kept only for requests a rule matches, only up to
//! [`Semantic::max_body`] bytes, and only the named fields are read
//! ([`eval`]); nothing else of a body leaves the parser.
pub mod body;
mod defaults;
mod error;
pub mod eval;

use std::{collections::BTreeMap, fmt};

pub use self::defaults::{default_rules, default_tokens};
use crate::{
    enrich::endpoint::Template,
    protocols::http1::{exchange::BodyWants, head::Method},
};

/// The metric families a rule can feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Login,
    TokenRefresh,
    Agent,
    Tool,
}

impl Family {
    pub const ALL: [Self; 4] = [Self::Login, Self::TokenRefresh, Self::Agent, Self::Tool];

    /// The name a config file uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::TokenRefresh => "token_refresh",
            Self::Agent => "agent",
            Self::Tool => "tool",
        }
    }

    /// The label the rule's subject goes in.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Login | Self::TokenRefresh => "provider",
            Self::Agent => "agent_name",
            Self::Tool => "tool_name",
        }
    }

    /// Whether failures count as failed authentication attempts.
    pub const fn is_auth(self) -> bool {
        matches!(self, Self::Login | Self::TokenRefresh)
    }
}

/// A dotted path into a JSON document: `usage.output_tokens`,
/// `choices.0.message` (numbers index arrays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        parts.iter().all(|p| !p.is_empty()).then_some(Self(parts))
    }

    pub fn get<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0.iter().try_fold(value, |v, part| match v {
            serde_json::Value::Object(map) => map.get(part),
            serde_json::Value::Array(items) => items.get(part.parse::<usize>().ok()?),
            _ => None,
        })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Which body a field is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// Where a label value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Value(String),
    /// Lower-case header name.
    Header(String),
    Body(Side, FieldPath),
}

/// A source, and the value used when it yields nothing (`path|default`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSource {
    pub source: Source,
    pub fallback: Option<String>,
}

impl LabelSource {
    /// Parses `path:NAME`, `value:TEXT`, `header:NAME`, `request:FIELD`,
    /// `response:FIELD`, each optionally followed by `|DEFAULT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (spec, fallback) = match text.split_once('|') {
            Some((spec, fallback)) => (spec, Some(fallback.to_owned())),
            None => (text, None),
        };
        let (kind, arg) = spec.split_once(':').ok_or_else(|| {
            format!("`{text}` has no kind; write e.g. \"path:provider\", \"value:google\", \"header:x-provider\", \"request:provider\" or \"response:usage.output_tokens\"")
        })?;
        if arg.is_empty() {
            return Err(format!("`{text}` names nothing after `{kind}:`"));
        }
        let field = |side| {
            FieldPath::parse(arg)
                .map(|path| Source::Body(side, path))
                .ok_or_else(|| {
                    format!("`{arg}` is not a field path; write e.g. usage.output_tokens")
                })
        };
        let source = match kind {
            "path" => Source::Path(arg.to_owned()),
            "value" => Source::Value(arg.to_owned()),
            "header" => Source::Header(arg.to_ascii_lowercase()),
            "request" => field(Side::Request)?,
            "response" => field(Side::Response)?,
            other => {
                return Err(format!(
                    "unknown source kind `{other}` in `{text}`; use path, value, header, request or response"
                ));
            }
        };
        Ok(Self { source, fallback })
    }

    fn side(&self) -> Option<Side> {
        match &self.source {
            Source::Body(side, _) => Some(*side),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Path(name) => write!(f, "path parameter `{name}`")?,
            Source::Value(value) => write!(f, "the value `{value}`")?,
            Source::Header(name) => write!(f, "request header `{name}`")?,
            Source::Body(Side::Request, path) => write!(f, "request body field `{path}`")?,
            Source::Body(Side::Response, path) => write!(f, "response body field `{path}`")?,
        }
        if let Some(fallback) = &self.fallback {
            write!(f, ", else `{fallback}`")?;
        }
        Ok(())
    }
}

/// Where an agent rule finds token counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// Usage objects: every numeric field `X_tokens` is token type `X`
    /// (`prompt` and `completion` become `input` and `output`; `total` is
    /// skipped). The first path that resolves in a document is used.
    Objects(Vec<(Side, FieldPath)>),
    /// Named token types, each from one field.
    Fields(Vec<(String, Side, FieldPath)>),
}

/// One validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// For messages and the rule-error self-metric.
    pub name: String,
    pub family: Family,
    /// `None` matches any method.
    pub method: Option<Method>,
    pub route: Template,
    /// Services it applies to (empty: all).
    pub services: Vec<String>,
    /// The family's subject label (`provider`, `agent_name`, `tool_name`).
    pub subject: LabelSource,
    /// Overrides "2xx is success": a boolean (or "success"/"ok") field.
    pub success: Option<LabelSource>,
    pub tokens: Option<Tokens>,
}

impl Rule {
    fn applies_to(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.route.matches_path(path)
    }

    /// Which bodies this rule reads.
    fn sides(&self, semantic: &Semantic) -> impl Iterator<Item = Side> + '_ {
        let tokens: Vec<Side> = match &self.tokens {
            Some(Tokens::Objects(paths)) => paths.iter().map(|(side, _)| *side).collect(),
            Some(Tokens::Fields(fields)) => fields.iter().map(|(_, side, _)| *side).collect(),
            None => Vec::new(),
        };
        let reason = self
            .family
            .is_auth()
            .then(|| semantic.failure_reason.as_ref().and_then(LabelSource::side))
            .flatten();
        [
            self.subject.side(),
            self.success.as_ref().and_then(LabelSource::side),
            reason,
        ]
        .into_iter()
        .flatten()
        .chain(tokens)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.method.map_or("any method", Method::as_str);
        writeln!(
            f,
            "rule {}: {} {} feeds {}",
            self.name,
            method,
            self.route.as_str(),
            self.family.as_str()
        )?;
        if !self.services.is_empty() {
            writeln!(f, "  services: {}", self.services.join(", "))?;
        }
        writeln!(f, "  {}: {}", self.family.label(), self.subject)?;
        match &self.success {
            Some(source) => writeln!(f, "  success: {source}")?,
            None => writeln!(f, "  success: a 2xx status")?,
        }
        match &self.tokens {
            Some(Tokens::Objects(paths)) => {
                let paths: Vec<String> = paths.iter().map(|(s, p)| side_path(*s, p)).collect();
                writeln!(f, "  tokens: usage objects at {}", paths.join(", "))?;
            }
            Some(Tokens::Fields(fields)) => {
                for (kind, side, path) in fields {
                    writeln!(f, "  tokens {kind}: {}", side_path(*side, path))?;
                }
            }
            None => {}
        }
        Ok(())
    }
}

fn side_path(side: Side, path: &FieldPath) -> String {
    match side {
        Side::Request => format!("request:{path}"),
        Side::Response => format!("response:{path}"),
    }
}

/// Settings shared by all rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Semantic {
    /// Body bytes kept for a matched rule.
    pub max_body: usize,
    /// Distinct values per label fed from request data, per service.
    pub max_label_values: usize,
    /// Failed-attempt reasons by response status.
    pub failure_statuses: BTreeMap<u16, String>,
    /// A body field naming the reason, taken when it is allowlisted.
    pub failure_reason: Option<LabelSource>,
    pub failure_reasons: Vec<String>,
}

/// The labels route rules feed from request data (each with a budget of
/// values per service).
pub const FED_LABELS: [&str; 4] = ["provider", "agent_name", "tool_name", "token_type"];
pub const DEFAULT_MAX_BODY: usize = 16 * 1024;
pub const DEFAULT_MAX_LABEL_VALUES: usize = 100;

impl Default for Semantic {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            failure_statuses: [
                (401, "invalid_credentials"),
                (403, "forbidden"),
                (423, "locked"),
                (429, "rate_limited"),
            ]
            .into_iter()
            .map(|(code, reason)| (code, reason.to_owned()))
            .collect(),
            failure_reason: None,
            failure_reasons: Vec::new(),
        }
    }
}

/// Every rule of the configuration.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub semantic: Semantic,
}

impl RuleSet {
    /// The first rule of `service` matching the request.
    pub fn matching(&self, service: &str, method: &Method, path: &str) -> Option<&Rule> {
        self.position(service, method, path)
            .and_then(|i| self.get(i))
    }

    fn position(&self, service: &str, method: &Method, path: &str) -> Option<u32> {
        let found = self
            .rules
            .iter()
            .position(|r| r.applies_to(service) && r.matches(method, path))?;
        u32::try_from(found).ok()
    }

    /// The rule `wants` chose for a request.
    pub fn get(&self, rule: u32) -> Option<&Rule> {
        self.rules.get(rule as usize)
    }

    /// The rule matching a request, and the bodies the parser keeps for
    /// it.
    pub fn wants(&self, service: &str, method: &Method, path: &str) -> BodyWants {
        let Some(index) = self.position(service, method, path) else {
            return BodyWants::default();
        };
        let rule = &self.rules[index as usize];
        let mut wants = BodyWants {
            rule: Some(index),
            ..BodyWants::default()
        };
        for side in rule.sides(&self.semantic) {
            match side {
                Side::Request => wants.request = self.semantic.max_body,
                Side::Response => wants.response = self.semantic.max_body,
            }
        }
        wants
    }

    /// Request-line prefixes (`POST /api/v1/agents/`) of the requests whose
    /// response bodies some rule reads, sorted and without repeats: the
    /// probes copy those responses from their start. A prefix matches more
    /// than its rule (the route's first parameter and the rest are left
    /// out; a rule for some services applies its prefix to all): the
    /// agent keeps bytes only for requests a rule matches. A rule without a
    /// method gives one prefix per method that carries requests to APIs.
    pub fn response_prefixes(&self) -> Vec<String> {
        const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
        let mut prefixes: Vec<String> = self
            .rules
            .iter()
            .filter(|rule| {
                rule.sides(&self.semantic)
                    .any(|side| side == Side::Response)
            })
            .flat_map(|rule| {
                let path = rule.route.literal_prefix();
                match &rule.method {
                    Some(method) => vec![format!("{} {path}", method.as_str())],
                    None => METHODS.iter().map(|m| format!("{m} {path}")).collect(),
                }
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }

    /// Whether some rule reads the bodies of `side`.
    pub fn reads(&self, side: Side) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.sides(&self.semantic).any(|s| s == side))
    }

    /// Request headers some rule reads (the parser's allowlist).
    pub fn label_headers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .rules
            .iter()
            .flat_map(|r| [Some(&r.subject), r.success.as_ref()])
            .chain([self.semantic.failure_reason.as_ref()])
            .flatten()
            .filter_map(|s| match &s.source {
                Source::Header(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_sources() {
        let s = LabelSource::parse("request:provider|local").unwrap();
        assert_eq!(
            s.source,
            Source::Body(Side::Request, FieldPath::parse("provider").unwrap())
        );
        assert_eq!(s.fallback.as_deref(), Some("local"));
        assert_eq!(
            LabelSource::parse("header:X-Provider").unwrap().source,
            Source::Header("x-provider".into())
        );
        for bad in ["provider", "path:", "cookie:x", "response:a..b"] {
            assert!(LabelSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_paths_walk_objects_and_arrays() {
        let doc = serde_json::json!({"choices": [{"usage": {"n": 3}}]});
        let path = FieldPath::parse("choices.0.usage.n").unwrap();
        assert_eq!(path.get(&doc), Some(&serde_json::json!(3)));
        assert_eq!(FieldPath::parse("choices.1.usage").unwrap().get(&doc), None);
    }

    #[test]
    fn bodies_are_kept_only_for_matched_rules_that_read_them() {
        let rules = RuleSet {
            rules: default_rules(),
            semantic: Semantic::default(),
        };
        let post = Method::parse("POST");
        let agent = rules.wants("svc", &post, "/api/v1/agents/planner/invoke");
        assert_eq!(agent.response, DEFAULT_MAX_BODY);
        assert_eq!(agent.request, 0);
        let login = rules.wants("svc", &post, "/auth/login");
        assert_eq!(login.request, DEFAULT_MAX_BODY, "provider from the form");
        // The rule chosen while parsing is the one applied when publishing.
        for (wants, path) in [
            (agent, "/api/v1/agents/planner/invoke"),
            (login, "/auth/login"),
        ] {
            let chosen = wants.rule.and_then(|i| rules.get(i)).map(|r| &r.name);
            let matching = rules.matching("svc", &post, path).map(|r| &r.name);
            assert!(chosen.is_some() && chosen == matching, "{path}");
        }
        assert_eq!(rules.wants("svc", &post, "/users/7"), BodyWants::default());
        assert_eq!(
            rules.wants("svc", &Method::parse("GET"), "/agents/x/invoke"),
            BodyWants::default()
        );
    }
}
