//! `[[collectors.database.queries]]`: metrics of the user's own, each from
//! one SQL query, in the spirit of sql_exporter. A row is a series: its
//! label columns give the labels, its value column the value.
use serde::Deserialize;

use super::ConfigError;
use crate::export::catalogue;
pub use crate::export::custom::{CustomQuery, QueryKind};

/// Series one query may export when it sets no `max_series`.
pub const DEFAULT_MAX_SERIES: usize = 100;
/// The most label columns a query may name.
pub const MAX_LABELS: usize = 8;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    pub name: Option<String>,
    pub help: Option<String>,
    /// `gauge` (default) or `counter`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub query: Option<String>,
    /// The column holding the value (default `value`).
    pub value: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    pub max_series: Option<usize>,
}

fn metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A name loupe already exports (the catalogue, the process metrics, and
/// the series a histogram or counter family adds).
fn taken(name: &str) -> bool {
    catalogue::ALL.iter().chain(catalogue::PROCESS).any(|def| {
        name == def.name
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_prefix(def.name) == Some(suffix))
    })
}

pub fn build(origin: &str, raw: Vec<FileQuery>) -> Result<Vec<CustomQuery>, ConfigError> {
    let mut queries: Vec<CustomQuery> = Vec::with_capacity(raw.len());
    for (i, raw) in raw.into_iter().enumerate() {
        let origin = format!("{origin}.queries[{i}]");
        let bad = |reason: String| ConfigError::Collector {
            origin: origin.clone(),
            reason,
        };
        let name = raw
            .name
            .ok_or_else(|| bad("give the metric a `name`".into()))?;
        if !metric_name(&name) {
            return Err(bad(format!(
                "`{name}` is not a metric name (letters, digits, _ and :, not starting with a digit)"
            )));
        }
        if taken(&name) {
            return Err(bad(format!(
                "`{name}` is a metric loupe exports itself; pick another name"
            )));
        }
        if queries.iter().any(|q| q.name == name) {
            return Err(bad(format!("`{name}` is defined twice")));
        }
        let kind = match raw.kind.as_deref() {
            None | Some("gauge") => QueryKind::Gauge,
            Some("counter") => QueryKind::Counter,
            Some(other) => return Err(bad(format!("type `{other}`: use gauge or counter"))),
        };
        let sql = raw
            .query
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("give the SQL as `query`".into()))?;
        let value_column = raw.value.unwrap_or_else(|| "value".to_owned());
        if raw.labels.len() > MAX_LABELS {
            return Err(bad(format!("at most {MAX_LABELS} label columns")));
        }
        for (j, label) in raw.labels.iter().enumerate() {
            if !label_name(label) {
                return Err(bad(format!(
                    "label column `{label}` is not a label name (letters, digits, _; not __)"
                )));
            }
            if raw.labels[..j].contains(label) || *label == value_column {
                return Err(bad(format!(
                    "label column `{label}` is named twice or is the value column"
                )));
            }
        }
        let max_series = raw.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            return Err(bad("max_series must be at least 1".into()));
        }
        let help = raw
            .help
            .unwrap_or_else(|| format!("Custom query {name} (database collector)."));
        queries.push(CustomQuery {
            name,
            help,
            kind,
            sql,
            value_column,
            label_columns: raw.labels,
            max_series,
        });
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> FileQuery {
        FileQuery {
            name: Some(name.into()),
            query: Some("SELECT status, COUNT(*) AS value FROM orders GROUP BY status".into()),
            labels: vec!["status".into()],
            ..FileQuery::default()
        }
    }

    fn error(raw: FileQuery) -> String {
        build("f", vec![raw]).unwrap_err().to_string()
    }

    #[test]
    fn queries_are_validated_with_the_reason_named() {
        let built = build("f", vec![query("orders"), query("orders_open")]).unwrap();
        assert_eq!(built[0].kind, QueryKind::Gauge);
        assert_eq!(built[0].value_column, "value");
        assert_eq!(built[1].max_series, DEFAULT_MAX_SERIES);
        assert!(error(query("users_total")).contains("loupe exports itself"));
        assert!(error(query("db_query_duration_seconds_bucket")).contains("exports itself"));
        assert!(error(query("9lives")).contains("not a metric name"));
        let twice = build("f", vec![query("a"), query("a")]).unwrap_err();
        assert!(twice.to_string().contains("queries[1]"), "{twice}");
        let err = error(FileQuery {
            kind: Some("histogram".into()),
            ..query("a")
        });
        assert!(err.contains("gauge or counter"), "{err}");
        let err = error(FileQuery {
            labels: vec!["__name__".into()],
            ..query("a")
        });
        assert!(err.contains("not a label name"), "{err}");
        let err = error(FileQuery {
            labels: vec!["value".into()],
            ..query("a")
        });
        assert!(err.contains("value column"), "{err}");
        let err = error(FileQuery {
            query: Some("  ".into()),
            ..query("a")
        });
        assert!(err.contains("`query`"), "{err}");
    }
}
