//! gRPC calls the services answered, exported under the names of
//! grpc-ecosystem's Prometheus interceptors (`grpc_server_*`).
use super::state::State;
use crate::{
    export::OTHER,
    protocols::http2::grpc::{Event, split_path},
};

impl State {
    pub(super) fn publish_grpc_served(&mut self, service: u32, event: &Event) {
        let path = match event {
            Event::Started(path) => path,
            Event::Ended(call) => &call.path,
        };
        // Methods share the endpoint budget of the service's routes.
        let endpoint = self.enrich.endpoints.label(service, path);
        let (grpc_service, method) = if endpoint == OTHER {
            (OTHER, OTHER)
        } else {
            split_path(path)
        };
        let id = self.id(service);
        let metrics = &self.export.metrics;
        let call = match event {
            Event::Started(_) => {
                metrics.grpc_started.of(&id, &[grpc_service, method]).inc();
                return;
            }
            Event::Ended(call) => call,
        };
        let kind = call.kind().as_str();
        let labels = [kind, grpc_service, method];
        let handled = [kind, grpc_service, method, call.code.as_str()];
        metrics.grpc_handled.of(&id, &handled).inc();
        let seconds = call.end_ns.saturating_sub(call.start_ns) as f64 / 1e9;
        metrics.grpc_handling.of(&id, &labels).observe(seconds);
        metrics
            .grpc_received
            .of(&id, &labels)
            .inc_by(u64::from(call.received));
        metrics
            .grpc_sent
            .of(&id, &labels)
            .inc_by(u64::from(call.sent));
    }
}
