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
    "table",
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

/// The databases loupe reads the wire of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbSystem {
    Postgres,
    Mysql,
}

impl DbSystem {
    pub const ALL: [Self; 2] = [Self::Postgres, Self::Mysql];

    /// The `db_system` label (OpenTelemetry's names).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::Mysql => "mysql",
        }
    }
}

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
    // Past whitespace, comments and opening parentheses.
    let mut i = 0;
    loop {
        while sql.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match comment_end(sql, i) {
            Some(end) => i = end,
            None if sql.get(i) == Some(&b'(') => i += 1,
            None => break,
        }
    }
    let rest = &sql[i..];
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

/// Statements typed per text of one simple query, at most.
pub const MAX_TYPED: usize = 32;

/// The leading keyword of each statement of `sql`, a query that may hold
/// several separated by `;` (PostgreSQL's simple protocol runs them in
/// turn). Semicolons inside quotes, quoted identifiers, dollar quotes and
/// comments do not separate; empty statements are skipped, as the server
/// skips them. `complete`: `sql` is the whole text; when it is only a
/// start, the unterminated last statement is left out (its keyword may be
/// cut). At most [`MAX_TYPED`].
pub fn statement_types(sql: &[u8], complete: bool) -> Vec<&'static str> {
    let mut types = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |piece: &[u8], types: &mut Vec<&'static str>| {
        if types.len() < MAX_TYPED && !is_blank(piece) {
            types.push(query_type(piece));
        }
    };
    while i < sql.len() {
        if let Some(end) = comment_end(sql, i) {
            i = end;
            continue;
        }
        i = match sql[i] {
            b';' => {
                push(&sql[start..i], &mut types);
                start = i + 1;
                i + 1
            }
            b'\'' => {
                // E'..' strings escape with a backslash.
                let escapes = i > 0 && sql[i - 1].eq_ignore_ascii_case(&b'e');
                skip_quoted(sql, i + 1, b'\'', escapes)
            }
            b'"' => skip_quoted(sql, i + 1, b'"', false),
            b'$' => skip_dollar(sql, i),
            _ => i + 1,
        };
    }
    if complete {
        push(&sql[start..], &mut types);
    }
    types
}

/// Only whitespace and comments.
fn is_blank(sql: &[u8]) -> bool {
    let mut i = 0;
    while i < sql.len() {
        i = match comment_end(sql, i) {
            Some(end) => end,
            None if sql[i].is_ascii_whitespace() => i + 1,
            None => return false,
        };
    }
    true
}

/// Where the comment starting at `i` ends (`--` to the end of its line,
/// `/* */` nested as PostgreSQL nests them), if one starts there.
fn comment_end(sql: &[u8], i: usize) -> Option<usize> {
    match sql.get(i..i + 2)? {
        b"--" => Some(
            sql[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(sql.len(), |n| i + n + 1),
        ),
        b"/*" => Some(skip_comment(sql, i + 2)),
        _ => None,
    }
}

/// Past the closing `quote` of a string or identifier opened before
/// `from` (a doubled quote stays inside).
fn skip_quoted(sql: &[u8], from: usize, quote: u8, escapes: bool) -> usize {
    let mut i = from;
    while i < sql.len() {
        match sql[i] {
            b'\\' if escapes => i += 2,
            b if b == quote && sql.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    sql.len()
}

/// Past the end of a block comment opened before `from` (PostgreSQL's
/// nest).
fn skip_comment(sql: &[u8], from: usize) -> usize {
    let mut depth = 1;
    let mut i = from;
    while i < sql.len() {
        if sql[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else if sql[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    sql.len()
}

/// Past a dollar-quoted string starting at `at` (`$tag$ ... $tag$`), or
/// one byte on when `$` does not open one (`$1`, a name with `$`).
fn skip_dollar(sql: &[u8], at: usize) -> usize {
    let tag_end = sql[at + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map(|n| at + 1 + n);
    let after_word = at > 0 && (sql[at - 1].is_ascii_alphanumeric() || sql[at - 1] == b'_');
    match tag_end {
        Some(end)
            if sql[end] == b'$'
                && !after_word
                && !sql[at + 1..end].first().is_some_and(u8::is_ascii_digit) =>
        {
            let tag = &sql[at..=end];
            sql[end + 1..]
                .windows(tag.len())
                .position(|w| w == tag)
                .map_or(sql.len(), |n| end + 1 + n + tag.len())
        }
        _ => at + 1,
    }
}

/// The [`Protocol`](crate::protocols::Protocol) of a database connection
/// parser (`$conn`, of `$system`), from its methods: `on_tx` (commands the
/// service wrote), `on_rx` (answers it read; a long read's last bytes help
/// to resynchronise), `on_close`, `is_parsing`, `is_busy`, `is_encrypted`
/// and `buffered`.
macro_rules! database_protocol {
    ($conn:ty, $system:expr) => {
        impl $crate::protocols::Protocol for $conn {
            fn on_bytes(
                &mut self,
                dir: $crate::protocols::Direction,
                bytes: &$crate::protocols::Transfer<'_>,
                _context: &$crate::protocols::Context<'_>,
                sink: &mut dyn $crate::protocols::Sink,
            ) {
                let mut found = |statement| {
                    sink.observe($crate::protocols::Observation::Statement {
                        system: $system,
                        statement,
                    })
                };
                match dir {
                    $crate::protocols::Direction::Sent => {
                        self.on_tx(bytes.ts, bytes.head, bytes.len)
                    }
                    $crate::protocols::Direction::Received => {
                        self.on_rx(bytes.ts, bytes.head, bytes.len, false, &mut found);
                        if !bytes.tail.is_empty() {
                            self.on_rx(bytes.ts, bytes.tail, bytes.len, true, &mut found);
                        }
                    }
                }
            }

            fn on_close(&mut self, ts: u64, sink: &mut dyn $crate::protocols::Sink) {
                <$conn>::on_close(self, ts, &mut |statement| {
                    sink.observe($crate::protocols::Observation::Statement {
                        system: $system,
                        statement,
                    })
                });
            }

            fn is_parsing(&self) -> bool {
                <$conn>::is_parsing(self)
            }

            fn pool(&self) -> Option<$crate::protocols::PoolUse> {
                Some($crate::protocols::PoolUse {
                    pool: $crate::protocols::Pool::Db($system),
                    busy: self.is_busy(),
                    encrypted: self.is_encrypted(),
                })
            }

            fn buffered(&self) -> usize {
                <$conn>::buffered(self)
            }
        }
    };
}
pub(crate) use database_protocol;

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

    #[test]
    fn statements_of_one_query() {
        let types = |sql: &str| statement_types(sql.as_bytes(), true);
        assert_eq!(
            types("TABLE t; WITH a AS (SELECT 1) SELECT * FROM a"),
            ["table", "with"]
        );
        assert_eq!(
            types("select ';'; insert into t values ('a;''b')"),
            ["select", "insert"]
        );
        assert_eq!(
            types(r"select E'\';' ; update t set x = 1"),
            ["select", "update"]
        );
        assert_eq!(
            types(r#"select 1 as "a;b"; delete from t"#),
            ["select", "delete"]
        );
        assert_eq!(
            types(
                "create function f() returns int as $body$ select 1; $body$ language sql; select f()"
            ),
            ["create", "select"]
        );
        assert_eq!(
            types("select $1; select a$b; commit"),
            ["select", "select", "commit"]
        );
        assert_eq!(
            types("-- a;\nselect 1; /* b; /* c; */ d; */ begin"),
            ["select", "begin"]
        );
        assert_eq!(types(" ; ;select 1;; "), ["select"]);
        assert_eq!(types(""), Vec::<&str>::new());
        assert_eq!(
            statement_types(b"select 1; insert into t val", false),
            ["select"]
        );
        assert_eq!(
            statement_types(b"select 'never closed; x", true),
            ["select"]
        );
        let many = "select 1;".repeat(100);
        assert_eq!(types(&many).len(), MAX_TYPED);
    }
}
