//! `cargo xtask fuzz`: runs every fuzz target of the parsers
//! (`agent/fuzz`, cargo-fuzz with libFuzzer) for a while.
use std::process::Command;

use crate::sh::{self, root};

pub const TARGETS: &[&str] = &[
    "http_connection",
    "http_heads",
    "probe_records",
    "kernel_texts",
    "rule_bodies",
    "redis_wire",
    "postgres_wire",
    "mysql_wire",
];

pub fn run(seconds: u32) -> anyhow::Result<()> {
    let dir = root().join("agent/fuzz");
    for target in TARGETS {
        sh::run(
            Command::new("cargo")
                .args(["+nightly", "fuzz", "run", "-O", target, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .current_dir(&dir),
        )?;
    }
    Ok(())
}
