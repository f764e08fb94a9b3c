//! Labelled families. A family labelled by `service` takes the service as
//! a typed [`ServiceId`]; in Kubernetes mode it carries the service's pod
//! too, as the `k8s_namespace`, `k8s_pod` and `k8s_container` labels after
//! `service` (empty for a process outside any pod).
use std::fmt;

use prometheus::core::{MetricVec, MetricVecBuilder};

/// The labels a Kubernetes-placed service adds after `service`.
pub const K8S_LABELS: [&str; 3] = ["k8s_namespace", "k8s_pod", "k8s_container"];
/// More labels than any family has, the Kubernetes ones included.
const MAX_LABELS: usize = 12;

/// Where a service's processes run in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Who a series is about: a service by name, and for one counted per pod
/// and container, where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceId {
    pub name: String,
    pub place: Option<Place>,
}

impl ServiceId {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            place: None,
        }
    }
}

/// As logs show it: `name`, or `name/namespace/pod/container`.
impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(place) = &self.place {
            write!(f, "/{}/{}/{}", place.namespace, place.pod, place.container)?;
        }
        Ok(())
    }
}

/// A family whose first label may be a service to expand.
#[derive(Clone)]
pub struct Labelled<V> {
    pub(super) inner: V,
    expand: bool,
}

impl<V> Labelled<V> {
    pub(super) fn new(inner: V, expand: bool) -> Self {
        Self { inner, expand }
    }

    /// The label values of `service`'s series with `rest` after it.
    pub(super) fn values<'a>(
        &self,
        service: &'a ServiceId,
        rest: &[&'a str],
    ) -> ([&'a str; MAX_LABELS], usize) {
        let mut buf = [""; MAX_LABELS];
        buf[0] = &service.name;
        let mut n = 1;
        if self.expand {
            if let Some(place) = &service.place {
                buf[1] = &place.namespace;
                buf[2] = &place.pod;
                buf[3] = &place.container;
            }
            n = 4;
        }
        let rest = &rest[..rest.len().min(MAX_LABELS - n)];
        buf[n..n + rest.len()].copy_from_slice(rest);
        (buf, n + rest.len())
    }
}

impl<T: MetricVecBuilder> Labelled<MetricVec<T>> {
    /// The series of `service` with the other labels `rest`.
    pub fn of(&self, service: &ServiceId, rest: &[&str]) -> T::M {
        let (buf, n) = self.values(service, rest);
        self.inner.with_label_values(&buf[..n])
    }

    /// A family not labelled by service, or one whose service is known by
    /// name only (a collector's).
    pub fn with_label_values(&self, values: &[&str]) -> T::M {
        match values.split_first() {
            Some((name, rest)) if self.expand => self.of(&ServiceId::named(*name), rest),
            _ => self.inner.with_label_values(values),
        }
    }

    pub(super) fn remove_values(&self, values: &[&str]) -> prometheus::Result<()> {
        self.inner.remove_label_values(values)
    }

    pub(super) fn remove_of(&self, service: &ServiceId, rest: &[&str]) -> prometheus::Result<()> {
        let (buf, n) = self.values(service, rest);
        self.remove_values(&buf[..n])
    }

    pub fn reset(&self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounterVec, Opts};

    use super::*;

    #[test]
    fn a_placed_service_carries_its_pod() {
        let placed = ServiceId {
            name: "api".into(),
            place: Some(Place {
                namespace: "agents".into(),
                pod: "api-7c9f".into(),
                container: "app".into(),
            }),
        };
        assert_eq!(placed.to_string(), "api/agents/api-7c9f/app");
        let vec =
            IntCounterVec::new(Opts::new("m", "h"), &["service", "a", "b", "c", "d"]).unwrap();
        let expanded = Labelled::new(vec, true);
        let (buf, n) = expanded.values(&placed, &["GET"]);
        assert_eq!(&buf[..n], ["api", "agents", "api-7c9f", "app", "GET"]);
        // A service outside any pod: empty Kubernetes labels.
        let outside = ServiceId::named("api");
        let (buf, n) = expanded.values(&outside, &["GET"]);
        assert_eq!(&buf[..n], ["api", "", "", "", "GET"]);
        let vec = IntCounterVec::new(Opts::new("m", "h"), &["service", "a"]).unwrap();
        let (buf, n) = Labelled::new(vec, false).values(&placed, &["GET"]);
        assert_eq!(&buf[..n], ["api", "GET"], "outside Kubernetes mode");
    }
}
