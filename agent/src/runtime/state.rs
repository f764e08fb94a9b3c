//! [`State`]: the tracked processes of each service, the connection picture,
//! and the metrics that follow from them. Probe records and `/proc` scans
//! are applied here; `seed.rs` and `upkeep.rs` hold the rest of its methods.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use loupe_common::{
    maps::{
        BODIES_REQUESTS, BODIES_RESPONSES, CAPTURE_ROUTES_LEN, COUNTER_PROCESS_CHANGES,
        CaptureRoute, DIRECTION_INBOUND, ListenKey, SWITCH_CAPTURE_INBOUND,
        SWITCH_CAPTURE_OUTBOUND, SWITCH_HTTP2_BODIES, Target,
    },
    tcp,
};
use prometheus::IntCounter;
use tracing::{info, warn};

use super::{MAX_PEERS, MAX_RECENT, RECENT_PERIOD, served::Served};
use crate::{
    capture::{
        connections::{Connections, Delta},
        own::SelfPorts,
        records::{DecodeError, Event, KINDS, UNDECODABLE},
        streams::{Findings, Streams},
    },
    config::{Config, ServiceSpec, http::HttpConfig},
    enrich::{
        calls::Calls,
        endpoint::Routes,
        mcp::{McpConfig, sessions::Sessions},
        rules::{FED_LABELS, RuleSet, Side},
    },
    export::{LabelLimit, Metrics, Place, Recent, ServiceId, catalogue},
    kernel::Probes,
    protocols::Pool,
    targets::{
        discovery::Discovery, k8s::pods::SharedPods, late_accepts::LateAccepts, procfs::Procfs,
        tls::TlsHooks,
    },
};

pub(super) struct Service {
    pub(super) spec: ServiceSpec,
    /// Set from the configuration or from the first matched process.
    pub(super) id: Option<Arc<ServiceId>>,
    pub(super) targets: BTreeSet<u32>,
    /// Listening ports of the service, as entered in the probes' map.
    pub(super) listeners: HashSet<ListenKey>,
    /// Route templates for the `endpoint` label.
    pub(super) routes: Routes,
    pub(super) exclude_paths: HashSet<String>,
    /// Addresses the service listens on (for its OpenAPI document).
    pub(super) listen_addrs: Vec<SocketAddr>,
    /// When the OpenAPI document is next fetched; `None` before the first.
    pub(super) openapi_due: Option<Instant>,
    pub(super) openapi_failed: bool,
    waiting_logged: bool,
}

/// The processes watched, by service.
pub(super) struct Targets {
    pub(super) services: Vec<Service>,
    /// Tracked PID -> service index.
    pub(super) tracked: HashMap<u32, u32>,
    pub(super) proc: Procfs,
    /// Tracked processes the last `/proc` scan found gone.
    gone_at_last_scan: HashSet<u32>,
    /// In Kubernetes, the node's pods: a configured service's processes
    /// are counted per pod and container, each as a service of its own
    /// (appended after the configured ones) whose label value carries
    /// them.
    pods: Option<SharedPods>,
    /// (configured service, namespace, pod, container) -> its service.
    placed: HashMap<(u32, String, String, String), u32>,
    /// How many services the configuration has (the placed ones follow).
    configured: usize,
    /// Placed services whose pod is gone, to reuse.
    pub(super) free: Vec<u32>,
    /// OpenSSL uprobes of tracked processes.
    pub(super) tls: TlsHooks,
    /// Tracked processes with threads blocked in `accept` since before
    /// fexit was attached.
    pub(super) late_accepts: LateAccepts,
}

/// The probes and what the agent keeps of their bookkeeping.
pub(super) struct Kernel {
    pub(super) probes: Probes,
    pub(super) probe_lost: u64,
    pub(super) probe_map_full: u64,
    /// Connection ids handed out to fds seeded from `/proc`.
    pub(super) seeded_conns: u64,
    decode_errors: u64,
}

/// The connections: their TCP picture and their parsers.
pub(super) struct Capture {
    pub(super) conns: Connections,
    /// Parsing state of captured connections.
    pub(super) streams: Streams,
    /// Reused buffer of parser findings (no allocation per record).
    pub(super) findings: Findings,
    /// Peer label values per service, bounded.
    pub(super) peers: LabelLimit,
    /// The agent's own connections to targets (OpenAPI fetches).
    pub(super) self_ports: SelfPorts,
}

/// From findings to labels: route templates, rules, model calls, and the
/// budgets of label values fed from traffic.
pub(super) struct Enrich {
    pub(super) http: HttpConfig,
    /// Endpoint label values per service, bounded.
    pub(super) endpoints: LabelLimit,
    /// Principal label values per service, bounded.
    pub(super) principals: LabelLimit,
    /// Route rules for the business metrics.
    pub(super) rules: RuleSet,
    /// Values of rule labels fed from request data, per service, bounded.
    pub(super) rule_labels: LabelLimit,
    /// HTTP calls the services make: how they are parsed, and the model
    /// calls among them.
    pub(super) calls: Calls,
    /// Where MCP is served or called.
    pub(super) mcp: McpConfig,
    /// `tool_name` values of MCP requests per service, bounded.
    pub(super) mcp_tools: LabelLimit,
    /// MCP's HTTP+SSE sessions: requests waiting for their events.
    pub(super) mcp_sessions: Sessions,
}

/// The metric families and the expiry of their series.
pub(super) struct Export {
    pub(super) metrics: Metrics,
    /// How long a series (and a label value) stays once idle.
    pub(super) ttl: Duration,
    /// `(service, pool)` pairs seen on client connections: their
    /// connection gauges are exported.
    pub(super) clients_seen: BTreeSet<(u32, Pool)>,
    /// `loupe_events_total` per kind, resolved once (not per record).
    event_counts: Vec<IntCounter>,
    /// The series of recent served exchanges, by their labels.
    pub(super) served: Recent<Served>,
}

/// The run loop's state: one part per stage of the data path.
pub struct State {
    pub(super) targets: Targets,
    pub(super) kernel: Kernel,
    pub(super) capture: Capture,
    pub(super) enrich: Enrich,
    pub(super) export: Export,
}

/// An address as the TCP probe reports it (IPv4 mapped into IPv6).
pub(super) fn ip_of(raw: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*raw);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// The exported label of an outbound peer: itself, or `__other__` once the
/// service has [`MAX_PEERS`] of them.
pub(super) fn label_peer(peers: &mut LabelLimit, service: u32, peer: SocketAddr) -> String {
    peers.label(service, &peer.to_string())
}

/// The probes' response capture routes for `rules` and served MCP: one
/// per request-line prefix whose responses are read, or, past the map's
/// room, one that matches every request (more copying, nothing missed).
fn capture_routes(rules: &RuleSet, mcp: &McpConfig) -> Vec<CaptureRoute> {
    let budget = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX);
    let mut routes: Vec<(String, u32)> = rules
        .response_prefixes()
        .into_iter()
        .map(|prefix| (prefix, budget(rules.semantic.max_body)))
        .chain(mcp.response_prefixes().map(|(p, bytes)| (p, budget(bytes))))
        .collect();
    // Sorted, a prefix comes before what it covers (`POST /mcp` before
    // `POST /mcp/`): that one compare does for both, with the larger budget.
    routes.sort();
    routes.dedup_by(|later, kept| {
        let covered = later.0.starts_with(&kept.0);
        if covered {
            kept.1 = kept.1.max(later.1);
        }
        covered
    });
    if routes.len() > CAPTURE_ROUTES_LEN as usize {
        info!(
            prefixes = routes.len(),
            room = CAPTURE_ROUTES_LEN,
            "more response-reading route prefixes than the probes compare: every response is \
             copied from its start"
        );
        let most = routes.iter().map(|(_, b)| *b).max().unwrap_or(0);
        return vec![CaptureRoute::new(b"", most)];
    }
    routes
        .iter()
        .map(|(prefix, bytes)| CaptureRoute::new(prefix.as_bytes(), *bytes))
        .collect()
}

/// What the probes copy of served HTTP/2 DATA (`BODIES_*`): the
/// directions some rule reads.
fn http2_bodies(rules: &RuleSet) -> u32 {
    let mut read = 0;
    if rules.reads(Side::Request) {
        read |= BODIES_REQUESTS;
    }
    if rules.reads(Side::Response) {
        read |= BODIES_RESPONSES;
    }
    read
}

impl State {
    /// The rules of a configuration read again (SIGHUP): they, the request
    /// headers they read and the capture routes they need apply from the
    /// next record on.
    pub fn apply_rules(&mut self, config: &Config) {
        let probes = &mut self.kernel.probes;
        probes.set_capture_routes(&capture_routes(&config.rules, &self.enrich.mcp));
        probes.set_switch_value(SWITCH_HTTP2_BODIES, http2_bodies(&config.rules));
        self.enrich.rules = config.rules.clone();
        self.enrich.http.auth.label_headers = config.http.auth.label_headers.clone();
    }

    pub fn new(config: &Config, mut probes: Probes, metrics: Metrics) -> Self {
        probes.set_switch(SWITCH_CAPTURE_INBOUND, config.http.capture);
        probes.set_switch(SWITCH_CAPTURE_OUTBOUND, config.http.capture_clients);
        probes.set_capture_routes(&capture_routes(&config.rules, &config.mcp));
        probes.set_switch_value(SWITCH_HTTP2_BODIES, http2_bodies(&config.rules));
        let services = config
            .services
            .iter()
            .map(|spec| Service {
                id: spec
                    .name
                    .clone()
                    .map(|name| Arc::new(ServiceId::named(name))),
                spec: spec.clone(),
                targets: BTreeSet::new(),
                listeners: HashSet::new(),
                routes: Routes::new(spec.routes.iter().cloned()),
                exclude_paths: spec.exclude_paths.iter().cloned().collect(),
                listen_addrs: Vec::new(),
                openapi_due: None,
                openapi_failed: false,
                waiting_logged: false,
            })
            .collect();
        let event_counts = KINDS
            .iter()
            .map(|kind| metrics.events.with_label_values(&[kind]))
            .collect();
        let clock = &metrics.clock.clone();
        let state = Self {
            targets: Targets {
                services,
                tracked: HashMap::new(),
                proc: Procfs::default(),
                gone_at_last_scan: HashSet::new(),
                pods: None,
                placed: HashMap::new(),
                configured: config.services.len(),
                free: Vec::new(),
                tls: TlsHooks::new(config.http.tls),
                late_accepts: LateAccepts::default(),
            },
            kernel: Kernel {
                probes,
                probe_lost: 0,
                probe_map_full: 0,
                seeded_conns: 0,
                decode_errors: 0,
            },
            capture: Capture {
                conns: Connections::default(),
                streams: Streams::default(),
                findings: Findings::default(),
                peers: LabelLimit::new(MAX_PEERS, clock),
                self_ports: SelfPorts::default(),
            },
            enrich: Enrich {
                http: config.http.clone(),
                endpoints: LabelLimit::new(config.http.max_endpoints, clock),
                principals: LabelLimit::new(config.http.max_principals, clock),
                rules: config.rules.clone(),
                rule_labels: LabelLimit::new(config.rules.semantic.max_label_values, clock),
                calls: Calls::new(&config.llm, config.http.max_client_hosts, clock),
                mcp: config.mcp.clone(),
                mcp_tools: LabelLimit::new(config.mcp.max_tools, clock),
                mcp_sessions: Sessions::default(),
            },
            export: Export {
                served: Recent::new(clock, RECENT_PERIOD, config.series_ttl, MAX_RECENT),
                ttl: config.series_ttl,
                clients_seen: BTreeSet::new(),
                event_counts,
                metrics,
            },
        };
        for service in 0..state.targets.services.len() {
            state.publish_targets(service as u32);
        }
        state
    }

    /// Counts processes per Kubernetes pod and container from now on.
    pub fn place_in_pods(&mut self, pods: SharedPods) {
        self.targets.pods = Some(pods);
    }

    /// The service a newly found process of configured service `service`
    /// counts under: in Kubernetes, the one of its pod and container
    /// (made on first sight); else `service` itself.
    fn placed_service(&mut self, service: u32, pid: u32) -> u32 {
        let Some(pods) = &self.targets.pods else {
            return service;
        };
        // A process of a placed service (a child) stays where it is.
        let configured = (service as usize) < self.targets.configured;
        let Some(cgroup) = self.targets.proc.cgroup(pid).filter(|_| configured) else {
            return service;
        };
        let container = crate::targets::container::parse(&cgroup);
        let index = pods.snapshot();
        let Some(place) = index.place(container.id.as_deref(), container.pod_uid.as_deref()) else {
            return service;
        };
        let key = (
            service,
            place.pod.namespace.clone(),
            place.pod.name.clone(),
            place.container.unwrap_or_default().to_owned(),
        );
        if let Some(&placed) = self.targets.placed.get(&key) {
            return placed;
        }
        self.ensure_name(service, pid);
        let template = &self.targets.services[service as usize];
        let id = ServiceId {
            name: self.name(service).to_owned(),
            place: Some(Place {
                namespace: key.1.clone(),
                pod: key.2.clone(),
                container: key.3.clone(),
            }),
        };
        let placed = Service {
            id: Some(Arc::new(id)),
            spec: template.spec.clone(),
            targets: BTreeSet::new(),
            listeners: HashSet::new(),
            routes: Routes::new(template.spec.routes.iter().cloned()),
            exclude_paths: template.exclude_paths.clone(),
            listen_addrs: Vec::new(),
            openapi_due: None,
            openapi_failed: false,
            waiting_logged: true,
        };
        let index = match self.targets.free.pop() {
            Some(index) => {
                self.targets.services[index as usize] = placed;
                index
            }
            None => {
                self.targets.services.push(placed);
                self.targets.services.len() as u32 - 1
            }
        };
        self.targets.placed.insert(key, index);
        index
    }

    /// The service as logs show it (`name/namespace/pod/container`).
    pub(super) fn shown(&self, service: u32) -> String {
        self.id(service).to_string()
    }

    /// The service's identity, as its series are labelled.
    pub(super) fn id(&self, service: u32) -> Arc<ServiceId> {
        self.targets
            .services
            .get(service as usize)
            .and_then(|s| s.id.clone())
            .unwrap_or_else(|| Arc::new(ServiceId::named("unknown")))
    }

    /// The service's name (rules and budgets are per name).
    pub(super) fn name(&self, service: u32) -> &str {
        self.targets
            .services
            .get(service as usize)
            .and_then(|s| s.id.as_deref())
            .map_or("unknown", |id| id.name.as_str())
    }

    /// Names an unnamed service after what its first process runs (the
    /// program an interpreter was given, else the executable).
    fn ensure_name(&mut self, service: u32, pid: u32) {
        let index = service as usize;
        if self.targets.services[index].id.is_some() {
            return;
        }
        let exe = self
            .targets
            .proc
            .exe_name(pid)
            .unwrap_or_else(|| "unknown".into());
        let argv = self.targets.proc.argv(pid).unwrap_or_default();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let base = crate::targets::naming::program_name(&exe, &argv);
        let taken = self
            .targets
            .services
            .iter()
            .any(|s| s.id.as_ref().is_some_and(|id| id.name == base));
        let name = if taken {
            format!("{base}-{}", index + 1)
        } else {
            base
        };
        info!(service = %name, pid, "service named after what its process runs (set --service to choose)");
        self.targets.services[index].id = Some(Arc::new(ServiceId::named(name)));
    }

    pub(super) fn publish_targets(&self, service: u32) {
        let s = &self.targets.services[service as usize];
        if let Some(id) = &s.id {
            let m = &self.export.metrics;
            m.targets.of(id, &[]).set(s.targets.len() as i64);
            m.route_templates.of(id, &[]).set(s.routes.len() as i64);
            // The budget counters exist from the start at 0, so that
            // `increase()` sees their first overflow.
            m.endpoint_overflow.ensure(id, &[]);
            for label in FED_LABELS {
                m.label_overflow.ensure(id, &[label]);
            }
        }
    }

    pub(super) fn publish(&mut self, delta: &Delta) {
        let id = self.id(delta.service);
        let m = &self.export.metrics;
        let direction = [delta.direction.as_str()];
        if delta.opened {
            m.tcp_opened.of(&id, &direction).inc();
        }
        m.tcp_active
            .of(&id, &direction)
            .set(self.capture.conns.active(delta.service, delta.direction));
        if let Some(peer) = &delta.peer {
            m.tcp_active_by_peer
                .of(&id, &[peer])
                .set(self.capture.conns.peer_active(delta.service, peer));
        }
    }

    /// Starts tracking `pid` for `service`; `parent` is the tracked process
    /// that forked it, 0 when a scan found it.
    pub(super) fn track(&mut self, pid: u32, service: u32, parent: u32) {
        if self.targets.tracked.contains_key(&pid) {
            return;
        }
        let service = self.placed_service(service, pid);
        self.ensure_name(service, pid);
        if let Err(err) = self
            .kernel
            .probes
            .tracked
            .insert(pid, Target { service, parent }, 0)
        {
            warn!(pid, error = %err, "cannot track process: the probes' process map is full");
            return;
        }
        self.kernel.probes.set_tracked_bit(pid, true);
        self.targets.tracked.insert(pid, service);
        let s = &mut self.targets.services[service as usize];
        s.targets.insert(pid);
        s.waiting_logged = false;
        if parent == 0 {
            info!(pid, service = %self.shown(service), "tracking process");
            // (A child forked since began its calls after the programs.)
            self.watch_late_accepts(pid);
        }
        self.publish_targets(service);
        self.seed(pid, service);
        self.targets
            .tls
            .sync(&mut self.kernel.probes, &self.targets.proc, pid);
    }

    /// Stops tracking `pid` (gone): its connections closed with it, on
    /// whichever path noticed first (its exit record, or a `/proc` scan
    /// when the record came while it was still exiting).
    pub(super) fn untrack(&mut self, pid: u32) {
        let Some(service) = self.targets.tracked.remove(&pid) else {
            return;
        };
        self.forget_connections(pid);
        self.forget_late_accepts(pid);
        self.targets.tls.forget(&mut self.kernel.probes, pid);
        self.kernel.probes.forget_tls_connections(pid);
        let _ = self.kernel.probes.tracked.remove(&pid);
        self.kernel.probes.set_tracked_bit(pid, false);
        let s = &mut self.targets.services[service as usize];
        s.targets.remove(&pid);
        if s.targets.is_empty() {
            // Nobody of this service listens any more; a restarted target
            // enters its ports again when it is found.
            for key in s.listeners.drain() {
                let _ = self.kernel.probes.listeners.remove(&key);
            }
            if (service as usize) >= self.targets.configured {
                self.retire(service);
                return;
            }
            info!(pid, service = %self.shown(service), "target exited; waiting for it to come back");
        }
        self.publish_targets(service);
    }

    /// A placed service whose pod is gone: its per-service series go (the
    /// counted ones expire with `series_ttl`), and its slot serves the
    /// next pod, so that pod churn does not grow the agent.
    fn retire(&mut self, service: u32) {
        info!(service = %self.shown(service), "pod gone; its series expire");
        let id = self.id(service);
        let m = &self.export.metrics;
        for family in [
            &catalogue::TARGETS,
            &catalogue::ROUTE_TEMPLATES,
            &catalogue::ENDPOINT_OVERFLOW,
            &catalogue::TRACKED_SOCKETS,
            &catalogue::TLS_HOOKED_PROCESSES,
        ] {
            m.remove(family.name, &id, &[]);
        }
        for label in FED_LABELS {
            m.remove(catalogue::LABEL_OVERFLOW.name, &id, &[label]);
        }
        self.retire_pools(service, &id);
        self.targets
            .placed
            .retain(|_, &mut placed| placed != service);
        self.targets.free.push(service);
    }

    pub fn on_event(&mut self, event: Event<'_>) {
        self.export.event_counts[event.index()].inc();
        match event {
            Event::TcpState(state) => {
                let local = ip_of(&state.tuple.saddr);
                if state.owner.direction == DIRECTION_INBOUND
                    && self.capture.self_ports.contains(local, state.tuple.dport)
                {
                    return; // the agent's own connection (OpenAPI fetch)
                }
                if state.newstate == tcp::LISTEN
                    && let Some(service) =
                        self.targets.services.get_mut(state.owner.service as usize)
                {
                    service.listeners.insert(ListenKey {
                        netns: state.netns,
                        port: state.tuple.sport,
                        _pad: 0,
                    });
                    service
                        .listen_addrs
                        .push(SocketAddr::new(local, state.tuple.sport));
                }
                let peers = &mut self.capture.peers;
                if let Some(delta) = self
                    .capture
                    .conns
                    .on_event(&state, |s, peer| label_peer(peers, s, peer))
                {
                    self.publish(&delta);
                }
            }
            Event::Fork(fork) => {
                if (fork.service as usize) < self.targets.services.len() {
                    self.track(fork.pid, fork.service, fork.header.tgid);
                }
            }
            Event::Exec(exec) => {
                if let Some(&service) = self.targets.tracked.get(&exec.pid) {
                    self.reseed(exec.pid, service);
                    self.targets.tls.forget(&mut self.kernel.probes, exec.pid);
                    self.targets
                        .tls
                        .sync(&mut self.kernel.probes, &self.targets.proc, exec.pid);
                }
            }
            Event::Exit(exit) => {
                if !self.targets.proc.is_running(exit.pid) {
                    self.untrack(exit.pid);
                }
            }
            Event::Data(head, bytes) => self.on_data(&head, bytes),
            Event::Close(head) => self.on_close(&head),
        }
    }

    pub fn on_decode_error(&mut self, err: &DecodeError) {
        self.kernel.decode_errors += 1;
        self.export.event_counts[UNDECODABLE].inc();
        if self.kernel.decode_errors.is_power_of_two() {
            warn!(error = %err, count = self.kernel.decode_errors, "dropping undecodable probe records");
        }
    }

    /// Applies one `/proc` scan. A process the scan finds gone is
    /// untracked at the next scan: its last records (and the exit record
    /// that untracks it first, as a rule) may still wait in the ring, and
    /// records of an untracked process are dropped.
    pub fn apply(&mut self, discovery: Discovery) {
        let gone: HashSet<u32> = discovery.gone.into_iter().collect();
        let last = std::mem::replace(&mut self.targets.gone_at_last_scan, gone);
        for pid in last
            .intersection(&self.targets.gone_at_last_scan)
            .copied()
            .collect::<Vec<_>>()
        {
            self.untrack(pid);
        }
        for (pid, service) in discovery.add {
            self.track(pid, service, 0);
        }
        // Placed services end with their pod; the configured one waits.
        for s in &mut self.targets.services[..self.targets.configured] {
            if s.targets.is_empty() && !s.waiting_logged {
                s.waiting_logged = true;
                warn!(
                    service = s.id.as_ref().map_or("(unnamed)", |id| id.name.as_str()),
                    origin = %s.spec.origin,
                    pids = ?s.spec.pids,
                    processes = ?s.spec.processes.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    ports = ?s.spec.ports,
                    "no process matches yet; waiting for one to appear"
                );
            }
        }
    }

    /// What decides whether a `/proc` scan is due: the probes' count of
    /// process changes, and whether the last scan found a tracked process
    /// gone (confirmed by the next one).
    pub fn scan_inputs(&self) -> (u64, bool) {
        let changes = self.kernel.probes.counter(COUNTER_PROCESS_CHANGES);
        (changes, !self.targets.gone_at_last_scan.is_empty())
    }

    pub fn tracked_snapshot(&self) -> HashMap<u32, u32> {
        self.targets.tracked.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::rules::{Semantic, default_rules};

    #[test]
    fn a_route_prefix_covers_those_it_starts() {
        let rules = RuleSet {
            rules: default_rules(),
            semantic: Semantic::default(),
        };
        let mcp = McpConfig::default();
        let routes = capture_routes(&rules, &mcp);
        // `/mcp` and `/mcp/`: one compare, `POST /mcp`, does for both; an
        // event stream (`GET /sse`) is copied whole.
        assert_eq!(routes.len(), rules.response_prefixes().len() + 2);
        let sse = CaptureRoute::new(b"GET /sse", u32::MAX);
        assert!(
            routes
                .iter()
                .any(|r| r.len == sse.len && r.budget == sse.budget)
        );
        let budget = u32::try_from(mcp.max_body).unwrap_or(u32::MAX);
        let mcp_routes: Vec<u32> = routes
            .iter()
            .filter(|r| r.budget == budget && r.len == "POST /mcp".len() as u32)
            .map(|r| r.len)
            .collect();
        assert_eq!(mcp_routes.len(), 1);
    }
}
