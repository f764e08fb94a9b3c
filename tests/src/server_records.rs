//! What the servers themselves record about the statements and commands
//! they ran: the ground truth that client-library tests compare loupe's
//! counts with. PostgreSQL's statement log (`log_statement = all` for a
//! login role of the test's own, on the shared cluster), MariaDB's general
//! log (as a table), Redis's `INFO commandstats`.
use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    process::Command,
    sync::{Mutex, MutexGuard},
};

/// `(query_type or operation, status) -> count`, status `ok` or `error`.
pub type Counts = BTreeMap<(String, String), f64>;

/// The leading keyword of `sql`, lower case, as loupe's `query_type`
/// names it (`start` is `begin`, `end` is `commit`).
pub fn leading_keyword(sql: &str) -> String {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    match word.as_str() {
        "start" => "begin".to_owned(),
        "end" => "commit".to_owned(),
        _ => word,
    }
}

fn add(counts: &mut Counts, kind: &str, error: bool, n: f64) {
    let status = if error { "error" } else { "ok" };
    *counts
        .entry((kind.to_owned(), status.to_owned()))
        .or_insert(0.0) += n;
}

fn output(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The statements of one login role, from the shared PostgreSQL cluster's
/// log, since [`PostgresLog::role`] was called.
pub struct PostgresLog {
    path: PathBuf,
    offset: u64,
    role: String,
}

impl PostgresLog {
    /// Creates (once) the login role `name` (password: its name, loopback
    /// only, this machine's test cluster) whose statements the server
    /// logs; returns the log and `host:port/database` to connect to.
    pub fn role(name: &str) -> (Self, String) {
        let url = std::env::var("LOUPE_TEST_DATABASE_URL")
            .expect("LOUPE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`");
        let address = url.rsplit_once('@').expect("user@host in the URL").1;
        let database = address.rsplit_once('/').expect("a database").1;
        output(Command::new("runuser").args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-tAc",
            &format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN \
                 CREATE ROLE {name} LOGIN PASSWORD '{name}'; END IF; END$$; \
                 ALTER ROLE {name} SET log_statement = 'all'; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {name}"
            ),
        ]));
        // Debian's clusters log to the file `pg_lsclusters` names.
        let port = address.split(['/', ':']).nth(1).expect("a port");
        let clusters = output(Command::new("pg_lsclusters").arg("-h"));
        let path = clusters
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.get(2) == Some(&port))
            .and_then(|fields| fields.get(6).map(PathBuf::from))
            .expect("the cluster's log file");
        let offset = fs::metadata(&path).expect("the log file").len();
        let log = Self {
            path,
            offset,
            role: name.to_owned(),
        };
        (log, address.to_owned())
    }

    /// Every statement the role's sessions ran since, by type and status:
    /// `statement:` (simple query) and `execute NAME:` lines, and errors
    /// (`ERROR:` then `STATEMENT:`) of a statement logged just before, or
    /// of one that failed before it was logged (at parse or bind).
    pub fn statements(&self) -> Counts {
        let text = fs::read(&self.path).expect("read the log");
        let text = String::from_utf8_lossy(&text[self.offset as usize..]);
        let marker = format!(" {}@", self.role);
        let mut logged: BTreeMap<&str, Backend> = BTreeMap::new();
        for line in text.lines() {
            let Some(at) = line.find(&marker) else {
                continue;
            };
            let pid = line[..at].rsplit('[').next().unwrap_or("");
            let rest = line[at + marker.len()..]
                .split_once(' ')
                .map_or("", |(_, r)| r);
            let Backend {
                statements,
                last,
                failed,
            } = logged.entry(pid).or_default();
            if let Some(sql) = rest.strip_prefix("LOG:  statement: ").or_else(|| {
                rest.strip_prefix("LOG:  execute ")
                    .and_then(|r| r.split_once(": ").map(|(_, sql)| sql))
            }) {
                statements.push((leading_keyword(sql), false));
                *last = Some(sql.to_owned());
            } else if rest.starts_with("ERROR:  ") {
                *failed = true;
            } else if let Some(sql) = rest.strip_prefix("STATEMENT:  ")
                && std::mem::take(failed)
            {
                if last.as_deref() == Some(sql) {
                    statements.last_mut().expect("logged").1 = true;
                } else {
                    statements.push((leading_keyword(sql), true));
                }
                *last = None;
            }
        }
        let mut counts = Counts::new();
        for (kind, error) in logged.into_values().flat_map(|b| b.statements) {
            add(&mut counts, &kind, error, 1.0);
        }
        counts
    }
}

/// What the log says of one backend (session) so far.
#[derive(Default)]
struct Backend {
    /// Statement types, and whether each failed.
    statements: Vec<(String, bool)>,
    /// The text of the statement logged last.
    last: Option<String>,
    /// An `ERROR:` whose `STATEMENT:` line comes next.
    failed: bool,
}

/// One MariaDB general log at a time: it is a server-wide switch.
static GENERAL_LOG: Mutex<()> = Mutex::new(());

/// MariaDB's general log, on (as the table `mysql.general_log`) while this
/// lives.
pub struct MariadbGeneralLog {
    since: String,
    _only: MutexGuard<'static, ()>,
}

fn mariadb(sql: &str) -> String {
    output(Command::new("mariadb").args(["-N", "-B", "-e", sql]))
}

impl MariadbGeneralLog {
    pub fn start() -> Self {
        let only = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
        let since =
            mariadb("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1; SELECT NOW(6)");
        Self {
            since: since.trim().to_owned(),
            _only: only,
        }
    }

    /// The statements (`Query` and `Execute` commands) of `user`'s
    /// sessions since, by type, all `ok`: the log does not say which
    /// failed (the caller moves those the client saw fail).
    pub fn statements(&self, user: &str) -> Counts {
        let rows = mariadb(&format!(
            "SELECT argument FROM mysql.general_log WHERE event_time >= '{since}' \
             AND command_type IN ('Query', 'Execute') AND thread_id IN \
             (SELECT thread_id FROM mysql.general_log WHERE event_time >= '{since}' \
             AND command_type = 'Connect' AND argument LIKE '{user}@%')",
            since = self.since
        ));
        let mut counts = Counts::new();
        for sql in rows.lines() {
            add(&mut counts, &leading_keyword(sql), false, 1.0);
        }
        counts
    }
}

impl Drop for MariadbGeneralLog {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-e", "SET GLOBAL general_log = 0"])
            .status();
    }
}

/// What [`redis_commandstats`] files commands under that the server did not
/// recognise (it answers them with an error but keeps no stats by name).
pub const UNRECOGNISED: &str = "(unrecognised)";

/// The commands a Redis server ran, from `INFO commandstats`: calls by
/// command, those that failed as `error` (the `INFO` asking is not yet
/// among them); error replies to commands the server did not recognise
/// (a subcommand newer than the server), from `INFO stats`, as
/// [`UNRECOGNISED`].
pub fn redis_commandstats(port: u16) -> Counts {
    let info = |section: &str| {
        output(Command::new("redis-cli").args(["-p", &port.to_string(), "info", section]))
    };
    let commands = info("commandstats");
    let error_replies: f64 = info("stats")
        .lines()
        .find_map(|l| l.strip_prefix("total_error_replies:"))
        .map_or(0.0, |v| v.trim().parse().expect("a number"));
    let mut counts = Counts::new();
    for line in commands.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let stat = |key: &str| -> f64 {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .map_or(0.0, |v| v.trim().parse().expect("a number"))
        };
        // `calls` includes the failed ones, not the rejected ones.
        let failed = stat("failed_calls");
        add(&mut counts, name, false, stat("calls") - failed);
        let errors = failed + stat("rejected_calls");
        if errors > 0.0 {
            add(&mut counts, name, true, errors);
        }
    }
    let attributed: f64 = counts
        .iter()
        .filter(|((_, status), _)| status == "error")
        .map(|(_, n)| n)
        .sum();
    if error_replies > attributed {
        add(&mut counts, UNRECOGNISED, true, error_replies - attributed);
    }
    counts
}

/// Moves `errors` (kinds a client saw fail, one each) from `ok` to
/// `error` in `counts`.
pub fn with_errors(mut counts: Counts, errors: &[String]) -> Counts {
    for kind in errors {
        add(&mut counts, kind, false, -1.0);
        add(&mut counts, kind, true, 1.0);
    }
    counts.retain(|_, n| *n != 0.0);
    counts
}
