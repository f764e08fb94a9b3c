//! `cargo xtask fuzz`: runs every fuzz target of the parsers
//! (`agent/fuzz`, cargo-fuzz with libFuzzer) for a while, starting from the
//! committed seeds (`agent/fuzz/seeds`, also replayed by a unit test).

use crate::sh::{self, root};

pub const TARGETS: &[&str] = &[
    "http_connection",
    "http_heads",
    "probe_records",
    "kernel_texts",
    "rule_bodies",
    "event_stream",
    "mcp_messages",
    "sse_sessions",
    "web_config",
    "endpoint_requests",
    "redis_wire",
    "postgres_wire",
    "mysql_wire",
    "config_files",
    "hpack_blocks",
    "http2_frames",
];

/// `cargo fuzz build` of every target, as `run` builds them, started in
/// the background ([`sh::Background`]).
pub fn build_in_background() -> anyhow::Result<sh::Background> {
    sh::Background::start(
        sh::cargo()
            .args(["+nightly", "fuzz", "build", "-O"])
            .current_dir(root().join("agent/fuzz")),
        "the fuzz targets' build",
    )
}

pub fn run(seconds: u32) -> anyhow::Result<()> {
    let dir = root().join("agent/fuzz");
    for target in TARGETS {
        // The working corpus (not committed) first, then the committed
        // seeds, which libFuzzer reads but never writes.
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        sh::run(
            sh::cargo()
                .args(["+nightly", "fuzz", "run", "-O", target])
                .arg(&corpus)
                .arg(dir.join("seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .current_dir(&dir),
        )?;
    }
    Ok(())
}
