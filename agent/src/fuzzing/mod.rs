//! The bodies of the fuzz targets (`agent/fuzz`, `cargo xtask fuzz`), here
//! so that the committed seeds (`agent/fuzz/seeds/TARGET/`) are replayed by
//! an ordinary unit test in every build, without a fuzzer.
pub mod config_files;
mod database;
pub mod endpoint_requests;
pub mod event_stream;
pub mod hpack_blocks;
pub mod http2_frames;
pub mod http_connection;
pub mod http_heads;
pub mod kernel_texts;
pub mod mcp_messages;
pub mod mysql_wire;
pub mod postgres_wire;
pub mod probe_records;
pub mod redis_wire;
pub mod rule_bodies;
pub mod sse_sessions;
pub mod web_config;

/// The body of the fuzz target `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "config_files" => config_files::run,
        "endpoint_requests" => endpoint_requests::run,
        "event_stream" => event_stream::run,
        "hpack_blocks" => hpack_blocks::run,
        "http2_frames" => http2_frames::run,
        "http_connection" => http_connection::run,
        "http_heads" => http_heads::run,
        "kernel_texts" => kernel_texts::run,
        "mcp_messages" => mcp_messages::run,
        "mysql_wire" => mysql_wire::run,
        "postgres_wire" => postgres_wire::run,
        "probe_records" => probe_records::run,
        "redis_wire" => redis_wire::run,
        "rule_bodies" => rule_bodies::run,
        "sse_sessions" => sse_sessions::run,
        "web_config" => web_config::run,
        _ => return None,
    })
}

/// The committed seeds of fuzz target `target` (`agent/fuzz/seeds/`), as
/// `(file name, bytes)`.
#[cfg(test)]
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a seed"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn committed_seeds_replay_without_a_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        let mut targets = 0;
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let run = target(&name).unwrap_or_else(|| panic!("no fuzz target {name}"));
            let seeds = seeds(&name);
            for (_, bytes) in &seeds {
                run(bytes);
            }
            assert!(seeds.len() >= 3, "{name}: {} seeds", seeds.len());
            targets += 1;
        }
        assert_eq!(targets, 16, "every fuzz target has seeds");
    }
}
