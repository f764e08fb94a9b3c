//! What the service does as a client: Redis commands and database
//! statements seen on the connections it opened.
use std::time::Instant;

use super::state::State;
use crate::{
    export::catalogue,
    protocols::redis::Op,
    protocols::sql::{DbSystem, Statement},
};

/// Key of Redis in `State::clients_seen`.
const REDIS: &str = "redis";

impl State {
    pub(super) fn publish_redis(&mut self, service: u32, op: &Op, now: Instant) {
        let name = self.name(service).to_owned();
        let labels = [name.as_str(), op.operation];
        self.metrics
            .redis_operations
            .with_label_values(&labels)
            .inc();
        self.metrics
            .redis_duration
            .with_label_values(&labels)
            .observe(op.end_ns.saturating_sub(op.start_ns) as f64 / 1e9);
        for family in [
            catalogue::REDIS_OPERATIONS.name,
            catalogue::REDIS_OPERATION_DURATION.name,
        ] {
            self.clock.touch(family, &labels, now);
        }
        // Errors exported from the first operation on, at 0 until one fails
        // (so that an error ratio has both sides).
        let errors = self.metrics.redis_errors.with_label_values(&labels);
        if op.error {
            errors.inc();
        }
        self.clock
            .touch(catalogue::REDIS_OPERATION_ERRORS.name, &labels, now);
        self.clients_seen.insert((service, REDIS));
    }

    pub(super) fn publish_statement(
        &mut self,
        service: u32,
        system: DbSystem,
        st: &Statement,
        now: Instant,
    ) {
        let name = self.name(service).to_owned();
        let status = if st.error { "error" } else { "ok" };
        let system = system.as_str();
        let counted = [name.as_str(), system, st.query_type, status];
        self.metrics.db_queries.with_label_values(&counted).inc();
        self.clock.touch(catalogue::DB_QUERIES.name, &counted, now);
        let timed = [name.as_str(), system, st.query_type];
        self.metrics
            .db_duration
            .with_label_values(&timed)
            .observe(st.end_ns.saturating_sub(st.start_ns) as f64 / 1e9);
        self.clock
            .touch(catalogue::DB_QUERY_DURATION.name, &timed, now);
        self.clients_seen.insert((service, system));
    }

    /// Connection gauges of every service and client protocol seen so
    /// far (none for protocols a service never used).
    pub(super) fn publish_client_connections(&mut self) {
        let tls = &self.tls;
        let open = self.streams.client_counts(|tgid| tls.is_hooked(tgid));
        for (&service, counts) in &open {
            if counts.redis > 0 {
                self.clients_seen.insert((service, REDIS));
            }
            for (i, system) in DbSystem::ALL.iter().enumerate() {
                if counts.db[i] > 0 {
                    self.clients_seen.insert((service, system.as_str()));
                }
            }
        }
        for &(service, kind) in &self.clients_seen {
            let Some(name) = self.services[service as usize].name.as_deref() else {
                continue;
            };
            let counts = open.get(&service).copied().unwrap_or_default();
            let m = &self.metrics;
            if kind == REDIS {
                m.redis_connections
                    .with_label_values(&[name])
                    .set(counts.redis);
                continue;
            }
            let Some(i) = DbSystem::ALL.iter().position(|s| s.as_str() == kind) else {
                continue;
            };
            let labels = [name, kind];
            m.db_pool_size.with_label_values(&labels).set(counts.db[i]);
            m.db_pool_checked_out
                .with_label_values(&labels)
                .set(counts.db_busy[i]);
        }
    }
}
