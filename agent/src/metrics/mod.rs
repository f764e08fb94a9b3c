//! The metric handles the agent updates, built from the catalogue, and the
//! bookkeeping that keeps label sets bounded and expires idle series.
pub mod catalogue;
mod series;

use prometheus::{
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    process_collector::ProcessCollector,
};
pub use series::{LabelLimit, SeriesClock};

use self::catalogue::Def;

/// Overflow value of a bounded label.
pub const OTHER: &str = "__other__";

fn opts(def: &Def) -> Opts {
    Opts::new(def.name, def.help)
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("catalogue names are unique");
    c
}

fn gauge_vec(registry: &Registry, def: &Def) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(opts(def), def.labels).expect("valid def"),
    )
}

fn counter_vec(registry: &Registry, def: &Def) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(opts(def), def.labels).expect("valid def"),
    )
}

/// Handles to every metric the agent writes.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub tcp_active: IntGaugeVec,
    pub tcp_opened: IntCounterVec,
    pub tcp_active_by_peer: IntGaugeVec,
    pub targets: IntGaugeVec,
    pub programs_attached: IntGauge,
    pub events: IntCounterVec,
    pub events_lost: IntCounter,
    pub map_full: IntCounter,
    pub tracked_sockets: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        use catalogue as c;
        let registry = Registry::new();
        let build_info = gauge_vec(&registry, &c::BUILD_INFO);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(ProcessCollector::for_self()))
            .expect("registered once");
        Self {
            tcp_active: gauge_vec(&registry, &c::TCP_CONNECTIONS_ACTIVE),
            tcp_opened: counter_vec(&registry, &c::TCP_CONNECTIONS_OPENED),
            tcp_active_by_peer: gauge_vec(&registry, &c::TCP_CONNECTIONS_ACTIVE_BY_PEER),
            targets: gauge_vec(&registry, &c::TARGETS),
            programs_attached: register(
                &registry,
                IntGauge::with_opts(opts(&c::PROGRAMS_ATTACHED)).expect("valid def"),
            ),
            events: counter_vec(&registry, &c::EVENTS),
            events_lost: register(
                &registry,
                IntCounter::with_opts(opts(&c::EVENTS_LOST)).expect("valid def"),
            ),
            map_full: register(
                &registry,
                IntCounter::with_opts(opts(&c::MAP_FULL)).expect("valid def"),
            ),
            tracked_sockets: gauge_vec(&registry, &c::TRACKED_SOCKETS),
            registry,
        }
    }

    /// The exposition in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|err| format!("# encoding failed: {err}\n"))
    }

    /// Removes one expired series. Unknown names are ignored.
    pub fn remove(&self, name: &str, labels: &[String]) {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let vec_gauge = match name {
            n if n == catalogue::TCP_CONNECTIONS_ACTIVE.name => &self.tcp_active,
            n if n == catalogue::TCP_CONNECTIONS_ACTIVE_BY_PEER.name => &self.tcp_active_by_peer,
            n if n == catalogue::TARGETS.name => &self.targets,
            n if n == catalogue::TRACKED_SOCKETS.name => &self.tracked_sockets,
            n if n == catalogue::TCP_CONNECTIONS_OPENED.name => {
                let _ = self.tcp_opened.remove_label_values(&labels);
                return;
            }
            _ => return,
        };
        let _ = vec_gauge.remove_label_values(&labels);
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
    fn exposes_only_catalogued_families_with_their_help() {
        let metrics = Metrics::new();
        metrics
            .tcp_active
            .with_label_values(&["svc", "inbound"])
            .set(1);
        metrics
            .tcp_opened
            .with_label_values(&["svc", "inbound"])
            .inc();
        metrics
            .tcp_active_by_peer
            .with_label_values(&["svc", "127.0.0.1:6379"])
            .set(2);
        metrics.targets.with_label_values(&["svc"]).set(1);
        metrics.events.with_label_values(&["tcp_state"]).inc();
        metrics.tracked_sockets.with_label_values(&["svc"]).set(3);
        for family in metrics.registry.gather() {
            let def = catalogue::find(family.name())
                .unwrap_or_else(|| panic!("{} is not in the catalogue", family.name()));
            assert_eq!(family.help(), def.help, "{}", def.name);
            let kind = format!("{:?}", family.get_field_type()).to_lowercase();
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
    fn removes_expired_series() {
        let metrics = Metrics::new();
        metrics
            .tcp_opened
            .with_label_values(&["svc", "outbound"])
            .inc();
        metrics
            .tcp_active_by_peer
            .with_label_values(&["svc", "10.0.0.1:5432"])
            .set(0);
        metrics.remove(
            "tcp_connections_opened_total",
            &["svc".into(), "outbound".into()],
        );
        metrics.remove(
            "tcp_connections_active_by_peer",
            &["svc".into(), "10.0.0.1:5432".into()],
        );
        let text = metrics.render();
        assert!(!text.contains("tcp_connections_opened_total{"), "{text}");
        assert!(!text.contains("10.0.0.1:5432"), "{text}");
    }
}
