//! Custom queries: each row a series, read as it streams in, so a query that
//! returns too many rows is stopped at `max_series + 1` and refused rather
//! than loaded whole.
use futures_util::TryStreamExt;
use sqlx::{AnyPool, Row, any::AnyRow};

use super::QueryError;
use crate::{config::queries::CustomQuery, export::custom::Sample};

/// Longest label value kept (characters); longer ones are cut.
const MAX_LABEL_VALUE: usize = 128;

pub async fn run(pool: &AnyPool, query: &CustomQuery) -> Result<Vec<Sample>, QueryError> {
    let mut rows = sqlx::query(&query.sql).fetch(pool);
    let mut samples = Vec::new();
    while let Some(row) = rows.try_next().await? {
        if samples.len() == query.max_series {
            return Err(QueryError::Refused(format!(
                "more than {} rows (max_series); aggregate in the query or raise max_series",
                query.max_series
            )));
        }
        samples.push(sample(query, &row)?);
    }
    Ok(samples)
}

fn sample(query: &CustomQuery, row: &AnyRow) -> Result<Sample, QueryError> {
    let labels = query
        .label_columns
        .iter()
        .map(|column| label(row, column))
        .collect::<Result<_, _>>()?;
    Ok((labels, value(row, &query.value_column)?))
}

/// A column that is missing, NULL or of a type the value cannot be read
/// from; the message names the column and the fix.
fn unreadable(column: &str, what: &str, err: &sqlx::Error) -> QueryError {
    QueryError::Refused(format!(
        "column `{column}`: {err}; the query must return it as {what} (CAST it)"
    ))
}

fn value(row: &AnyRow, column: &str) -> Result<f64, QueryError> {
    if let Ok(Some(v)) = row.try_get::<Option<i64>, _>(column) {
        // Beyond 2^53 precision is lost, as in every Prometheus value.
        return Ok(v as f64);
    }
    if let Ok(Some(v)) = row.try_get::<Option<bool>, _>(column) {
        return Ok(f64::from(u8::from(v)));
    }
    match row.try_get::<Option<f64>, _>(column) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(QueryError::Refused(format!(
            "column `{column}` is NULL; use COALESCE in the query"
        ))),
        Err(err) => Err(unreadable(column, "an integer or a float", &err)),
    }
}

fn label(row: &AnyRow, column: &str) -> Result<String, QueryError> {
    let text = if let Ok(v) = row.try_get::<Option<String>, _>(column) {
        v.unwrap_or_default()
    } else if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
        v.map(|v| v.to_string()).unwrap_or_default()
    } else {
        match row.try_get::<Option<bool>, _>(column) {
            Ok(v) => v.map(|v| v.to_string()).unwrap_or_default(),
            Err(err) => return Err(unreadable(column, "text or an integer", &err)),
        }
    };
    Ok(text.chars().take(MAX_LABEL_VALUE).collect())
}
