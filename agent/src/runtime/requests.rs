//! From captured bytes to request metrics: feeding the parsers, and
//! exporting each finished exchange under bounded labels.
use std::sync::Arc;

use loupe_common::{event::DataHeader, maps::CONN_TLS};

use super::{
    mcp,
    served::{Served, ServedKey, ServedSeries},
    state::State,
};
use crate::{
    capture::streams::{Findings, Parsing, StreamKey, Streams, monotonic_ns},
    export::{self, OTHER, Recent, ServiceId},
    protocols::{
        Command, Observation,
        http1::{
            exchange::{Exchange, Outcome, ParseConfig, Unparsed},
            head::Method,
        },
    },
};

impl State {
    /// Runs `feed` on the parsers and exports what it produced; the
    /// findings buffer is reused (no allocation per record). `raise` is the
    /// connection a record came from: a call the service made whose reply
    /// is wanted whole raises its capture budget at once (the probes set
    /// an HTTP/1 served response's budget themselves, from the route
    /// prefixes).
    fn with_streams(
        &mut self,
        raise: Option<(u32, u64)>,
        feed: impl FnOnce(&mut Streams, &Parsing<'_>, &mut Findings),
    ) {
        let mut findings = std::mem::take(&mut self.capture.findings);
        let (rules, services) = (&self.enrich.rules, &self.targets.services);
        let (mcp, sessions) = (&self.enrich.mcp, &self.enrich.mcp_sessions);
        let mcp_wants = |method: &Method, path: &str| {
            mcp.wants(method, path)
                .with(sessions.wants(method, path, mcp.max_body))
        };
        let bodies = |service: u32, method: &Method, path: &str| {
            let name = services
                .get(service as usize)
                .and_then(|s| s.id.as_deref())
                .map_or("unknown", |id| id.name.as_str());
            rules
                .wants(name, method, path)
                .with(mcp_wants(method, path))
        };
        let calls = &self.enrich.calls;
        let call_bodies =
            |method: &Method, path: &str| calls.bodies(method, path).with(mcp_wants(method, path));
        let parsing = Parsing {
            auth: &self.enrich.http.auth,
            bodies: &bodies,
            calls: &ParseConfig {
                auth: &calls.auth,
                bodies: &call_bodies,
            },
        };
        feed(&mut self.capture.streams, &parsing, &mut findings);
        for command in findings.commands.drain(..) {
            let (Command::CaptureReply(bytes), Some((tgid, conn))) = (command, raise) else {
                continue;
            };
            // Before the reply comes (a model answers in hundreds of ms;
            // the agent reads records every 10 ms).
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            self.kernel.probes.raise_capture(tgid, conn, bytes);
        }
        self.publish_observations(&mut findings.observations);
        self.capture.findings = findings;
    }

    /// Bytes on a connection. Records of a process no longer tracked are
    /// dropped: a thread of a killed process may finish a write after the
    /// process was forgotten, and its connection would linger.
    pub(super) fn on_data(&mut self, head: &DataHeader, bytes: &[u8]) {
        if !self.targets.tracked.contains_key(&head.header.tgid) {
            return;
        }
        let tgid = head.header.tgid;
        // A process whose OpenSSL is hooked: its plaintext comes through
        // the uprobes, the ciphertext at the socket is no news.
        let plaintext_seen = head.conn & CONN_TLS == 0 && self.targets.tls.is_hooked(tgid);
        let connection = Some((tgid, head.conn));
        self.with_streams(connection, |streams, parsing, findings| {
            streams.on_data(head, bytes, parsing, findings);
            if plaintext_seen {
                let tls = Observation::Served(Outcome::Unparsed(Unparsed::Tls));
                findings.observations.retain(|(_, found)| *found != tls);
            }
        });
    }

    pub(super) fn on_close(&mut self, head: &DataHeader) {
        let key = StreamKey {
            tgid: head.header.tgid,
            conn: head.conn,
        };
        self.with_streams(None, |streams, _, findings| {
            streams.on_close(key, head.header.ts_ns, findings);
        });
    }

    /// A process exited: its connections closed with it.
    pub(super) fn forget_connections(&mut self, tgid: u32) {
        self.with_streams(None, |streams, _, findings| {
            streams.forget_process(tgid, monotonic_ns(), findings);
        });
    }

    /// Ends quiet responses and forgets quiet connections.
    pub(super) fn expire_streams(&mut self, now_ns: u64) {
        self.with_streams(None, |streams, _, findings| {
            streams.expire(now_ns, findings);
        });
        self.expire_mcp_sessions(now_ns);
        self.export
            .metrics
            .capture_connections
            .set(self.capture.streams.len() as i64);
        self.publish_client_connections();
    }

    /// Exports each observation, read in place (an observation is a couple
    /// of hundred bytes: moving each out of the buffer was a tenth of the
    /// agent's time at saturation), then empties the buffer.
    fn publish_observations(&mut self, observations: &mut Vec<(u32, Observation)>) {
        for &(service, ref observation) in observations.iter() {
            if service as usize >= self.targets.services.len() {
                continue;
            }
            match observation {
                Observation::Redis(op) => self.publish_redis(service, op),
                Observation::Statement { system, statement } => {
                    self.publish_statement(service, *system, statement);
                }
                Observation::Call(call) => self.publish_call(service, call),
                Observation::Grpc(role, event) => self.publish_grpc(service, *role, event),
                Observation::Streamed {
                    role,
                    conn,
                    streamed,
                } => self.publish_streamed(service, *role, *conn, streamed),
                Observation::Served(Outcome::Exchange(exchange)) => {
                    self.publish_exchange(service, exchange);
                }
                Observation::Served(Outcome::Abandoned { method, path }) => {
                    if let Some((id, endpoint)) = self.endpoint_of(service, path) {
                        let m = &self.export.metrics;
                        m.abandoned.of(&id, &[method.as_str(), &endpoint]).inc();
                        if endpoint == OTHER {
                            m.endpoint_overflow.of(&id, &[]).inc();
                        }
                    }
                }
                // The server parser's sink makes these `Observation::Streamed`.
                Observation::Served(Outcome::Streamed(_)) => {}
                Observation::Served(Outcome::Unparsed(why)) => {
                    let id = self.id(service);
                    self.export.metrics.unparsed.of(&id, &[why.as_str()]).inc();
                }
            }
        }
        observations.clear();
    }

    /// The service and the `endpoint` label of `path` (within the endpoint
    /// budget: [`OTHER`] over it, which the caller counts as an overflow);
    /// `None` for an excluded path.
    fn endpoint_of(&mut self, service: u32, path: &str) -> Option<(Arc<ServiceId>, String)> {
        let s = &self.targets.services[service as usize];
        if s.exclude_paths.contains(path) {
            return None;
        }
        let template = s.routes.endpoint(path);
        if s.exclude_paths.contains(&template) {
            return None;
        }
        let id = self.id(service);
        let endpoint = self.enrich.endpoints.label(service, &template);
        Some((id, endpoint))
    }

    fn publish_exchange(&mut self, service: u32, exchange: &Exchange) {
        let key = ServedKey {
            service,
            method: exchange.method,
            status: exchange.status,
            auth: exchange.auth.kind,
            path: &exchange.path,
            version: exchange.version,
            tls: exchange.tls,
        };
        let hash = Recent::<Served>::hash_of(&key);
        let id = self.targets.services[service as usize].id.as_ref();
        match self.export.served.find(hash, |s| s.is(&key, id)) {
            Some(served) => served.count(exchange),
            None => {
                let served = self.served(&key);
                served.count(exchange);
                if served.keepable() {
                    self.export.served.keep(hash, served);
                }
            }
        }
        if let Some(principal) = &exchange.auth.principal {
            let id = self.id(service);
            let principal = self.enrich.principals.label(service, principal);
            let labels = [exchange.auth.kind.as_str(), principal.as_str()];
            self.export
                .metrics
                .requests_by_principal
                .of(&id, &labels)
                .inc();
        }
        self.publish_rule(service, exchange);
        self.publish_mcp(service, mcp::Side::Server, exchange);
    }

    /// Works out the series of a served exchange (recording their use).
    fn served(&mut self, key: &ServedKey<'_>) -> Served {
        let service = key.service;
        let series = self.endpoint_of(service, key.path).map(|(id, endpoint)| {
            let m = &self.export.metrics;
            let method = key.method.as_str();
            let status = key
                .status
                .map_or_else(|| "unknown".to_owned(), |code| code.to_string());
            let counted = [
                method,
                endpoint.as_str(),
                status.as_str(),
                key.auth.as_str(),
            ];
            let timed = [method, endpoint.as_str()];
            let otel = m.otel.as_ref().map(|otel| {
                let routes = &self.targets.services[service as usize].routes;
                let known = endpoint != OTHER && routes.route(key.path).is_some();
                let labels = [
                    export::otel::http_method(key.method),
                    if known { endpoint.as_str() } else { "" },
                    key.status.map_or("", |_| status.as_str()),
                    if key.tls { "https" } else { "http" },
                    key.version.as_str(),
                ];
                otel.http_server.of(&id, &labels)
            });
            ServedSeries {
                requests: m.requests.of(&id, &counted),
                duration: m.request_duration.of(&id, &timed),
                first_byte: m.first_byte.of(&id, &timed),
                overflow: (endpoint == OTHER).then(|| m.endpoint_overflow.of(&id, &[])),
                otel,
            }
        });
        let id = self.targets.services[service as usize].id.clone();
        Served::new(key, id, series)
    }
}
