//! The database collector (PostgreSQL, MySQL/MariaDB or SQLite, through
//! sqlx): business gauges counted in the service's own database, the
//! user's custom queries, and the server's view of the service's
//! connections. A query that fails (a missing table or column, a bad
//! result) skips its metric, says so once and sets `loupe_collector_query_
//! success` to 0 without failing the collector; a connection that fails
//! does, and is reopened at the next run.
mod connections;
mod custom;

use std::{collections::HashSet, time::Duration};

use sqlx::{AnyPool, any::AnyPoolOptions};
use tracing::{info, warn};

use super::Collector;
use crate::{
    config::collectors::{BusinessTables, DatabaseConfig},
    export::{Metrics, custom::CustomFamilies},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    fn of(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?;
        match scheme {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::Mysql),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    /// Statements that make the server itself stop a query at `timeout`
    /// (MariaDB's variable, then MySQL's: each server knows one).
    fn statement_timeout(self, timeout: Duration) -> Vec<String> {
        let ms = timeout.as_millis();
        match self {
            Self::Postgres => vec![format!("SET statement_timeout = {ms}")],
            Self::Mysql => vec![
                format!("SET SESSION max_statement_time = {}", timeout.as_secs_f64()),
                format!("SET SESSION max_execution_time = {ms}"),
            ],
            Self::Sqlite => Vec::new(),
        }
    }

    /// `column` lies in the future. SQLite stores times as numbers (Unix
    /// seconds) or text, and says which per value.
    fn in_future(self, column: &str) -> String {
        match self {
            Self::Postgres | Self::Mysql => format!("{column} > CURRENT_TIMESTAMP"),
            Self::Sqlite => format!(
                "(CASE WHEN typeof({column}) IN ('integer', 'real') \
                 THEN {column} > CAST(strftime('%s', 'now') AS REAL) \
                 ELSE {column} > CURRENT_TIMESTAMP END)"
            ),
        }
    }
}

/// One business gauge: its metric and the query that counts it.
struct Gauge {
    name: &'static str,
    sql: String,
}

fn gauges(dialect: Dialect, t: &BusinessTables) -> Vec<Gauge> {
    vec![
        Gauge {
            name: "users_total",
            sql: format!("SELECT COUNT(*) FROM {}", t.users),
        },
        Gauge {
            name: "api_keys_active",
            sql: format!(
                "SELECT COUNT(*) FROM {} WHERE {} AND ({} IS NULL OR {})",
                t.api_keys,
                t.api_keys_active,
                t.api_keys_expires,
                dialect.in_future(&t.api_keys_expires)
            ),
        },
        Gauge {
            name: "sessions_active",
            sql: format!(
                "SELECT COUNT(*) FROM {} WHERE {}",
                t.sessions,
                dialect.in_future(&t.sessions_expires)
            ),
        },
    ]
}

/// Why a query gave no value.
#[derive(Debug)]
pub enum QueryError {
    Sql(sqlx::Error),
    /// The result cannot become a metric (the reason says why and how).
    Refused(String),
}

impl From<sqlx::Error> for QueryError {
    fn from(err: sqlx::Error) -> Self {
        Self::Sql(err)
    }
}

const BUSINESS_HINT: &str = "business gauge skipped (a missing table or column?); set its \
                             table and columns under [collectors.database]";
const QUERY_HINT: &str = "custom query skipped until it works; its metric is absent";
const CONNECTIONS_HINT: &str = "db_server_connections skipped (is the server's view of \
                                connections readable by the collector's user?)";
const CONNECTIONS: &str = "db_server_connections";

pub struct DatabaseCollector {
    config: DatabaseConfig,
    /// Also the server-side statement timeout of the collector's session.
    timeout: Duration,
    pool: Option<(AnyPool, Dialect)>,
    custom: Option<CustomFamilies>,
    /// Queries that failed, said once until they work again.
    failing: HashSet<String>,
    /// Whether MySQL lets the collector see the open transactions (until
    /// it refuses).
    mysql_transactions: bool,
    /// The states `db_server_connections` currently exports.
    states: &'static [&'static str],
}

impl DatabaseCollector {
    pub fn new(config: DatabaseConfig, timeout: Duration, metrics: &Metrics) -> Self {
        sqlx::any::install_default_drivers();
        let custom = (!config.queries.is_empty())
            .then(|| CustomFamilies::register(&metrics.registry, &config.queries))
            .and_then(|registered| {
                registered
                    .inspect_err(|err| warn!(error = %err, "custom queries not registered"))
                    .ok()
            });
        Self {
            config,
            timeout,
            pool: None,
            custom,
            failing: HashSet::new(),
            mysql_transactions: true,
            states: &[],
        }
    }

    /// An error without the connection string (which may hold a
    /// password).
    fn describe(&self, err: &QueryError) -> String {
        match err {
            QueryError::Sql(err) => self.config.url.redact(err.to_string()),
            QueryError::Refused(reason) => reason.clone(),
        }
    }

    async fn pool(&mut self) -> Result<(AnyPool, Dialect), String> {
        if let Some(pool) = &self.pool {
            return Ok(pool.clone());
        }
        let url = self.config.url.reveal()?;
        let dialect = Dialect::of(&url).ok_or_else(|| {
            "the database URL must start with postgres://, mysql:// or sqlite:".to_owned()
        })?;
        let limits = dialect.statement_timeout(self.timeout);
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| limit_statements(conn, limits.clone()))
            .connect(&url)
            .await
            .map_err(|e| self.describe(&e.into()))?;
        self.pool = Some((pool.clone(), dialect));
        Ok((pool, dialect))
    }

    /// Records how one query went: `Some` value, `None` for a query the
    /// database refused (said once), `Err` when the connection is lost
    /// (the run fails).
    fn settle<T>(
        &mut self,
        metrics: &Metrics,
        query: &str,
        result: Result<T, QueryError>,
        hint: &'static str,
    ) -> Result<Option<T>, String> {
        metrics
            .collector_query_success
            .with_label_values(&[self.name(), query])
            .set(i64::from(result.is_ok()));
        match result {
            Ok(value) => {
                if self.failing.remove(query) {
                    info!(query, "database query works again");
                }
                Ok(Some(value))
            }
            Err(QueryError::Sql(err)) if connection_lost(&err) => {
                self.pool = None;
                Err(self.describe(&QueryError::Sql(err)))
            }
            Err(err) => {
                if self.failing.insert(query.to_owned()) {
                    warn!(query, error = %self.describe(&err), "{hint}");
                }
                Ok(None)
            }
        }
    }

    async fn business(
        &mut self,
        pool: &AnyPool,
        dialect: Dialect,
        metrics: &Metrics,
    ) -> Result<(), String> {
        let Some(tables) = &self.config.tables else {
            return Ok(());
        };
        for gauge in gauges(dialect, tables) {
            let result = sqlx::query_scalar::<_, i64>(&gauge.sql)
                .fetch_one(pool)
                .await
                .map_err(QueryError::from);
            let Some(vec) = metrics.business.get(gauge.name) else {
                continue;
            };
            match self.settle(metrics, gauge.name, result, BUSINESS_HINT)? {
                Some(count) => vec.with_label_values(&[]).set(count),
                None => vec.reset(),
            }
        }
        Ok(())
    }

    async fn custom(&mut self, pool: &AnyPool, metrics: &Metrics) -> Result<(), String> {
        let Some(families) = self.custom.clone() else {
            return Ok(());
        };
        for (i, query) in self.config.queries.clone().iter().enumerate() {
            let result = custom::run(pool, query).await;
            let samples = self.settle(metrics, &query.name, result, QUERY_HINT)?;
            families.set(i, samples.unwrap_or_default());
        }
        Ok(())
    }

    async fn server_connections(
        &mut self,
        pool: &AnyPool,
        dialect: Dialect,
        metrics: &Metrics,
    ) -> Result<(), String> {
        if dialect == Dialect::Sqlite {
            return Ok(());
        }
        let filter = &self.config.connections;
        let count = async |with_trx| {
            let (sql, binds) = connections::query(dialect, filter, with_trx)?;
            connections::count(pool, &sql, &binds).await
        };
        let mut result = count(self.mysql_transactions).await;
        if dialect == Dialect::Mysql
            && self.mysql_transactions
            && matches!(&result, Err(QueryError::Sql(err)) if !connection_lost(err))
        {
            // Open transactions are visible with the PROCESS privilege only.
            let without = count(false).await;
            if without.is_ok() {
                self.mysql_transactions = false;
                info!(
                    "db_server_connections cannot tell idle connections in a transaction \
                     apart: grant the collector's user PROCESS to see INNODB_TRX"
                );
                result = without;
            }
        }
        let states = match dialect {
            Dialect::Postgres => connections::POSTGRES_STATES,
            _ if self.mysql_transactions => connections::MYSQL_STATES,
            _ => connections::MYSQL_STATES_NO_TRX,
        };
        let gauge = &metrics.db_server_connections;
        match self.settle(metrics, CONNECTIONS, result, CONNECTIONS_HINT)? {
            Some(counts) => {
                if self.states != states {
                    gauge.reset();
                    self.states = states;
                }
                for state in states {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == state)
                        .map_or(0, |(_, n)| *n);
                    gauge
                        .with_label_values(&[self.config.service.as_str(), state])
                        .set(n);
                }
            }
            None => {
                gauge.reset();
                self.states = &[];
            }
        }
        Ok(())
    }
}

/// Sets the server-side statement timeout on a new connection. Best
/// effort: MariaDB and MySQL each know only one of their two variables.
/// (`Executor::execute` rather than `raw_sql(..).execute`: the latter's
/// future trips rustc's higher-ranked `Send` check in this closure.)
fn limit_statements(
    conn: &mut sqlx::AnyConnection,
    statements: Vec<String>,
) -> futures_util::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        for statement in statements {
            let _ = sqlx::Executor::execute(&mut *conn, statement.as_str()).await;
        }
        Ok(())
    })
}

/// A broken connection, as opposed to a query the database refused.
fn connection_lost(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

impl Collector for DatabaseCollector {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn collect(&mut self, metrics: &Metrics) -> Result<(), String> {
        let (pool, dialect) = self.pool().await?;
        self.business(&pool, dialect, metrics).await?;
        self.custom(&pool, metrics).await?;
        self.server_connections(&pool, dialect, metrics).await
    }

    /// A run cut off at the timeout leaves its connection in the middle of
    /// a query: the next run opens a new one.
    fn abandon(&mut self) {
        self.pool = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_and_queries() {
        assert_eq!(Dialect::of("postgresql://u@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of("mysql://u@h/db"), Some(Dialect::Mysql));
        assert_eq!(Dialect::of("sqlite:///tmp/x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of("redis://h"), None);
        let sql = gauges(Dialect::Postgres, &BusinessTables::default());
        assert_eq!(sql[0].sql, "SELECT COUNT(*) FROM users");
        assert_eq!(
            sql[1].sql,
            "SELECT COUNT(*) FROM api_keys WHERE is_active AND (expires_at IS NULL OR \
             expires_at > CURRENT_TIMESTAMP)"
        );
    }
}
