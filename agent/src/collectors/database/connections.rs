//! The server's view of the service's connections, by state:
//! PostgreSQL's `pg_stat_activity`, MySQL/MariaDB's processlist (whose
//! idle-in-transaction state needs the PROCESS privilege to see
//! `INNODB_TRX`; without it, idle connections are not told apart). The
//! collector's own connection is left out.
use sqlx::{AnyPool, Row};

use super::{Dialect, QueryError};
use crate::config::collectors::ConnectionFilter;

/// States the PostgreSQL view reports.
pub const POSTGRES_STATES: &[&str] = &[
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "other",
];
/// States MySQL reports when the transactions are visible, and when not.
pub const MYSQL_STATES: &[&str] = &["active", "idle", "idle_in_transaction", "other"];
pub const MYSQL_STATES_NO_TRX: &[&str] = &["active", "idle", "other"];

/// The `state` label of a server-reported state.
pub fn state_label(state: &str) -> &'static str {
    match state {
        "active" => "active",
        "idle" => "idle",
        "idle in transaction" => "idle_in_transaction",
        "idle in transaction (aborted)" => "idle_in_transaction_aborted",
        _ => "other",
    }
}

/// The query and its bind values; `with_trx`: MySQL's processlist joined
/// with the open transactions.
pub fn query(
    dialect: Dialect,
    filter: &ConnectionFilter,
    with_trx: bool,
) -> Result<(String, Vec<String>), QueryError> {
    let mut binds = Vec::new();
    let mut placeholder = |value: String| {
        binds.push(value);
        match dialect {
            Dialect::Postgres => format!("${}", binds.len()),
            _ => "?".to_owned(),
        }
    };
    let mut sql = match dialect {
        Dialect::Postgres => "SELECT COALESCE(state, '') AS state, COUNT(*) AS n \
             FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            .to_owned(),
        Dialect::Mysql => {
            let in_trx = if with_trx {
                "WHEN COMMAND = 'Sleep' AND ID IN (SELECT trx_mysql_thread_id FROM \
                 information_schema.INNODB_TRX) THEN 'idle in transaction' "
            } else {
                ""
            };
            format!(
                "SELECT CASE {in_trx}WHEN COMMAND = 'Sleep' THEN 'idle' \
                 WHEN COMMAND IN ('Query', 'Execute') THEN 'active' ELSE 'other' END AS state, \
                 COUNT(*) AS n FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID()"
            )
        }
        Dialect::Sqlite => {
            return Err(QueryError::Refused(
                "SQLite has no server connections".into(),
            ));
        }
    };
    // No filter given: the collector's own user's connections.
    let unfiltered = *filter == ConnectionFilter::default();
    let user = match &filter.user {
        Some(user) => Some(placeholder(user.clone())),
        None if !unfiltered => None,
        None if dialect == Dialect::Postgres => Some("current_user".to_owned()),
        None => Some("SUBSTRING_INDEX(CURRENT_USER(), '@', 1)".to_owned()),
    };
    if let Some(user) = user {
        let column = if dialect == Dialect::Postgres {
            "usename"
        } else {
            "USER"
        };
        sql.push_str(&format!(" AND {column} = {user}"));
    }
    if let Some(application) = &filter.application {
        if dialect == Dialect::Mysql {
            return Err(QueryError::Refused(
                "MySQL's processlist has no application name: filter by \
                 connections_user or connections_client_addr"
                    .into(),
            ));
        }
        let p = placeholder(application.clone());
        sql.push_str(&format!(" AND application_name = {p}"));
    }
    if let Some(addr) = filter.client_addr {
        let p = placeholder(addr.to_string());
        sql.push_str(&match dialect {
            Dialect::Postgres => format!(" AND client_addr = CAST({p} AS inet)"),
            _ => format!(" AND SUBSTRING_INDEX(HOST, ':', 1) = {p}"),
        });
    }
    sql.push_str(" GROUP BY 1");
    Ok((sql, binds))
}

/// Connections per `state` label.
pub async fn count(
    pool: &AnyPool,
    sql: &str,
    binds: &[String],
) -> Result<Vec<(&'static str, i64)>, QueryError> {
    let mut query = sqlx::query(sql);
    for value in binds {
        query = query.bind(value.as_str());
    }
    let rows = query.fetch_all(pool).await?;
    let mut counts: Vec<(&'static str, i64)> = Vec::new();
    for row in rows {
        let state = state_label(&row.try_get::<String, _>(0)?);
        let n: i64 = row.try_get(1)?;
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, total)) => *total += n,
            None => counts.push((state, n)),
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_follow_the_filter_and_the_dialect() {
        let none = ConnectionFilter::default();
        let (sql, binds) = query(Dialect::Postgres, &none, false).unwrap();
        assert!(
            sql.ends_with("AND usename = current_user GROUP BY 1"),
            "{sql}"
        );
        assert!(binds.is_empty());
        let app = ConnectionFilter {
            application: Some("agent-api".into()),
            client_addr: Some("10.1.2.3".parse().unwrap()),
            ..ConnectionFilter::default()
        };
        let (sql, binds) = query(Dialect::Postgres, &app, false).unwrap();
        assert!(
            !sql.contains("usename"),
            "the filter given replaces the user: {sql}"
        );
        assert!(sql.contains("application_name = $1 AND client_addr = CAST($2 AS inet)"));
        assert_eq!(binds, ["agent-api", "10.1.2.3"]);
        assert!(query(Dialect::Mysql, &app, true).is_err());
        let user = ConnectionFilter {
            user: Some("api".into()),
            ..ConnectionFilter::default()
        };
        let (sql, binds) = query(Dialect::Mysql, &user, true).unwrap();
        assert!(
            sql.contains("INNODB_TRX") && sql.contains("AND USER = ?"),
            "{sql}"
        );
        assert_eq!(binds, ["api"]);
        let (sql, _) = query(Dialect::Mysql, &none, false).unwrap();
        assert!(!sql.contains("INNODB_TRX") && sql.contains("CURRENT_USER()"));
        assert!(query(Dialect::Sqlite, &none, false).is_err());
        assert_eq!(
            state_label("idle in transaction (aborted)"),
            "idle_in_transaction_aborted"
        );
        assert_eq!(state_label("fastpath function call"), "other");
    }
}
