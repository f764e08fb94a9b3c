//! The parts of Redis's `INFO` reply the collector exports. Pure: a text in,
//! numbers out; unknown or malformed lines are skipped.

/// What one `INFO` says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    pub connected_clients: Option<i64>,
    pub blocked_clients: Option<i64>,
    pub commands_processed: Option<u64>,
    pub ops_per_second: Option<i64>,
    pub memory_used_bytes: Option<i64>,
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    /// `(command, calls, microseconds)` from `# Commandstats`.
    pub commands: Vec<(String, u64, u64)>,
    /// `(db, keys, keys with an expiry)` from `# Keyspace`.
    pub keyspace: Vec<(String, i64, i64)>,
}

/// Longest command name kept (Redis's are far shorter).
const MAX_NAME: usize = 48;

fn fields(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|kv| kv.split_once('='))
}

pub fn parse(text: &str) -> Info {
    let mut info = Info::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        let int = || value.parse::<i64>().ok();
        let uint = || value.parse::<u64>().ok();
        match key {
            "connected_clients" => info.connected_clients = int(),
            "blocked_clients" => info.blocked_clients = int(),
            "total_commands_processed" => info.commands_processed = uint(),
            "instantaneous_ops_per_sec" => info.ops_per_second = int(),
            "used_memory" => info.memory_used_bytes = int(),
            "keyspace_hits" => info.keyspace_hits = uint(),
            "keyspace_misses" => info.keyspace_misses = uint(),
            _ => {
                if let Some(command) = key.strip_prefix("cmdstat_") {
                    let (mut calls, mut usec) = (None, None);
                    for (k, v) in fields(value) {
                        match k {
                            "calls" => calls = v.parse().ok(),
                            "usec" => usec = v.parse().ok(),
                            _ => {}
                        }
                    }
                    if let (Some(calls), Some(usec)) = (calls, usec)
                        && command.len() <= MAX_NAME
                        && command.bytes().all(|b| b.is_ascii_graphic())
                    {
                        info.commands.push((command.to_owned(), calls, usec));
                    }
                } else if key.starts_with("db") && key[2..].bytes().all(|b| b.is_ascii_digit()) {
                    let (mut keys, mut expires) = (None, None);
                    for (k, v) in fields(value) {
                        match k {
                            "keys" => keys = v.parse().ok(),
                            "expires" => expires = v.parse().ok(),
                            _ => {}
                        }
                    }
                    if let (Some(keys), Some(expires)) = (keys, expires) {
                        info.keyspace.push((key.to_owned(), keys, expires));
                    }
                }
            }
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sections_it_exports() {
        let text = "# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\n\r\n\
                    # Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                    # Stats\r\ntotal_commands_processed:42\r\ninstantaneous_ops_per_sec:7\r\n\
                    keyspace_hits:5\r\nkeyspace_misses:2\r\n\
                    # Commandstats\r\ncmdstat_get:calls=10,usec=25,usec_per_call=2.50,rejected_calls=0\r\n\
                    cmdstat_client|setinfo:calls=2,usec=3,usec_per_call=1.5\r\ncmdstat_bad:calls=x\r\n\
                    # Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=1000\r\ndb12:keys=1,expires=0\r\ndbx:keys=1,expires=0\r\n";
        let info = parse(text);
        assert_eq!(info.connected_clients, Some(3));
        assert_eq!(info.blocked_clients, Some(1));
        assert_eq!(info.memory_used_bytes, Some(1_048_576));
        assert_eq!(info.commands_processed, Some(42));
        assert_eq!(info.ops_per_second, Some(7));
        assert_eq!(
            (info.keyspace_hits, info.keyspace_misses),
            (Some(5), Some(2))
        );
        assert_eq!(
            info.commands,
            [
                ("get".to_owned(), 10, 25),
                ("client|setinfo".to_owned(), 2, 3)
            ]
        );
        assert_eq!(
            info.keyspace,
            [("db0".to_owned(), 5, 2), ("db12".to_owned(), 1, 0)]
        );
        assert_eq!(parse("garbage\n:::\n"), Info::default());
    }
}
