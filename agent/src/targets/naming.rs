//! The default name of a service that was given none: what its first
//! process runs. For an interpreter (Python, Node.js, Java, Ruby, PHP,
//! Perl) that is the program it was given (the module of `python -m`, the
//! script, the jar, the main class), not the interpreter; otherwise the
//! executable's file name. Pure: the argument vector in, a name out.

/// Options of each interpreter that take a value (the program comes after).
fn options_with_values(interpreter: &str) -> &'static [&'static str] {
    match interpreter {
        "python" => &["-W", "-X", "-c"],
        "node" => &["-r", "--require", "--import", "--loader", "-e", "--eval"],
        "java" => &[
            "-cp",
            "-classpath",
            "--class-path",
            "-p",
            "--module-path",
            "--add-modules",
        ],
        "ruby" => &["-I", "-r", "-e", "-C", "-E"],
        "php" => &["-S", "-t", "-c", "-d", "-r"],
        _ => &[],
    }
}

/// Which interpreter `exe` (a file name such as `python3.11`) is.
fn interpreter(exe: &str) -> Option<&'static str> {
    let family = exe.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(match family {
        "python" | "pypy" => "python",
        "node" | "nodejs" | "bun" | "deno" => "node",
        "java" => "java",
        "ruby" => "ruby",
        "php" => "php",
        "perl" => "perl",
        _ => return None,
    })
}

/// The file name of `path` without its extension; a generic entry file
/// (`index.js`, `main.py`, `app.py`, `__main__.py`) by its directory.
fn program_of_path(path: &str) -> String {
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let file = parts.next().unwrap_or(path);
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    if matches!(stem, "index" | "main" | "app" | "server" | "__main__")
        && let Some(dir) = parts.next()
        && dir != "."
        && dir != ".."
    {
        return dir.to_owned();
    }
    stem.to_owned()
}

/// The service name for a process whose executable file is named `exe`,
/// run with `argv` (its command line, `argv[0]` first).
pub fn program_name(exe: &str, argv: &[&str]) -> String {
    let Some(kind) = interpreter(exe) else {
        return exe.to_owned();
    };
    let with_values = options_with_values(kind);
    let mut args = argv.iter().skip(1);
    while let Some(&arg) = args.next() {
        match arg {
            // `python -m uvicorn app:app`: the module (its last part).
            "-m" if kind == "python" => {
                if let Some(module) = args.next() {
                    return module.rsplit('.').next().unwrap_or(module).to_owned();
                }
            }
            // `java -jar app.jar`.
            "-jar" if kind == "java" => {
                if let Some(jar) = args.next() {
                    return program_of_path(jar);
                }
            }
            _ if with_values.contains(&arg) => {
                args.next();
            }
            _ if arg.starts_with('-') => {}
            // A Java main class (`org.example.Main`): its last part.
            _ if kind == "java" && !arg.contains('/') && !arg.ends_with(".java") => {
                return arg.rsplit('.').next().unwrap_or(arg).to_owned();
            }
            _ => return program_of_path(arg),
        }
    }
    exe.to_owned()
}

#[cfg(test)]
mod tests {
    use super::program_name;

    fn name(exe: &str, cmdline: &str) -> String {
        let argv: Vec<&str> = cmdline.split(' ').collect();
        program_name(exe, &argv)
    }

    #[test]
    fn interpreters_are_named_after_what_they_run() {
        assert_eq!(
            name("python3.11", "python3 -m uvicorn app:app --port 8000"),
            "uvicorn"
        );
        assert_eq!(
            name(
                "python3.11",
                "/usr/bin/python3 /usr/local/bin/gunicorn -w 2 app:app"
            ),
            "gunicorn"
        );
        assert_eq!(name("python3", "python3 -u -W ignore worker.py"), "worker");
        assert_eq!(name("python3", "python3 /srv/billing/main.py"), "billing");
        assert_eq!(
            name("python3", "python3 -m celery.bin.celery worker"),
            "celery"
        );
        assert_eq!(
            name("node", "node --require ./otel.js dist/server.js"),
            "dist"
        );
        assert_eq!(name("node", "node /srv/api/index.js"), "api");
        assert_eq!(name("node", "node payments.mjs"), "payments");
        assert_eq!(
            name("java", "java -Xmx1g -jar /opt/orders-1.2.jar"),
            "orders-1.2"
        );
        assert_eq!(
            name(
                "java",
                "java -cp lib/* -Dx=y org.apache.catalina.startup.Bootstrap start"
            ),
            "Bootstrap"
        );
        assert_eq!(name("java", "java JavaServer.java 8080"), "JavaServer");
        assert_eq!(name("ruby3.1", "ruby /usr/bin/puma -p 9292"), "puma");
        assert_eq!(
            name("php8.2", "php -S 127.0.0.1:8080 -t public index.php"),
            "index"
        );
    }

    #[test]
    fn other_executables_keep_their_names() {
        assert_eq!(name("nginx", "nginx: worker process"), "nginx");
        assert_eq!(name("uvicorn", "uvicorn app:app"), "uvicorn");
        assert_eq!(name("pythonista", "pythonista x.py"), "pythonista");
        // An interpreter with nothing to run (a REPL): its own name.
        assert_eq!(name("python3.11", "python3"), "python3.11");
        assert_eq!(name("python3.11", "python3 -c print(1)"), "python3.11");
    }
}
