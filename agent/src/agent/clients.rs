//! What the service does as a client: Redis commands (and, as they land,
//! database queries) seen on the connections it opened.
use std::time::Instant;

use super::state::State;
use crate::{metrics::catalogue, redis::Op};

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
        self.redis_services.insert(service);
    }

    /// `redis_connections_active` of every service that has used Redis.
    pub(super) fn publish_redis_connections(&mut self) {
        let open = self.streams.redis_connections();
        self.redis_services.extend(open.keys().copied());
        for &service in &self.redis_services {
            if let Some(name) = self.services[service as usize].name.as_deref() {
                let count = open.get(&service).copied().unwrap_or(0);
                self.metrics
                    .redis_connections
                    .with_label_values(&[name])
                    .set(count);
            }
        }
    }
}
