//! MCP requests, from the message posts a service sends (client side) or
//! answers (server side), exported under bounded `tool_name` labels (see
//! `enrich::mcp`).
use super::state::State;
use crate::{
    enrich::mcp::read_exchange,
    export::{OTHER, ServiceId},
    protocols::http1::exchange::Exchange,
};

/// Which side of the exchange the service was on.
#[derive(Clone, Copy)]
pub(super) enum Side<'a> {
    /// It called an MCP server at `host` (the exported `host` label).
    Client {
        host: &'a str,
    },
    Server,
}

impl<'a> Side<'a> {
    /// The server called, on the client side.
    fn host(self) -> Option<&'a str> {
        match self {
            Self::Client { host } => Some(host),
            Self::Server => None,
        }
    }
}

impl State {
    pub(super) fn publish_mcp(&mut self, service: u32, side: Side<'_>, exchange: &Exchange) {
        let id = self.id(service);
        let read = read_exchange(
            exchange.request_body.as_ref(),
            exchange.response_body.as_ref(),
            self.enrich.mcp.max_body,
        );
        if let Some(err) = read.unread {
            let labels = ["mcp", err.as_str()];
            self.export.metrics.rule_errors.of(&id, &labels).inc();
        }
        let seconds = exchange.end_ns.saturating_sub(exchange.start_ns) as f64 / 1e9;
        for call in &read.calls {
            let tool = match &call.tool {
                Some(tool) => self.tool_label(service, &id, tool),
                None => String::new(),
            };
            self.otel_mcp(&id, side.host(), call, &tool, seconds);
            let m = &self.export.metrics;
            let status = call.status.as_str();
            match side {
                Side::Client { host } => {
                    let counted = [host, call.method, tool.as_str(), status];
                    m.mcp_client_requests.of(&id, &counted).inc();
                    let timed = [host, call.method];
                    m.mcp_client_duration.of(&id, &timed).observe(seconds);
                }
                Side::Server => {
                    let counted = [call.method, tool.as_str(), status];
                    m.mcp_server_requests.of(&id, &counted).inc();
                    m.mcp_server_duration
                        .of(&id, &[call.method])
                        .observe(seconds);
                }
            }
        }
    }

    /// A bounded `tool_name` value; an overflow is counted.
    fn tool_label(&mut self, service: u32, id: &ServiceId, tool: &str) -> String {
        let bounded = self.enrich.mcp_tools.label(service, tool);
        if bounded == OTHER {
            self.export
                .metrics
                .label_overflow
                .of(id, &["tool_name"])
                .inc();
        }
        bounded
    }
}
