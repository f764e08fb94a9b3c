//! Reading the smoke script's `loupe-smoke:` lines (from a guest's console
//! or the host run) and judging them against the counts it was asked for.
use std::collections::BTreeMap;

const PREFIX: &str = "loupe-smoke: ";

/// What one place (the host, or a guest kernel) reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub kernel: String,
    /// A guest's uptime when the script started (its boot), in ms.
    pub booted_ms: Option<u64>,
    /// `loupe check` before the runs: key (hook type, ...) -> value.
    pub check: BTreeMap<String, String>,
    pub check_exit: Option<i32>,
    /// `loupe check` after the runs.
    pub check_after: BTreeMap<String, String>,
    /// Data hook mode (or `bare`: timings without loupe) -> its
    /// `key=value` results.
    pub modes: BTreeMap<String, BTreeMap<String, String>>,
    pub done: bool,
}

/// Parses a console or log; lines that are not the script's are ignored
/// (kernel messages, loupe's own log).
pub fn parse(text: &str) -> Report {
    let mut report = Report::default();
    for line in text.lines() {
        let Some(rest) = line
            .trim_end_matches('\r')
            .split_once(PREFIX)
            .map(|(_, r)| r)
        else {
            continue;
        };
        let (word, value) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "kernel" => value.clone_into(&mut report.kernel),
            "booted_ms" => report.booted_ms = value.trim().parse().ok(),
            "check" => insert_check(&mut report.check, value),
            "check-after" => insert_check(&mut report.check_after, value),
            "check-exit" => report.check_exit = value.trim().parse().ok(),
            "mode" => {
                let mut fields = value.split_whitespace();
                if let Some(mode) = fields.next() {
                    let results = fields
                        .filter_map(|f| f.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    report.modes.insert(mode.to_owned(), results);
                }
            }
            "done" => report.done = true,
            _ => {}
        }
    }
    report
}

/// `loupe check` prints `key` padded to 20 columns, then the value.
fn insert_check(map: &mut BTreeMap<String, String>, line: &str) {
    if line.len() > 20 && line.is_char_boundary(20) {
        let (key, value) = line.split_at(20);
        let key = key.trim();
        if !key.is_empty() {
            map.insert(key.to_owned(), value.trim().to_owned());
        }
    }
}

/// What the smoke script was asked to send.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub requests: u32,
    pub idle: u32,
    pub modes: &'a [&'a str],
}

impl Report {
    /// Whether `loupe check` found a hook type (`yes` or `yes (...)`).
    pub fn has(&self, hook: &str) -> bool {
        self.check.get(hook).is_some_and(|v| v.starts_with("yes"))
    }

    /// The data hook `loupe check` says loupe run chooses by default.
    pub fn chosen(&self) -> &str {
        self.check
            .get("loupe probes")
            .and_then(|v| v.split_once("syscalls through "))
            .map_or("?", |(_, hook)| hook.trim_end_matches(')'))
    }

    /// What is wrong if `loupe check` did not run as a build for `arch`.
    pub fn architecture_problem(&self, arch: &str) -> Option<String> {
        match self.check.get("architecture") {
            Some(v) if v.split_whitespace().next() == Some(arch) => None,
            other => Some(format!("architecture: {other:?}, expected {arch}")),
        }
    }

    /// Every way this report differs from what was expected (empty: pass).
    pub fn problems(&self, expected: Expected) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.done {
            problems.push("the smoke script did not finish".to_owned());
        }
        if self.check_exit != Some(0) {
            problems.push(format!("loupe check exited with {:?}", self.check_exit));
        }
        match self.check_after.get("loupe programs") {
            Some(v) if v.starts_with("none") => {}
            other => problems.push(format!("after the runs, loupe programs: {other:?}")),
        }
        let requests = expected.requests.to_string();
        let want: [(&str, String); 10] = [
            ("served", requests.clone()),
            ("requests", requests.clone()),
            ("ok", requests),
            // The one request to the process blocked in accept() before
            // loupe attached.
            ("late", "1".to_owned()),
            ("opened", (expected.requests + expected.idle).to_string()),
            ("active", "0".to_owned()),
            ("unparsed", "0".to_owned()),
            ("lost", "0".to_owned()),
            ("exit", "0".to_owned()),
            ("error", String::new()),
        ];
        for mode in expected.modes {
            let Some(results) = self.modes.get(*mode) else {
                problems.push(format!("{mode}: no result"));
                continue;
            };
            for (key, value) in &want {
                let got = results.get(*key).map_or("", String::as_str);
                if got != value {
                    problems.push(format!("{mode}: {key} = {got:?}, expected {value:?}"));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0-57-cloud-amd64
loupe-smoke: kernel 6.1.0-57-cloud-amd64\r
loupe-smoke: booted_ms 2310
loupe-smoke: check architecture        x86_64 (syscall frame checked against BTF; syscall functions __x64_sys_*)
loupe-smoke: check kprobe              yes
loupe-smoke: check fentry              no: EPERM
loupe-smoke: check loupe probes        yes (30 programs attached and detached; syscalls through syscall tracepoints)
loupe-smoke: check-exit 0
loupe-smoke: mode auto served=3 opened=5 active=0 requests=3 ok=3 late=1 unparsed=0 lost=0 exit=0 exit_ms=400
2026-12-04T18:00:00Z INFO loupe: probes attached
loupe-smoke: mode sys-exit served=3 opened=4 active=1 requests=3 ok=3 late=0 unparsed=0 lost=0 exit=0 exit_ms=400
loupe-smoke: check-after loupe programs      none
loupe-smoke: done
";

    #[test]
    fn reads_the_scripts_lines_only() {
        let report = parse(CONSOLE);
        assert_eq!(report.kernel, "6.1.0-57-cloud-amd64");
        assert_eq!(report.booted_ms, Some(2310));
        assert!(report.has("kprobe"));
        assert!(!report.has("fentry"));
        assert!(!report.has("uprobe"), "absent means no");
        assert_eq!(report.chosen(), "syscall tracepoints");
        assert_eq!(report.check_exit, Some(0));
        assert_eq!(report.modes.len(), 2);
        assert_eq!(report.modes["auto"]["exit_ms"], "400");
        assert!(report.done);
    }

    #[test]
    fn a_build_for_another_architecture_is_named() {
        let report = parse(CONSOLE);
        assert_eq!(report.architecture_problem("x86_64"), None);
        assert_eq!(
            report.architecture_problem("aarch64").as_deref(),
            Some(
                "architecture: Some(\"x86_64 (syscall frame checked against BTF; syscall \
                 functions __x64_sys_*)\"), expected aarch64"
            )
        );
        let none = parse("loupe-smoke: done\n");
        assert!(none.architecture_problem("x86_64").is_some());
    }

    #[test]
    fn names_every_difference() {
        let report = parse(CONSOLE);
        let expected = Expected {
            requests: 3,
            idle: 2,
            modes: &["auto", "sys-exit", "tracepoints"],
        };
        assert_eq!(
            report.problems(expected),
            [
                "sys-exit: late = \"0\", expected \"1\"",
                "sys-exit: opened = \"4\", expected \"5\"",
                "sys-exit: active = \"1\", expected \"0\"",
                "tracepoints: no result",
            ]
        );
        let expected = Expected {
            modes: &["auto"],
            ..expected
        };
        assert!(report.problems(expected).is_empty());
    }

    #[test]
    fn an_unfinished_run_fails() {
        let report = parse("loupe-smoke: mode auto error=not-ready\n");
        let problems = report.problems(Expected {
            requests: 1,
            idle: 0,
            modes: &["auto"],
        });
        assert!(problems.contains(&"the smoke script did not finish".to_owned()));
        assert!(problems.contains(&"loupe check exited with None".to_owned()));
        assert!(problems.iter().any(|p| p.starts_with("after the runs")));
        assert!(problems.contains(&"auto: error = \"not-ready\", expected \"\"".to_owned()));
    }
}
