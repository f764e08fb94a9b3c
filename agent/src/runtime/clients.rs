//! What the service does as a client: Redis commands and database
//! statements seen on the connections it opened.
use super::state::State;
use crate::{
    export::{ServiceId, catalogue},
    protocols::{
        Pool,
        redis::Op,
        sql::{DbSystem, Statement},
    },
};

impl State {
    pub(super) fn publish_redis(&mut self, service: u32, op: &Op) {
        let id = self.id(service);
        let labels = [op.operation];
        self.export.metrics.redis_operations.of(&id, &labels).inc();
        let seconds = op.end_ns.saturating_sub(op.start_ns) as f64 / 1e9;
        self.export
            .metrics
            .redis_duration
            .of(&id, &labels)
            .observe(seconds);
        self.otel_db(&id, "redis", op.operation, op.error, seconds);
        // Errors exported from the first operation on, at 0 until one fails
        // (so that an error ratio has both sides).
        let errors = self.export.metrics.redis_errors.of(&id, &labels);
        if op.error {
            errors.inc();
        }
        self.export.clients_seen.insert((service, Pool::Redis));
    }

    pub(super) fn publish_statement(&mut self, service: u32, system: DbSystem, st: &Statement) {
        let id = self.id(service);
        let status = if st.error { "error" } else { "ok" };
        let counted = [system.as_str(), st.query_type, status];
        self.export.metrics.db_queries.of(&id, &counted).inc();
        let timed = [system.as_str(), st.query_type];
        let seconds = st.end_ns.saturating_sub(st.start_ns) as f64 / 1e9;
        self.export
            .metrics
            .db_duration
            .of(&id, &timed)
            .observe(seconds);
        self.otel_db(&id, system.as_str(), st.query_type, st.error, seconds);
        self.export.clients_seen.insert((service, Pool::Db(system)));
    }

    /// A gone service's pool gauges go with it.
    pub(super) fn retire_pools(&mut self, service: u32, id: &ServiceId) {
        let m = &self.export.metrics;
        self.export.clients_seen.retain(|&(s, pool)| {
            if s == service {
                match pool {
                    Pool::Redis => m.remove(catalogue::REDIS_CONNECTIONS_ACTIVE.name, id, &[]),
                    Pool::Db(system) => {
                        for family in [&catalogue::DB_POOL_SIZE, &catalogue::DB_POOL_CHECKED_OUT] {
                            m.remove(family.name, id, &[system.as_str()]);
                        }
                    }
                }
            }
            s != service
        });
    }

    /// Connection gauges of every service and client pool seen so far
    /// (none for pools a service never used).
    pub(super) fn publish_client_connections(&mut self) {
        let tls = &self.targets.tls;
        let open = self.capture.streams.pool_counts(|tgid| tls.is_hooked(tgid));
        self.export.clients_seen.extend(open.keys().copied());
        for &(service, pool) in &self.export.clients_seen {
            let Some(id) = &self.targets.services[service as usize].id else {
                continue;
            };
            let counts = open.get(&(service, pool)).copied().unwrap_or_default();
            let m = &self.export.metrics;
            match pool {
                Pool::Redis => m.redis_connections.of(id, &[]).set(counts.open),
                Pool::Db(system) => {
                    let labels = [system.as_str()];
                    m.db_pool_size.of(id, &labels).set(counts.open);
                    m.db_pool_checked_out.of(id, &labels).set(counts.busy);
                }
            }
        }
    }
}
