//! gRPC calls the services answered and made, exported under the names of
//! grpc-ecosystem's Prometheus interceptors (`grpc_server_*`,
//! `grpc_client_*`).
use super::state::State;
use crate::{
    export::OTHER,
    protocols::http2::{
        Role,
        grpc::{Event, split_path},
    },
};

impl State {
    pub(super) fn publish_grpc(&mut self, service: u32, role: Role, event: &Event) {
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
        let metrics = match role {
            Role::Served => &self.export.metrics.grpc_server,
            Role::Called => &self.export.metrics.grpc_client,
        };
        let call = match event {
            Event::Started(_) => {
                metrics.started.of(&id, &[grpc_service, method]).inc();
                return;
            }
            Event::Ended(call) => call,
        };
        // What the service read and wrote.
        let (received, sent) = match role {
            Role::Served => (call.requests, call.responses),
            Role::Called => (call.responses, call.requests),
        };
        let kind = call.kind().as_str();
        let labels = [kind, grpc_service, method];
        let handled = [kind, grpc_service, method, call.code.as_str()];
        metrics.handled.of(&id, &handled).inc();
        let seconds = call.end_ns.saturating_sub(call.start_ns) as f64 / 1e9;
        metrics.handling.of(&id, &labels).observe(seconds);
        metrics
            .received
            .of(&id, &labels)
            .inc_by(u64::from(received));
        metrics.sent.of(&id, &labels).inc_by(u64::from(sent));
    }
}
