//! `cargo xtask services`: start PostgreSQL, MariaDB and Redis when they
//! are not running (a fresh machine runs none of them).
use std::{fs, process::Command};

use anyhow::Context as _;

use crate::sh::{self, port_open, wait_port};

pub const POSTGRES_PORT: u16 = 5432;
pub const REDIS_PORT: u16 = 6379;
pub const MARIADB_PORT: u16 = 3306;

pub fn start() -> anyhow::Result<()> {
    postgres()?;
    mariadb()?;
    redis()
}

pub fn run() -> anyhow::Result<()> {
    start()?;
    eprintln!(
        "services: PostgreSQL on {POSTGRES_PORT}, MariaDB on {MARIADB_PORT}, Redis on {REDIS_PORT}"
    );
    Ok(())
}

fn mariadb() -> anyhow::Result<()> {
    if !port_open(MARIADB_PORT) {
        sh::run(Command::new("/etc/init.d/mariadb").arg("start"))
            .context("cannot start MariaDB (cargo xtask setup installs it)")?;
        wait_port(MARIADB_PORT, 30, "MariaDB")?;
    }
    Ok(())
}

/// Creates the demo user and database if MariaDB runs; returns its URL.
pub fn demo_mariadb() -> Option<String> {
    if !port_open(MARIADB_PORT) {
        return None;
    }
    sh::output(Command::new("mariadb").args([
        "-e",
        &format!(
            "CREATE DATABASE IF NOT EXISTS {DEMO_ROLE}; \
             CREATE USER IF NOT EXISTS '{DEMO_ROLE}'@'127.0.0.1' IDENTIFIED BY '{DEMO_ROLE}'; \
             GRANT ALL ON {DEMO_ROLE}.* TO '{DEMO_ROLE}'@'127.0.0.1'"
        ),
    ]))?;
    Some(format!(
        "mysql://{DEMO_ROLE}:{DEMO_ROLE}@127.0.0.1:{MARIADB_PORT}/{DEMO_ROLE}"
    ))
}

fn postgres() -> anyhow::Result<()> {
    if port_open(POSTGRES_PORT) {
        return postgres_plaintext();
    }
    let version = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed; run `cargo xtask setup`")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .context("no PostgreSQL version in /usr/lib/postgresql")?;
    let clusters = sh::output(Command::new("pg_lsclusters").arg("-h")).unwrap_or_default();
    if !clusters
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("main"))
    {
        sh::run(Command::new("pg_createcluster").args([&version, "main"]))?;
    }
    sh::run(Command::new("pg_ctlcluster").args([&version, "main", "start"]))?;
    wait_port(POSTGRES_PORT, 30, "PostgreSQL")?;
    postgres_plaintext()
}

/// Debian's cluster has `ssl = on`, and libpq and asyncpg prefer TLS: the
/// test cluster talks plaintext, so that its wire can be read (a client's
/// SSLRequest is then refused with `N`). TLS to the database belongs to the
/// TLS uprobes.
fn postgres_plaintext() -> anyhow::Result<()> {
    let psql = |sql: &str| {
        sh::output(Command::new("runuser").args(["-u", "postgres", "--", "psql", "-tAc", sql]))
    };
    if psql("SHOW ssl").is_some_and(|v| v.trim() == "on") {
        psql("ALTER SYSTEM SET ssl = off").context("cannot turn PostgreSQL's ssl off")?;
        psql("SELECT pg_reload_conf()").context("cannot reload PostgreSQL")?;
    }
    Ok(())
}

fn redis() -> anyhow::Result<()> {
    if port_open(REDIS_PORT) {
        return Ok(());
    }
    sh::run(Command::new("redis-server").args([
        "--daemonize",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        "127.0.0.1",
        "--port",
        &REDIS_PORT.to_string(),
    ]))?;
    wait_port(REDIS_PORT, 10, "Redis")
}

/// Local-only credentials of the demo database (not a secret: the role can
/// only log in over loopback on this machine).
const DEMO_ROLE: &str = "loupe_demo";

/// Creates the demo role and database if PostgreSQL runs; returns its URL.
pub fn demo_database() -> Option<String> {
    if !port_open(POSTGRES_PORT) {
        return None;
    }
    let psql = |sql: &str| {
        sh::output(Command::new("runuser").args(["-u", "postgres", "--", "psql", "-tAc", sql]))
    };
    let exists = psql(&format!(
        "SELECT 1 FROM pg_roles WHERE rolname = '{DEMO_ROLE}'"
    ))?;
    if exists.trim() != "1" {
        psql(&format!(
            "CREATE ROLE {DEMO_ROLE} LOGIN PASSWORD '{DEMO_ROLE}'"
        ))?;
        psql(&format!("CREATE DATABASE {DEMO_ROLE} OWNER {DEMO_ROLE}"))?;
    }
    Some(format!(
        "postgresql://{DEMO_ROLE}:{DEMO_ROLE}@127.0.0.1:{POSTGRES_PORT}/{DEMO_ROLE}"
    ))
}
