//! The families of the user's custom SQL queries (`[[collectors.database.
//! queries]]`). Their names come from the config, not the catalogue; each
//! run replaces a family's series whole, so a row that disappears takes its
//! series with it, and a failed run leaves the family absent.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus::{
    Registry,
    core::{Collector, Desc},
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Gauge,
    Counter,
}

/// A validated custom query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomQuery {
    pub name: String,
    pub help: String,
    pub kind: QueryKind,
    pub sql: String,
    pub value_column: String,
    pub label_columns: Vec<String>,
    pub max_series: usize,
}

/// One series: label values (in the query's label order) and its value.
pub type Sample = (Vec<String>, f64);

struct Definition {
    desc: Desc,
    kind: QueryKind,
    /// Label names sorted, with the index of each in the query's order.
    labels: Vec<(String, usize)>,
}

/// Handle to every custom family; clones share the series.
#[derive(Clone)]
pub struct CustomFamilies {
    definitions: Arc<[Definition]>,
    samples: Arc<Mutex<Vec<Vec<Sample>>>>,
}

impl CustomFamilies {
    /// Registers one family per query (names were checked against the
    /// catalogue when the config was read).
    pub fn register(registry: &Registry, queries: &[CustomQuery]) -> prometheus::Result<Self> {
        let definitions = queries
            .iter()
            .map(|q| {
                let mut labels: Vec<(String, usize)> = q
                    .label_columns
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, name)| (name, i))
                    .collect();
                labels.sort();
                Ok(Definition {
                    desc: Desc::new(
                        q.name.clone(),
                        q.help.clone(),
                        q.label_columns.clone(),
                        HashMap::new(),
                    )?,
                    kind: q.kind,
                    labels,
                })
            })
            .collect::<prometheus::Result<Arc<[Definition]>>>()?;
        let families = Self {
            samples: Arc::new(Mutex::new(vec![Vec::new(); definitions.len()])),
            definitions,
        };
        registry.register(Box::new(families.clone()))?;
        Ok(families)
    }

    /// The series of the `index`th query from now on (empty: absent).
    pub fn set(&self, index: usize, samples: Vec<Sample>) {
        let mut all = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = all.get_mut(index) {
            *slot = samples;
        }
    }
}

impl Collector for CustomFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.definitions.iter().map(|d| &d.desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let all = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        self.definitions
            .iter()
            .zip(all.iter())
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(def, samples)| {
                let mut family = MetricFamily::default();
                family.set_name(def.desc.fq_name.clone());
                family.set_help(def.desc.help.clone());
                family.set_field_type(match def.kind {
                    QueryKind::Gauge => MetricType::GAUGE,
                    QueryKind::Counter => MetricType::COUNTER,
                });
                let metrics = samples.iter().map(|(values, value)| {
                    let mut metric = Metric::default();
                    metric.set_label(
                        def.labels
                            .iter()
                            .map(|(name, i)| {
                                let mut pair = LabelPair::default();
                                pair.set_name(name.clone());
                                pair.set_value(values.get(*i).cloned().unwrap_or_default());
                                pair
                            })
                            .collect(),
                    );
                    match def.kind {
                        QueryKind::Gauge => {
                            let mut gauge = Gauge::default();
                            gauge.set_value(*value);
                            metric.set_gauge(gauge);
                        }
                        QueryKind::Counter => {
                            let mut counter = Counter::default();
                            counter.set_value(*value);
                            metric.set_counter(counter);
                        }
                    }
                    metric
                });
                family.set_metric(metrics.collect());
                family
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::queries::{FileQuery, build};

    #[test]
    fn series_are_replaced_whole_and_typed() {
        let queries = build(
            "f",
            vec![
                FileQuery {
                    name: Some("orders".into()),
                    query: Some("SELECT 1".into()),
                    labels: vec!["status".into(), "region".into()],
                    ..FileQuery::default()
                },
                FileQuery {
                    name: Some("signups_total".into()),
                    kind: Some("counter".into()),
                    query: Some("SELECT 1".into()),
                    ..FileQuery::default()
                },
            ],
        )
        .unwrap();
        let registry = Registry::new();
        let families = CustomFamilies::register(&registry, &queries).unwrap();
        let text = |r: &Registry| {
            prometheus::TextEncoder::new()
                .encode_to_string(&r.gather())
                .unwrap()
        };
        assert_eq!(text(&registry), "", "absent before a first run");
        families.set(0, vec![(vec!["open".into(), "eu".into()], 3.0)]);
        families.set(1, vec![(vec![], 42.0)]);
        let out = text(&registry);
        assert!(
            out.contains("orders{region=\"eu\",status=\"open\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE signups_total counter\nsignups_total 42\n"),
            "{out}"
        );
        families.set(0, Vec::new());
        assert!(!text(&registry).contains("orders"));
        // A second registration of the same names is refused.
        assert!(CustomFamilies::register(&registry, &queries).is_err());
    }
}
