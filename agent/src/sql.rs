//! The `query_type` label: a statement's leading keyword from a fixed set,
//! so that arbitrary SQL cannot grow the label set (and no SQL text, with
//! its literals, ever leaves the agent).

/// Keywords with their own `query_type` value.
const KEYWORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "with",
    "values",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "savepoint",
    "release",
    "prepare",
    "execute",
    "deallocate",
    "set",
    "show",
    "reset",
    "discard",
    "copy",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "revoke",
    "explain",
    "analyze",
    "vacuum",
    "listen",
    "unlisten",
    "notify",
    "lock",
    "call",
    "do",
    "fetch",
    "close",
    "declare",
    "replace",
    "use",
];

pub const OTHER: &str = "other";

/// One statement a client ran and its answer (any database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub query_type: &'static str,
    /// When the statement was written.
    pub start_ns: u64,
    /// When its completion was read.
    pub end_ns: u64,
    pub error: bool,
}
/// A statement prepared before loupe was watching.
pub const UNKNOWN: &str = "unknown";

/// The leading keyword of `sql`, after whitespace, comments and opening
/// parentheses; `start` (transaction) is reported as `begin`, `end` as
/// `commit`.
pub fn query_type(sql: &[u8]) -> &'static str {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_ascii_start();
        if let Some(after) = trimmed.strip_prefix(b"--") {
            let end = after
                .iter()
                .position(|&b| b == b'\n')
                .map_or(after.len(), |i| i + 1);
            rest = &after[end..];
        } else if let Some(after) = trimmed.strip_prefix(b"/*") {
            let end = after
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(after.len(), |i| i + 2);
            rest = &after[end..];
        } else if let Some(after) = trimmed.strip_prefix(b"(") {
            rest = after;
        } else {
            rest = trimmed;
            break;
        }
    }
    let word_len = rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = &rest[..word_len];
    match KEYWORDS
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(word))
    {
        Some(&"start") => "begin",
        Some(&"end") => "commit",
        Some(keyword) => keyword,
        None => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_keywords() {
        assert_eq!(query_type(b"SELECT 1"), "select");
        assert_eq!(
            query_type(b"  -- hi\n /* a */ (select 1) union (select 2)"),
            "select"
        );
        assert_eq!(query_type(b"insert into t values (1)"), "insert");
        assert_eq!(query_type(b"START TRANSACTION"), "begin");
        assert_eq!(query_type(b"END"), "commit");
        assert_eq!(query_type(b"selectx"), OTHER);
        assert_eq!(query_type(b""), OTHER);
        assert_eq!(query_type(b"/* never closed"), OTHER);
    }
}
