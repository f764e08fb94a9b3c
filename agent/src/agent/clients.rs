//! What the service does as a client: Redis commands and PostgreSQL
//! statements seen on the connections it opened.
use std::time::Instant;

use super::state::State;
use crate::{metrics::catalogue, postgres::Statement, redis::Op};

const POSTGRES: &str = "postgresql";

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
        let mut families = vec![
            catalogue::REDIS_OPERATIONS.name,
            catalogue::REDIS_OPERATION_DURATION.name,
        ];
        if op.error {
            self.metrics.redis_errors.with_label_values(&labels).inc();
            families.push(catalogue::REDIS_OPERATION_ERRORS.name);
        }
        for family in families {
            self.clock.touch(family, &labels, now);
        }
        self.client_services.insert(service);
    }

    pub(super) fn publish_statement(&mut self, service: u32, st: &Statement, now: Instant) {
        let name = self.name(service).to_owned();
        let status = if st.error { "error" } else { "ok" };
        let counted = [name.as_str(), POSTGRES, st.query_type, status];
        self.metrics.db_queries.with_label_values(&counted).inc();
        self.clock.touch(catalogue::DB_QUERIES.name, &counted, now);
        let timed = [name.as_str(), POSTGRES, st.query_type];
        self.metrics
            .db_duration
            .with_label_values(&timed)
            .observe(st.end_ns.saturating_sub(st.start_ns) as f64 / 1e9);
        self.clock
            .touch(catalogue::DB_QUERY_DURATION.name, &timed, now);
        self.client_services.insert(service);
    }

    /// Connection gauges of every service that has used Redis or a
    /// database (others get no series).
    pub(super) fn publish_client_connections(&mut self) {
        let open = self.streams.client_counts();
        self.client_services.extend(open.keys().copied());
        for &service in &self.client_services {
            let Some(name) = self.services[service as usize].name.as_deref() else {
                continue;
            };
            let counts = open.get(&service).copied().unwrap_or_default();
            let m = &self.metrics;
            m.redis_connections
                .with_label_values(&[name])
                .set(counts.redis);
            m.db_pool_size
                .with_label_values(&[name, POSTGRES])
                .set(counts.postgres);
            m.db_pool_checked_out
                .with_label_values(&[name, POSTGRES])
                .set(counts.postgres_busy);
        }
    }
}
