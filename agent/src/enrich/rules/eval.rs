//! Applying a matched rule to one finished exchange. Pure: it reads the
//! named fields and nothing else; what it could not read is listed in
//! [`Observation::errors`] and never stops the rest.
use serde_json::Value;

pub use super::error::RuleError;
use super::{
    Family, FieldPath, LabelSource, Rule, Semantic, Side, Source, Tokens, body::documents,
};
use crate::protocols::http1::exchange::{BodyBytes, Exchange};

/// Longest label value taken from request data.
const MAX_VALUE_LEN: usize = 64;
/// Subject value when a source yields nothing and has no default.
pub const UNKNOWN: &str = "unknown";

/// What one exchange says for a rule's family.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub family: Family,
    /// Value of the family's subject label (unbounded yet: the caller
    /// applies the label budget).
    pub subject: String,
    pub success: bool,
    pub seconds: f64,
    /// For failed logins and refreshes.
    pub failure_reason: Option<String>,
    /// `(token_type, count)`.
    pub tokens: Vec<(String, u64)>,
    pub errors: Vec<RuleError>,
}

/// The parsed bodies of one exchange, decoded on first use.
struct Bodies<'a> {
    exchange: &'a Exchange,
    limit: usize,
    request: Option<Result<Vec<Value>, RuleError>>,
    response: Option<Result<Vec<Value>, RuleError>>,
    errors: Vec<RuleError>,
}

impl<'a> Bodies<'a> {
    fn docs(&mut self, side: Side) -> Result<&[Value], RuleError> {
        let (slot, body) = match side {
            Side::Request => (&mut self.request, &self.exchange.request_body),
            Side::Response => (&mut self.response, &self.exchange.response_body),
        };
        let limit = self.limit;
        let errors = &mut self.errors;
        let decoded = slot.get_or_insert_with(|| decode(body.as_ref(), limit, errors));
        decoded.as_deref().map_err(|e| *e)
    }

    /// Whether `side` had a body that was read: only then is a missing
    /// field an error (a request or response without a body has none).
    fn read_some(&mut self, side: Side) -> bool {
        self.docs(side).is_ok_and(|docs| !docs.is_empty())
    }

    fn error(&mut self, err: RuleError) {
        if !self.errors.contains(&err) {
            self.errors.push(err);
        }
    }

    /// The last document's value at `path` (streams repeat fields; the
    /// latest is the most complete).
    fn field(&mut self, side: Side, path: &FieldPath) -> Option<Value> {
        match self.docs(side) {
            Ok(docs) => docs.iter().rev().find_map(|d| path.get(d)).cloned(),
            Err(err) => {
                self.error(err);
                None
            }
        }
    }

    fn text(&mut self, rule: &Rule, source: &LabelSource) -> Option<String> {
        let value = match &source.source {
            Source::Path(name) => rule
                .route
                .captures(&self.exchange.path)
                .and_then(|c| c.into_iter().find(|(n, _)| n == name))
                .map(|(_, v)| v.to_owned()),
            Source::Value(value) => Some(value.clone()),
            Source::Header(name) => self
                .exchange
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
            Source::Body(side, path) => match self.field(*side, path) {
                Some(Value::String(text)) => Some(text),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(_) | None => {
                    // A missing field with a default is expected, not an error.
                    if source.fallback.is_none() && self.read_some(*side) {
                        self.error(RuleError::MissingField);
                    }
                    None
                }
            },
        };
        value
            .filter(|v| !v.is_empty())
            .map(|v| clean(&v))
            .or_else(|| source.fallback.clone())
    }
}

fn decode(
    body: Option<&BodyBytes>,
    limit: usize,
    errors: &mut Vec<RuleError>,
) -> Result<Vec<Value>, RuleError> {
    let body = body.ok_or(RuleError::NotCaptured)?;
    let (docs, err) = documents(body, limit);
    match err {
        Some(err) if docs.is_empty() => Err(err),
        Some(err) => {
            errors.push(err);
            Ok(docs)
        }
        None => Ok(docs),
    }
}

/// A label value: printable, bounded.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE_LEN)
        .collect()
}

fn truthy(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "success" | "ok" | "succeeded" | "1" => Some(true),
        "false" | "error" | "failed" | "failure" | "0" => Some(false),
        _ => None,
    }
}

/// The token type a usage field stands for (`None`: not a token count).
/// The token type of a usage field `X_tokens`, named as the built-in
/// providers name them (`enrich::llm`).
fn token_type(key: &str) -> Option<&str> {
    match key.strip_suffix("_tokens")? {
        "prompt" => Some("input"),
        "completion" => Some("output"),
        "cache_read_input" => Some("cache_read"),
        "cache_creation_input" => Some("cache_creation"),
        "total" | "" => None,
        other => Some(other),
    }
}

/// A token count: a non-negative integer (written as one, or as a float
/// without a fraction).
pub fn count(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

/// Token counts found in usage objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `(token type, count)`, each type once, in order of appearance.
    pub tokens: Vec<(String, u64)>,
    /// Some document had a usage object.
    pub found: bool,
    /// A usage field was neither a count nor an object.
    pub bad: bool,
}

impl Usage {
    /// Sets the count of token type `kind` (a later value wins).
    pub fn set(&mut self, kind: &str, n: u64) {
        match self.tokens.iter_mut().find(|(k, _)| k == kind) {
            Some(slot) => slot.1 = n,
            None => self.tokens.push((kind.to_owned(), n)),
        }
    }

    /// Reads `docs` in order, each through the first of `paths` that
    /// resolves to an object: every numeric field `X_tokens` is token type
    /// `X`, and later documents (a stream's events) override earlier ones.
    pub fn read(&mut self, docs: &[Value], paths: &[&FieldPath]) {
        for doc in docs {
            let Some(usage) = paths
                .iter()
                .find_map(|path| path.get(doc).and_then(Value::as_object))
            else {
                continue;
            };
            self.found = true;
            for (key, value) in usage {
                let Some(kind) = token_type(key) else {
                    continue;
                };
                match count(value) {
                    Some(n) => self.set(kind, n),
                    None if value.is_object() => {} // e.g. details
                    None => self.bad = true,
                }
            }
        }
    }
}

impl Bodies<'_> {
    fn tokens(&mut self, tokens: &Tokens) -> Vec<(String, u64)> {
        let mut usage = Usage::default();
        match tokens {
            Tokens::Objects(paths) => {
                let mut sides: Vec<Side> = paths.iter().map(|(s, _)| *s).collect();
                sides.dedup();
                for side in sides {
                    let Ok(docs) = self.docs(side) else {
                        continue;
                    };
                    let side_paths: Vec<&FieldPath> = paths
                        .iter()
                        .filter(|(s, _)| *s == side)
                        .map(|(_, path)| path)
                        .collect();
                    usage.read(docs, &side_paths);
                }
                if !usage.found {
                    let side = paths.first().map_or(Side::Response, |(s, _)| *s);
                    match self.docs(side) {
                        Ok([]) => {}
                        Ok(_) => self.error(RuleError::MissingField),
                        Err(err) => self.error(err),
                    }
                }
            }
            Tokens::Fields(fields) => {
                for (kind, side, path) in fields {
                    match self.field(*side, path) {
                        Some(value) => match count(&value) {
                            Some(n) => usage.set(kind, n),
                            None => usage.bad = true,
                        },
                        None if self.read_some(*side) => self.error(RuleError::MissingField),
                        None => {}
                    }
                }
            }
        }
        if usage.bad {
            self.error(RuleError::NotNumeric);
        }
        usage.tokens.retain(|(_, n)| *n > 0);
        usage.tokens
    }
}

/// Applies `rule` (which matched `exchange`) and says what to record.
pub fn evaluate(rule: &Rule, semantic: &Semantic, exchange: &Exchange) -> Observation {
    let mut bodies = Bodies {
        exchange,
        limit: semantic.max_body,
        request: None,
        response: None,
        errors: Vec::new(),
    };
    let subject = bodies
        .text(rule, &rule.subject)
        .unwrap_or_else(|| UNKNOWN.to_owned());
    let by_status = exchange.status.is_some_and(|s| (200..300).contains(&s));
    let success = match &rule.success {
        Some(source) => bodies
            .text(rule, source)
            .and_then(|v| truthy(&v))
            .unwrap_or(by_status),
        None => by_status,
    };
    let failure_reason = (rule.family.is_auth() && !success).then(|| {
        let from_body = semantic
            .failure_reason
            .as_ref()
            .and_then(|source| bodies.text(rule, source))
            .filter(|reason| semantic.failure_reasons.contains(reason));
        from_body
            .or_else(|| {
                exchange
                    .status
                    .and_then(|s| semantic.failure_statuses.get(&s).cloned())
            })
            .unwrap_or_else(|| "other".to_owned())
    });
    // Failed runs report no usage (an error body has none to read).
    let tokens = match &rule.tokens {
        Some(tokens) if rule.family == Family::Agent && success => bodies.tokens(tokens),
        _ => Vec::new(),
    };
    Observation {
        family: rule.family,
        subject,
        success,
        seconds: exchange.end_ns.saturating_sub(exchange.start_ns) as f64 / 1e9,
        failure_reason,
        tokens,
        errors: bodies.errors,
    }
}

#[cfg(test)]
mod tests;
