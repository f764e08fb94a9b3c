//! Labelled families. In Kubernetes mode a service's label value carries
//! its pod (`name␟namespace␟pod␟container`, see [`service_value`]) and is
//! expanded here into the `service`, `k8s_namespace`, `k8s_pod` and
//! `k8s_container` labels, so that the code that counts needs no change.
use prometheus::core::{MetricVec, MetricVecBuilder};

/// The labels a Kubernetes-placed service adds after `service`.
pub const K8S_LABELS: [&str; 3] = ["k8s_namespace", "k8s_pod", "k8s_container"];
/// Separates the parts of a service's label value (never in a name:
/// service names come from the config or an executable's name).
const SEPARATOR: char = '\u{1f}';
/// More labels than any family has, the Kubernetes ones included.
const MAX_LABELS: usize = 12;

/// The label value of a service placed in a pod.
pub fn service_value(name: &str, namespace: &str, pod: &str, container: &str) -> String {
    [name, namespace, pod, container].join(&SEPARATOR.to_string())
}

/// The name part of a service's label value.
pub fn service_name(value: &str) -> &str {
    value.split(SEPARATOR).next().unwrap_or(value)
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
}

impl<T: MetricVecBuilder> Labelled<MetricVec<T>> {
    pub fn with_label_values(&self, values: &[&str]) -> T::M {
        if !self.expand {
            return self.inner.with_label_values(values);
        }
        let (buf, n) = expand(values);
        self.inner.with_label_values(&buf[..n])
    }

    pub fn remove_label_values(&self, values: &[&str]) -> prometheus::Result<()> {
        if !self.expand {
            return self.inner.remove_label_values(values);
        }
        let (buf, n) = expand(values);
        self.inner.remove_label_values(&buf[..n])
    }

    pub fn reset(&self) {
        self.inner.reset();
    }
}

/// `values` with the first one split into its four parts.
fn expand<'a>(values: &[&'a str]) -> ([&'a str; MAX_LABELS], usize) {
    let mut buf = [""; MAX_LABELS];
    let Some((first, rest)) = values.split_first() else {
        return (buf, 0);
    };
    let mut parts = first.split(SEPARATOR);
    for slot in &mut buf[..4] {
        *slot = parts.next().unwrap_or("");
    }
    let n = rest.len().min(MAX_LABELS - 4);
    buf[4..4 + n].copy_from_slice(&rest[..n]);
    (buf, 4 + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_values_expand_into_four_labels() {
        let placed = service_value("api", "agents", "api-7c9f", "app");
        assert_eq!(service_name(&placed), "api");
        let (buf, n) = expand(&[&placed, "GET"]);
        assert_eq!(&buf[..n], ["api", "agents", "api-7c9f", "app", "GET"]);
        // A service outside any pod: empty Kubernetes labels.
        let (buf, n) = expand(&["api", "GET"]);
        assert_eq!(&buf[..n], ["api", "", "", "", "GET"]);
        assert_eq!(service_name("api"), "api");
    }
}
