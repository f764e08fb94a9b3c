//! The metric handles the agent updates, built from the catalogue, and the
//! bookkeeping that keeps label sets bounded and expires idle series.
pub mod catalogue;
pub mod custom;
mod labelled;
pub mod otel;
mod process;
pub mod reference;
mod series;
pub mod server;

use std::collections::HashMap;

pub use labelled::{K8S_LABELS, Labelled, Place, ServiceId};
use prometheus::{
    CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use series::Sweeper;
pub use series::{Clock, Expiring, LabelLimit, Recent};

use self::catalogue::{Def, buckets};

/// Overflow value of a bounded label.
pub const OTHER: &str = "__other__";

/// A labelled family, kept by name so that expired series can be removed.
#[derive(Clone)]
enum Family {
    Gauge(Labelled<IntGaugeVec>),
    Counter(Labelled<IntCounterVec>),
    FloatCounter(Labelled<CounterVec>),
    Histogram(Labelled<HistogramVec>),
}

/// Builds families from catalogue entries and registers them.
struct Builder {
    registry: Registry,
    families: HashMap<&'static str, Family>,
    clock: Clock,
    sweeper: Sweeper,
    /// Families labelled by service also get the Kubernetes labels.
    kubernetes: bool,
}

impl Builder {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.registry
            .register(Box::new(c.clone()))
            .expect("catalogue names are unique");
        c
    }

    /// The family's label names, and whether its service label expands.
    fn labels(&self, def: &Def) -> (Vec<&'static str>, bool) {
        let expand = self.kubernetes && def.labels.first() == Some(&"service");
        let mut labels = def.labels.to_vec();
        if expand {
            labels.splice(1..1, K8S_LABELS);
        }
        (labels, expand)
    }

    fn gauges(&mut self, def: &Def) -> Labelled<IntGaugeVec> {
        let (labels, expand) = self.labels(def);
        let vec = self
            .register(IntGaugeVec::new(Opts::new(def.name, def.help), &labels).expect("valid def"));
        let vec = Labelled::new(vec, expand);
        self.families.insert(def.name, Family::Gauge(vec.clone()));
        vec
    }

    fn counters(&mut self, def: &Def) -> Labelled<IntCounterVec> {
        let (labels, expand) = self.labels(def);
        let vec = self.register(
            IntCounterVec::new(Opts::new(def.name, def.help), &labels).expect("valid def"),
        );
        let vec = Labelled::new(vec, expand);
        self.families.insert(def.name, Family::Counter(vec.clone()));
        vec
    }

    fn expiring_float_counters(&mut self, def: &Def) -> Expiring<CounterVec> {
        let (labels, expand) = self.labels(def);
        let vec = self
            .register(CounterVec::new(Opts::new(def.name, def.help), &labels).expect("valid def"));
        let vec = Labelled::new(vec, expand);
        self.families
            .insert(def.name, Family::FloatCounter(vec.clone()));
        self.expiring(vec)
    }

    fn histograms(&mut self, def: &Def, buckets: &[f64]) -> Labelled<HistogramVec> {
        let (labels, expand) = self.labels(def);
        let opts = HistogramOpts::new(def.name, def.help).buckets(buckets.to_vec());
        let vec = self.register(HistogramVec::new(opts, &labels).expect("valid def"));
        let vec = Labelled::new(vec, expand);
        self.families
            .insert(def.name, Family::Histogram(vec.clone()));
        vec
    }

    /// A family whose series expire once idle.
    fn expiring<V>(&mut self, vec: Labelled<V>) -> Expiring<V>
    where
        Expiring<V>: series::Sweep + Clone + 'static,
    {
        let family = Expiring::new(vec, self.clock.clone());
        self.sweeper.add(std::sync::Arc::new(family.clone()));
        family
    }

    fn expiring_counters(&mut self, def: &Def) -> Expiring<IntCounterVec> {
        let vec = self.counters(def);
        self.expiring(vec)
    }

    fn expiring_gauges(&mut self, def: &Def) -> Expiring<IntGaugeVec> {
        let vec = self.gauges(def);
        self.expiring(vec)
    }

    fn expiring_histograms(&mut self, def: &Def, buckets: &[f64]) -> Expiring<HistogramVec> {
        let vec = self.histograms(def, buckets);
        self.expiring(vec)
    }

    /// Fractional counters and gauges: the collectors' mirrors of server
    /// statistics (refreshed every run, never expired).
    fn float_counters(&self, def: &Def) -> CounterVec {
        self.register(
            CounterVec::new(Opts::new(def.name, def.help), def.labels).expect("valid def"),
        )
    }

    fn float_gauges(&self, def: &Def) -> GaugeVec {
        self.register(GaugeVec::new(Opts::new(def.name, def.help), def.labels).expect("valid def"))
    }

    fn gauge(&self, def: &Def) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(def.name, def.help)).expect("valid def"))
    }

    fn counter(&self, def: &Def) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(def.name, def.help)).expect("valid def"))
    }
}

/// What the Redis collector exports (the server's own view, all clients);
/// vectors even without labels, so that nothing shows before a first run.
#[derive(Clone)]
pub struct RedisServer {
    pub connected_clients: Labelled<IntGaugeVec>,
    pub blocked_clients: Labelled<IntGaugeVec>,
    pub ops_per_second: Labelled<IntGaugeVec>,
    pub memory_used: Labelled<IntGaugeVec>,
    pub commands_processed: CounterVec,
    pub keyspace_hits: CounterVec,
    pub keyspace_misses: CounterVec,
    pub commands: CounterVec,
    pub command_seconds: CounterVec,
    pub keyspace_keys: Labelled<IntGaugeVec>,
    pub keyspace_expires: Labelled<IntGaugeVec>,
}

/// The database collector's business gauges (vectors without labels, so
/// that a gauge whose table is missing is absent rather than 0).
#[derive(Clone)]
pub struct Business {
    pub users: Labelled<IntGaugeVec>,
    pub api_keys: Labelled<IntGaugeVec>,
    pub sessions: Labelled<IntGaugeVec>,
}

impl Business {
    /// The gauge of a business metric, by name.
    pub fn get(&self, name: &str) -> Option<&Labelled<IntGaugeVec>> {
        match name {
            "users_total" => Some(&self.users),
            "api_keys_active" => Some(&self.api_keys),
            "sessions_active" => Some(&self.sessions),
            _ => None,
        }
    }
}

/// The families of one end of gRPC calls: `grpc_server_*` for the calls a
/// service answers, `grpc_client_*` for those it makes.
#[derive(Clone)]
pub struct GrpcFamilies {
    pub started: Expiring<IntCounterVec>,
    pub handled: Expiring<IntCounterVec>,
    pub handling: Expiring<HistogramVec>,
    pub received: Expiring<IntCounterVec>,
    pub sent: Expiring<IntCounterVec>,
}

/// Handles to every metric the agent writes.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    families: HashMap<&'static str, Family>,
    pub requests: Expiring<IntCounterVec>,
    pub abandoned: Expiring<IntCounterVec>,
    pub request_duration: Expiring<HistogramVec>,
    pub first_byte: Expiring<HistogramVec>,
    pub requests_by_principal: Expiring<IntCounterVec>,
    pub grpc_server: GrpcFamilies,
    pub grpc_client: GrpcFamilies,
    pub logins: Expiring<IntCounterVec>,
    pub token_refreshes: Expiring<IntCounterVec>,
    pub auth_failures: Expiring<IntCounterVec>,
    pub agent_invocations: Expiring<IntCounterVec>,
    pub agent_duration: Expiring<HistogramVec>,
    pub agent_tokens: Expiring<IntCounterVec>,
    pub tool_invocations: Expiring<IntCounterVec>,
    pub tool_duration: Expiring<HistogramVec>,
    pub db_queries: Expiring<IntCounterVec>,
    pub db_duration: Expiring<HistogramVec>,
    pub db_pool_size: Labelled<IntGaugeVec>,
    pub db_pool_checked_out: Labelled<IntGaugeVec>,
    pub redis_operations: Expiring<IntCounterVec>,
    pub redis_duration: Expiring<HistogramVec>,
    pub redis_errors: Expiring<IntCounterVec>,
    pub redis_connections: Labelled<IntGaugeVec>,
    pub client_requests: Expiring<IntCounterVec>,
    pub client_duration: Expiring<HistogramVec>,
    pub llm_requests: Expiring<IntCounterVec>,
    pub llm_tokens: Expiring<IntCounterVec>,
    pub llm_cost: Expiring<CounterVec>,
    pub llm_unpriced: Expiring<IntCounterVec>,
    pub llm_duration: Expiring<HistogramVec>,
    pub llm_first_token: Expiring<HistogramVec>,
    pub llm_provider_duration: Expiring<HistogramVec>,
    pub mcp_client_requests: Expiring<IntCounterVec>,
    pub mcp_client_duration: Expiring<HistogramVec>,
    pub mcp_server_requests: Expiring<IntCounterVec>,
    pub mcp_server_duration: Expiring<HistogramVec>,
    pub redis_server: RedisServer,
    pub business: Business,
    pub db_server_connections: Labelled<IntGaugeVec>,
    pub collector_query_success: Labelled<IntGaugeVec>,
    pub collector_up: Labelled<IntGaugeVec>,
    pub collector_duration: GaugeVec,
    pub collector_last_success: GaugeVec,
    pub collector_errors: Labelled<IntCounterVec>,
    pub web_config_reloads: Labelled<IntCounterVec>,
    pub config_reloads: Labelled<IntCounterVec>,
    pub web_refused: Labelled<IntCounterVec>,
    pub rule_errors: Expiring<IntCounterVec>,
    pub label_overflow: Expiring<IntCounterVec>,
    pub tcp_active: Expiring<IntGaugeVec>,
    pub tcp_opened: Expiring<IntCounterVec>,
    pub tcp_active_by_peer: Expiring<IntGaugeVec>,
    pub targets: Labelled<IntGaugeVec>,
    pub programs_attached: IntGauge,
    pub events: Labelled<IntCounterVec>,
    pub events_lost: IntCounter,
    pub map_full: IntCounter,
    pub tracked_sockets: Labelled<IntGaugeVec>,
    pub tls_hooked: Labelled<IntGaugeVec>,
    pub unparsed: Expiring<IntCounterVec>,
    pub endpoint_overflow: Expiring<IntCounterVec>,
    pub route_templates: Labelled<IntGaugeVec>,
    pub capture_connections: IntGauge,
    /// The OpenTelemetry names, when `[export] conventions` lists them.
    pub otel: Option<otel::Otel>,
    /// The run loop's time, for the expiring families and label budgets.
    pub clock: Clock,
    sweeper: Sweeper,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_kubernetes(false)
    }

    /// With `kubernetes`, every family labelled by service also carries
    /// `k8s_namespace`, `k8s_pod` and `k8s_container`.
    pub fn with_kubernetes(kubernetes: bool) -> Self {
        Self::build(kubernetes, false)
    }

    /// With `otel`, also the OpenTelemetry names (`otel`), and the
    /// OpenTelemetry labels on `http_client_request_duration_seconds`.
    pub fn build(kubernetes: bool, otel: bool) -> Self {
        use catalogue as c;
        let mut b = Builder {
            registry: Registry::new(),
            families: HashMap::new(),
            clock: Clock::default(),
            sweeper: Sweeper::default(),
            kubernetes,
        };
        b.gauges(&c::BUILD_INFO)
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        b.registry
            .register(Box::new(process::SelfProcess::new()))
            .expect("registered once");
        Self {
            requests: b.expiring_counters(&c::AGENT_REQUESTS),
            abandoned: b.expiring_counters(&c::AGENT_REQUESTS_ABANDONED),
            request_duration: b.expiring_histograms(&c::AGENT_REQUEST_DURATION, buckets::HTTP),
            first_byte: b.expiring_histograms(&c::AGENT_RESPONSE_FIRST_BYTE, buckets::HTTP),
            requests_by_principal: b.expiring_counters(&c::AGENT_REQUESTS_BY_PRINCIPAL),
            grpc_server: GrpcFamilies {
                started: b.expiring_counters(&c::GRPC_SERVER_STARTED),
                handled: b.expiring_counters(&c::GRPC_SERVER_HANDLED),
                handling: b.expiring_histograms(&c::GRPC_SERVER_HANDLING, buckets::HTTP),
                received: b.expiring_counters(&c::GRPC_SERVER_MSG_RECEIVED),
                sent: b.expiring_counters(&c::GRPC_SERVER_MSG_SENT),
            },
            grpc_client: GrpcFamilies {
                started: b.expiring_counters(&c::GRPC_CLIENT_STARTED),
                handled: b.expiring_counters(&c::GRPC_CLIENT_HANDLED),
                handling: b.expiring_histograms(&c::GRPC_CLIENT_HANDLING, buckets::HTTP),
                received: b.expiring_counters(&c::GRPC_CLIENT_MSG_RECEIVED),
                sent: b.expiring_counters(&c::GRPC_CLIENT_MSG_SENT),
            },
            logins: b.expiring_counters(&c::AUTH_LOGIN),
            token_refreshes: b.expiring_counters(&c::AUTH_TOKEN_REFRESH),
            auth_failures: b.expiring_counters(&c::AUTH_FAILED_ATTEMPTS),
            agent_invocations: b.expiring_counters(&c::AGENT_INVOCATIONS),
            agent_duration: b.expiring_histograms(&c::AGENT_EXECUTION_DURATION, buckets::EXECUTION),
            agent_tokens: b.expiring_counters(&c::AGENT_TOKENS_USED),
            tool_invocations: b.expiring_counters(&c::TOOL_INVOCATIONS),
            tool_duration: b.expiring_histograms(&c::TOOL_EXECUTION_DURATION, buckets::EXECUTION),
            db_queries: b.expiring_counters(&c::DB_QUERIES),
            db_duration: b.expiring_histograms(&c::DB_QUERY_DURATION, buckets::DATABASE),
            db_pool_size: b.gauges(&c::DB_POOL_SIZE),
            db_pool_checked_out: b.gauges(&c::DB_POOL_CHECKED_OUT),
            redis_operations: b.expiring_counters(&c::REDIS_OPERATIONS),
            redis_duration: b.expiring_histograms(&c::REDIS_OPERATION_DURATION, buckets::DATABASE),
            redis_errors: b.expiring_counters(&c::REDIS_OPERATION_ERRORS),
            redis_connections: b.gauges(&c::REDIS_CONNECTIONS_ACTIVE),
            client_requests: b.expiring_counters(&c::HTTP_CLIENT_REQUESTS),
            client_duration: if otel {
                let def = Def {
                    labels: otel::HTTP_CLIENT_LABELS,
                    ..c::HTTP_CLIENT_REQUEST_DURATION
                };
                b.expiring_histograms(&def, buckets::HTTP)
            } else {
                b.expiring_histograms(&c::HTTP_CLIENT_REQUEST_DURATION, buckets::HTTP)
            },
            llm_requests: b.expiring_counters(&c::LLM_REQUESTS),
            llm_tokens: b.expiring_counters(&c::LLM_TOKENS_USED),
            llm_cost: b.expiring_float_counters(&c::LLM_COST),
            llm_unpriced: b.expiring_counters(&c::LLM_UNPRICED),
            llm_duration: b.expiring_histograms(&c::LLM_REQUEST_DURATION, buckets::EXECUTION),
            llm_first_token: b.expiring_histograms(&c::LLM_TIME_TO_FIRST_TOKEN, buckets::EXECUTION),
            llm_provider_duration: b.expiring_histograms(&c::LLM_PROVIDER_DURATION, buckets::HTTP),
            mcp_client_requests: b.expiring_counters(&c::MCP_CLIENT_REQUESTS),
            mcp_client_duration: b
                .expiring_histograms(&c::MCP_CLIENT_REQUEST_DURATION, buckets::HTTP),
            mcp_server_requests: b.expiring_counters(&c::MCP_SERVER_REQUESTS),
            mcp_server_duration: b
                .expiring_histograms(&c::MCP_SERVER_REQUEST_DURATION, buckets::HTTP),
            redis_server: RedisServer {
                connected_clients: b.gauges(&c::REDIS_SERVER_CONNECTED_CLIENTS),
                blocked_clients: b.gauges(&c::REDIS_SERVER_BLOCKED_CLIENTS),
                ops_per_second: b.gauges(&c::REDIS_SERVER_OPS_PER_SECOND),
                memory_used: b.gauges(&c::REDIS_SERVER_MEMORY_USED),
                commands_processed: b.float_counters(&c::REDIS_SERVER_COMMANDS_PROCESSED),
                keyspace_hits: b.float_counters(&c::REDIS_SERVER_KEYSPACE_HITS),
                keyspace_misses: b.float_counters(&c::REDIS_SERVER_KEYSPACE_MISSES),
                commands: b.float_counters(&c::REDIS_SERVER_COMMANDS),
                command_seconds: b.float_counters(&c::REDIS_SERVER_COMMAND_DURATION),
                keyspace_keys: b.gauges(&c::REDIS_SERVER_KEYSPACE_KEYS),
                keyspace_expires: b.gauges(&c::REDIS_SERVER_KEYSPACE_EXPIRES),
            },
            business: Business {
                users: b.gauges(&c::USERS_TOTAL),
                api_keys: b.gauges(&c::API_KEYS_ACTIVE),
                sessions: b.gauges(&c::SESSIONS_ACTIVE),
            },
            db_server_connections: b.gauges(&c::DB_SERVER_CONNECTIONS),
            collector_query_success: b.gauges(&c::COLLECTOR_QUERY_SUCCESS),
            collector_up: b.gauges(&c::COLLECTOR_UP),
            collector_duration: b.float_gauges(&c::COLLECTOR_DURATION),
            collector_last_success: b.float_gauges(&c::COLLECTOR_LAST_SUCCESS),
            collector_errors: b.counters(&c::COLLECTOR_ERRORS),
            web_config_reloads: b.counters(&c::WEB_CONFIG_RELOADS),
            config_reloads: b.counters(&c::CONFIG_RELOADS),
            web_refused: b.counters(&c::WEB_REFUSED),
            rule_errors: b.expiring_counters(&c::RULE_ERRORS),
            label_overflow: b.expiring_counters(&c::LABEL_OVERFLOW),
            tcp_active: b.expiring_gauges(&c::TCP_CONNECTIONS_ACTIVE),
            tcp_opened: b.expiring_counters(&c::TCP_CONNECTIONS_OPENED),
            tcp_active_by_peer: b.expiring_gauges(&c::TCP_CONNECTIONS_ACTIVE_BY_PEER),
            targets: b.gauges(&c::TARGETS),
            programs_attached: b.gauge(&c::PROGRAMS_ATTACHED),
            events: b.counters(&c::EVENTS),
            events_lost: b.counter(&c::EVENTS_LOST),
            map_full: b.counter(&c::MAP_FULL),
            tracked_sockets: b.gauges(&c::TRACKED_SOCKETS),
            tls_hooked: b.gauges(&c::TLS_HOOKED_PROCESSES),
            unparsed: b.expiring_counters(&c::UNPARSED_CONNECTIONS),
            endpoint_overflow: b.expiring_counters(&c::ENDPOINT_OVERFLOW),
            route_templates: b.gauges(&c::ROUTE_TEMPLATES),
            capture_connections: b.gauge(&c::CAPTURE_CONNECTIONS),
            otel: otel.then(|| otel::Otel::build(&mut b)),
            registry: b.registry,
            families: b.families,
            clock: b.clock,
            sweeper: b.sweeper,
        }
    }

    /// The exposition in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|err| format!("# encoding failed: {err}\n"))
    }

    /// Removes the series of the expiring families that were not used for
    /// longer than `ttl`; returns how many.
    pub fn expire_idle(&self, ttl: std::time::Duration) -> usize {
        series::expire(&self.sweeper, &self.clock, ttl)
    }

    /// Removes `service`'s series with the labels `rest` from family
    /// `name` (a service that is gone); names that are not labelled
    /// families are ignored.
    pub fn remove(&self, name: &str, service: &ServiceId, rest: &[&str]) {
        let _ = match self.families.get(name) {
            Some(Family::Gauge(vec)) => vec.remove_of(service, rest),
            Some(Family::Counter(vec)) => vec.remove_of(service, rest),
            Some(Family::FloatCounter(vec)) => vec.remove_of(service, rest),
            Some(Family::Histogram(vec)) => vec.remove_of(service, rest),
            None => Ok(()),
        };
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_kubernetes_service_families_carry_the_pod() {
        let metrics = Metrics::with_kubernetes(true);
        let placed = ServiceId {
            name: "api".into(),
            place: Some(Place {
                namespace: "agents".into(),
                pod: "api-7c9f".into(),
                container: "app".into(),
            }),
        };
        metrics
            .requests
            .of(&placed, &["GET", "/", "200", "none"])
            .inc();
        metrics.events.with_label_values(&["data"]).inc();
        let text = metrics.render();
        assert!(
            text.contains(
                "agent_requests_total{auth_type=\"none\",endpoint=\"/\",k8s_container=\"app\",\
                 k8s_namespace=\"agents\",k8s_pod=\"api-7c9f\",method=\"GET\",service=\"api\",\
                 status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("loupe_events_total{kind=\"data\"} 1"),
            "{text}"
        );
        metrics.remove(
            catalogue::AGENT_REQUESTS.name,
            &placed,
            &["GET", "/", "200", "none"],
        );
        assert!(!metrics.render().contains("agent_requests_total{"));
    }

    #[test]
    fn exposes_only_catalogued_families_with_their_help() {
        let metrics = Metrics::new();
        let svc = ServiceId::named("svc");
        metrics.tcp_active.of(&svc, &["inbound"]).set(1);
        metrics.tcp_opened.of(&svc, &["inbound"]).inc();
        metrics
            .tcp_active_by_peer
            .of(&svc, &["127.0.0.1:6379"])
            .set(2);
        metrics.targets.with_label_values(&["svc"]).set(1);
        metrics.events.with_label_values(&["tcp_state"]).inc();
        metrics.tracked_sockets.with_label_values(&["svc"]).set(3);
        let request = ["GET", "/users/{id}", "200", "jwt"];
        metrics.requests.of(&svc, &request).inc();
        metrics
            .request_duration
            .of(&svc, &request[..2])
            .observe(0.07);
        metrics.first_byte.of(&svc, &request[..2]).observe(0.02);
        metrics
            .requests_by_principal
            .of(&svc, &["jwt", "1a2b3c4d"])
            .inc();
        metrics.unparsed.of(&svc, &["http2"]).inc();
        metrics.endpoint_overflow.of(&svc, &[]).inc();
        for family in metrics.registry.gather() {
            let def = catalogue::find(family.name())
                .unwrap_or_else(|| panic!("{} is not in the catalogue", family.name()));
            assert_eq!(family.help(), def.help, "{}", def.name);
            let kind = format!("{:?}", family.get_field_type()).to_lowercase();
            if def.kind == catalogue::Kind::Histogram {
                let count = family.get_metric()[0].get_histogram().get_bucket().len();
                assert_eq!(count, buckets::HTTP.len(), "{}", def.name);
            }
            assert_eq!(kind, def.kind.as_str(), "{}", def.name);
            for metric in family.get_metric() {
                let labels: Vec<&str> = metric.get_label().iter().map(|l| l.name()).collect();
                let mut expected = def.labels.to_vec();
                expected.sort_unstable();
                assert_eq!(labels, expected, "{}", def.name);
            }
        }
        let text = metrics.render();
        assert!(text.contains("loupe_build_info{version=\""), "{text}");
        assert!(text.contains("tcp_connections_active{direction=\"inbound\",service=\"svc\"} 1"));
    }

    #[test]
    fn the_opentelemetry_names_come_only_when_asked_for() {
        let svc = ServiceId::named("svc");
        assert!(Metrics::new().otel.is_none());
        let metrics = Metrics::build(false, true);
        let otel = metrics.otel.as_ref().expect("asked for");
        let server = ["GET", "/users/{id}", "200", "http", "1.1"];
        otel.http_server.of(&svc, &server).observe(0.07);
        let tokens = ["chat", "openai", "input", "", "gpt-4o", "api.openai.com"];
        otel.gen_ai_tokens.of(&svc, &tokens).observe(12.0);
        let client = ["api:8080", "POST", "api", "8080", "200", "2"];
        metrics.client_duration.of(&svc, &client).observe(0.1);
        let text = metrics.render();
        for (family, bucket) in [
            ("http_server_request_duration_seconds", "le=\"0.075\""),
            ("gen_ai_client_token_usage", "le=\"16\""),
            (
                "http_client_request_duration_seconds",
                "server_port=\"8080\"",
            ),
        ] {
            let def = catalogue::find(family).expect("catalogued");
            assert!(
                text.contains(&format!("# HELP {family} {}", def.help)),
                "{text}"
            );
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{family}_bucket{{")) && l.contains(bucket)),
                "{family}: {text}"
            );
        }
    }

    #[test]
    fn removes_series_of_a_service() {
        let metrics = Metrics::new();
        let svc = ServiceId::named("svc");
        metrics.tcp_opened.of(&svc, &["outbound"]).inc();
        metrics
            .tcp_active_by_peer
            .of(&svc, &["10.0.0.1:5432"])
            .set(0);
        metrics.remove("tcp_connections_opened_total", &svc, &["outbound"]);
        metrics.remove("tcp_connections_active_by_peer", &svc, &["10.0.0.1:5432"]);
        metrics
            .request_duration
            .of(&svc, &["GET", "/x"])
            .observe(1.0);
        metrics.remove("agent_request_duration_seconds", &svc, &["GET", "/x"]);
        metrics.remove("not_a_family", &svc, &["GET", "/x"]);
        let text = metrics.render();
        assert!(!text.contains("tcp_connections_opened_total{"), "{text}");
        assert!(!text.contains("10.0.0.1:5432"), "{text}");
        assert!(
            !text.contains("agent_request_duration_seconds_bucket{"),
            "{text}"
        );
    }
}
