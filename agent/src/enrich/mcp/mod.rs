//! MCP (Model Context Protocol) over HTTP: which exchanges carry it, and
//! from one exchange's JSON-RPC messages to the requests it made and how
//! each ended. Pure; the caller counts them on the client or the server
//! side. The streamable HTTP transport posts a message or a batch and
//! answers each request in the response, as JSON or as a
//! `text/event-stream` (whose events may also carry the server's own
//! notifications and requests); a POST of notifications alone is answered
//! `202` with no body.
pub mod jsonrpc;
pub mod sessions;

use serde_json::Value;

use self::jsonrpc::{Message, Outcome, messages};
use crate::{
    enrich::{
        endpoint::Template,
        rules::{body::documents, eval::RuleError},
    },
    protocols::http1::{
        exchange::{BodyBytes, BodyWants},
        head::Method,
    },
};

/// Where a service serves MCP, or calls it (the `[mcp]` section).
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// Request paths (templates) of MCP endpoints.
    pub paths: Vec<Template>,
    /// Paths of the HTTP+SSE transport's event streams (see [`sessions`]).
    pub sse_paths: Vec<Template>,
    /// Bytes kept of each request and answer body.
    pub max_body: usize,
    /// Distinct `tool_name` values per service.
    pub max_tools: usize,
}

impl McpConfig {
    /// Whether a request is an MCP message post.
    pub fn is_mcp(&self, method: &Method, path: &str) -> bool {
        *method == Method::Post && self.paths.iter().any(|t| t.matches_path(path))
    }

    /// Whether a request opens an HTTP+SSE transport's event stream.
    pub fn is_sse(&self, method: &Method, path: &str) -> bool {
        *method == Method::Get && self.sse_paths.iter().any(|t| t.matches_path(path))
    }

    /// The bodies kept of a request: both, for an MCP message post; the
    /// answer's events as they come, for an event stream.
    pub fn wants(&self, method: &Method, path: &str) -> BodyWants {
        if self.is_mcp(method, path) {
            BodyWants {
                request: self.max_body,
                response: self.max_body,
                ..BodyWants::default()
            }
        } else if self.is_sse(method, path) {
            BodyWants {
                response: self.max_body,
                live: true,
                ..BodyWants::default()
            }
        } else {
            BodyWants::default()
        }
    }

    /// Request-line prefixes whose answers the probes copy from their
    /// start, and how many bytes of each: served MCP posts, and the whole
    /// of a served event stream (its events are few and small, and it
    /// may stay open for hours). A stream path that starts with a
    /// template (`/{tenant}/sse`) gets none: `GET /` would copy every
    /// answer whole, and the default copy of each write holds most events.
    pub fn response_prefixes(&self) -> impl Iterator<Item = (String, usize)> + '_ {
        let posts = self
            .paths
            .iter()
            .map(|t| (format!("POST {}", t.literal_prefix()), self.max_body));
        let streams = self
            .sse_paths
            .iter()
            .filter(|t| t.literal_prefix().len() > 1)
            .map(|t| (format!("GET {}", t.literal_prefix()), usize::MAX));
        posts.chain(streams)
    }
}

/// The methods MCP defines (2025-11-25), exported as they are; any other
/// is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// The `method` label of a request's method.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// Longest tool name exported; longer ones are cut.
const MAX_TOOL_LEN: usize = 64;

/// How one request ended, as the `status` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A JSON-RPC error answer.
    Error,
    /// The tool ran and reported failure (`isError: true`).
    ToolError,
    /// No answer to it was seen: the exchange failed at the HTTP level,
    /// ended early, or its answer was not captured.
    Unanswered,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::ToolError => "tool_error",
            Self::Unanswered => "unanswered",
        }
    }
}

/// One request of an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// For `tools/call`: the tool, printable and bounded in length.
    pub tool: Option<String>,
    pub status: Status,
    /// For an error answer: its JSON-RPC error code, if it gave one.
    pub error_code: Option<i64>,
}

/// What one MCP exchange says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub calls: Vec<Call>,
    /// Why a body could not be read (in full).
    pub unread: Option<RuleError>,
}

/// The requests of an MCP message post and how each ended: each is
/// matched by id with a response in the answer (a JSON body, a batch, or
/// an event of the stream); an answer with a `null` id answers a post of
/// one request. Notifications and responses the client posts are not
/// requests and are not counted.
pub fn read_exchange(
    request: Option<&BodyBytes>,
    response: Option<&BodyBytes>,
    limit: usize,
) -> Read {
    let (requests, request_err) = requests(request, limit);
    let (answered, response_err) = read_messages(response, limit);
    let outcome_of = |wanted: &Value| {
        answered.iter().find_map(|m| match m {
            Message::Response { id, outcome } if id == wanted => Some(*outcome),
            _ => None,
        })
    };
    let alone = requests.len() == 1;
    let mut read = Read {
        calls: Vec::with_capacity(requests.len()),
        unread: request_err,
    };
    for request in requests {
        let outcome =
            outcome_of(&request.id).or_else(|| outcome_of(&Value::Null).filter(|_| alone));
        read.calls.push(request.call.ended(outcome));
    }
    // A cut answer matters only where it left a request unanswered.
    if read.calls.iter().any(|c| c.status == Status::Unanswered) {
        read.unread = read.unread.or(response_err);
    }
    read
}

/// A request of a post: its id, and its call while no answer is known.
pub struct Posted {
    pub id: Value,
    pub call: Call,
}

/// The requests a post's body holds (its notifications and responses are
/// not requests), and why it could not be read in full.
pub fn requests(body: Option<&BodyBytes>, limit: usize) -> (Vec<Posted>, Option<RuleError>) {
    let (sent, err) = read_messages(body, limit);
    let posted = sent
        .into_iter()
        .filter_map(|m| match m {
            Message::Request { id, method, tool } => Some(Posted {
                id,
                call: Call {
                    method: method_label(&method),
                    tool: tool.map(|t| {
                        t.chars()
                            .filter(|c| !c.is_control())
                            .take(MAX_TOOL_LEN)
                            .collect()
                    }),
                    status: Status::Unanswered,
                    error_code: None,
                },
            }),
            _ => None,
        })
        .collect();
    (posted, err)
}

impl Call {
    /// The call as its answer (none: not seen) ended it.
    #[must_use]
    pub fn ended(mut self, outcome: Option<Outcome>) -> Self {
        (self.status, self.error_code) = match outcome {
            Some(Outcome::Ok) => (Status::Ok, None),
            Some(Outcome::Error(code)) => (Status::Error, code),
            Some(Outcome::ToolError) => (Status::ToolError, None),
            None => (Status::Unanswered, None),
        };
        self
    }
}

/// The messages of a body, and why it could not be read in full.
fn read_messages(body: Option<&BodyBytes>, limit: usize) -> (Vec<Message>, Option<RuleError>) {
    match body {
        None => (Vec::new(), Some(RuleError::NotCaptured)),
        Some(body) => {
            let (docs, err) = documents(body, limit);
            (messages(&docs), err)
        }
    }
}

#[cfg(test)]
mod tests;
