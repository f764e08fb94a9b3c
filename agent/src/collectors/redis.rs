//! The Redis collector: `INFO` (clients, stats, memory, commandstats,
//! keyspace) on one connection, reopened after a failure. The server's
//! counters are mirrored into Prometheus counters (a reset of the server
//! shows as a reset of the counter).
use std::collections::HashMap;

use super::{Collector, redis_info};
use crate::{config::collectors::Secret, export::Metrics};

pub struct RedisCollector {
    url: Secret,
    connection: Option<::redis::aio::MultiplexedConnection>,
    /// Last value of each mirrored server counter, by series.
    last: HashMap<(&'static str, String), f64>,
}

impl RedisCollector {
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            connection: None,
            last: HashMap::new(),
        }
    }

    /// An error without the connection string (which may hold a
    /// password).
    fn describe(&self, err: &::redis::RedisError) -> String {
        self.url.redact(err.to_string())
    }

    /// Adds the growth of a server counter since the last run.
    fn mirror(
        &mut self,
        counter: &prometheus::CounterVec,
        key: &'static str,
        label: &str,
        value: f64,
    ) {
        let last = self
            .last
            .insert((key, label.to_owned()), value)
            .unwrap_or(0.0);
        let grown = if value >= last { value - last } else { value };
        let labels: &[&str] = if label.is_empty() { &[] } else { &[label] };
        counter.with_label_values(labels).inc_by(grown);
    }

    fn export(&mut self, info: &redis_info::Info, metrics: &Metrics) {
        let m = &metrics.redis_server;
        for (gauge, value) in [
            (&m.connected_clients, info.connected_clients),
            (&m.blocked_clients, info.blocked_clients),
            (&m.ops_per_second, info.ops_per_second),
            (&m.memory_used, info.memory_used_bytes),
        ] {
            if let Some(value) = value {
                gauge.with_label_values(&[]).set(value);
            }
        }
        for (counter, key, value) in [
            (&m.commands_processed, "processed", info.commands_processed),
            (&m.keyspace_hits, "hits", info.keyspace_hits),
            (&m.keyspace_misses, "misses", info.keyspace_misses),
        ] {
            if let Some(value) = value {
                self.mirror(counter, key, "", value as f64);
            }
        }
        for (command, calls, usec) in &info.commands {
            self.mirror(&m.commands, "calls", command, *calls as f64);
            self.mirror(&m.command_seconds, "usec", command, *usec as f64 / 1e6);
        }
        // Databases that emptied disappear from INFO: reset them all first.
        m.keyspace_keys.reset();
        m.keyspace_expires.reset();
        for (db, keys, expires) in &info.keyspace {
            m.keyspace_keys.with_label_values(&[db]).set(*keys);
            m.keyspace_expires.with_label_values(&[db]).set(*expires);
        }
    }
}

impl Collector for RedisCollector {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn collect(&mut self, metrics: &Metrics) -> Result<(), String> {
        if self.connection.is_none() {
            let url = self.url.reveal()?;
            let client = ::redis::Client::open(url.as_str()).map_err(|e| self.describe(&e))?;
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| self.describe(&e))?;
            self.connection = Some(connection);
        }
        let Some(connection) = &mut self.connection else {
            return Err("no connection".to_owned());
        };
        let reply: Result<String, _> = ::redis::cmd("INFO")
            .arg("everything")
            .query_async(connection)
            .await;
        match reply {
            Ok(text) => {
                let info = redis_info::parse(&text);
                self.export(&info, metrics);
                Ok(())
            }
            Err(err) => {
                self.connection = None; // reconnect next time
                Err(self.describe(&err))
            }
        }
    }

    /// A reply cut off at the timeout would arrive on the next run.
    fn abandon(&mut self) {
        self.connection = None;
    }
}
