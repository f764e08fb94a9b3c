//! MCP requests, from the message posts a service sends (client side) or
//! answers (server side), exported under bounded `tool_name` labels (see
//! `enrich::mcp`).
use super::state::State;
use crate::{
    enrich::mcp::{
        Call, read_exchange,
        sessions::{End, Finished},
    },
    export::{OTHER, ServiceId},
    protocols::{
        http1::exchange::{Exchange, Streamed},
        http2::Role,
    },
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
    /// Counts the MCP requests of `exchange`, if it carries MCP: a message
    /// post of the streamable HTTP transport, or a post to an HTTP+SSE
    /// session (answered later on its stream). Returns whether it did.
    pub(super) fn publish_mcp(
        &mut self,
        service: u32,
        side: Side<'_>,
        exchange: &Exchange,
    ) -> bool {
        let served = side.host().is_none();
        let limit = self.enrich.mcp.max_body;
        let (calls, unread) = if self.enrich.mcp_sessions.is_post(service, served, exchange) {
            let end = End {
                service,
                called: side.host().map(str::to_owned),
            };
            let mut finished = Vec::new();
            let unread = self
                .enrich
                .mcp_sessions
                .on_post(&end, exchange, limit, &mut finished);
            self.publish_finished(&finished);
            (Vec::new(), unread)
        } else if self.enrich.mcp.is_mcp(&exchange.method, &exchange.path) {
            let read = read_exchange(
                exchange.request_body.as_ref(),
                exchange.response_body.as_ref(),
                limit,
            );
            (read.calls, read.unread)
        } else {
            return false;
        };
        if let Some(err) = unread {
            let id = self.id(service);
            let labels = ["mcp", err.as_str()];
            self.export.metrics.rule_errors.of(&id, &labels).inc();
        }
        let seconds = exchange.end_ns.saturating_sub(exchange.start_ns) as f64 / 1e9;
        for call in &calls {
            self.count_mcp(service, side, call, seconds);
        }
        true
    }

    /// What an event stream of the HTTP+SSE transport brought.
    pub(super) fn publish_streamed(
        &mut self,
        service: u32,
        role: Role,
        conn: u64,
        streamed: &Streamed,
    ) {
        let served = role == Role::Served;
        let sessions = &mut self.enrich.mcp_sessions;
        let mut finished = Vec::new();
        match streamed {
            Streamed::Event { ts, event } => {
                sessions.on_event(service, served, conn, *ts, event, &mut finished);
            }
            Streamed::End { ts } => sessions.on_end(service, served, conn, *ts, &mut finished),
        }
        self.publish_finished(&finished);
    }

    /// Gives up on HTTP+SSE requests that waited too long.
    pub(super) fn expire_mcp_sessions(&mut self, now_ns: u64) {
        let mut finished = Vec::new();
        self.enrich.mcp_sessions.expire(now_ns, &mut finished);
        self.publish_finished(&finished);
    }

    fn publish_finished(&mut self, finished: &[Finished]) {
        for done in finished {
            let side = match &done.end.called {
                Some(host) => Side::Client { host },
                None => Side::Server,
            };
            self.count_mcp(done.end.service, side, &done.call, done.seconds);
        }
    }

    /// Counts one request, on `side`, that took `seconds`.
    fn count_mcp(&mut self, service: u32, side: Side<'_>, call: &Call, seconds: f64) {
        if service as usize >= self.targets.services.len() {
            return; // a service forgotten since
        }
        let id = self.id(service);
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
