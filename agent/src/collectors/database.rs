//! The database collector: business gauges counted in the service's own
//! database (PostgreSQL, MySQL/MariaDB or SQLite, through sqlx). A missing
//! table or column skips that gauge (said once, `loupe_collector_query_
//! success` says 0) without failing the collector; a connection that fails
//! does, and is reopened at the next run.
use std::collections::HashSet;

use sqlx::{AnyPool, any::AnyPoolOptions};
use tracing::{info, warn};

use super::Collector;
use crate::{
    config::collectors::{BusinessTables, Secret},
    metrics::Metrics,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
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

pub struct DatabaseCollector {
    url: Secret,
    tables: BusinessTables,
    pool: Option<(AnyPool, Dialect)>,
    /// Gauges whose query failed, said once until they work again.
    failing: HashSet<&'static str>,
}

impl DatabaseCollector {
    pub fn new(url: Secret, tables: BusinessTables) -> Self {
        sqlx::any::install_default_drivers();
        Self {
            url,
            tables,
            pool: None,
            failing: HashSet::new(),
        }
    }

    /// An error without the connection string (which may hold a
    /// password).
    fn describe(&self, err: &sqlx::Error) -> String {
        self.url.redact(err.to_string())
    }

    async fn pool(&mut self) -> Result<(AnyPool, Dialect), String> {
        if let Some(pool) = &self.pool {
            return Ok(pool.clone());
        }
        let url = self.url.reveal()?;
        let dialect = Dialect::of(&url).ok_or_else(|| {
            "the database URL must start with postgres://, mysql:// or sqlite:".to_owned()
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .map_err(|e| self.describe(&e))?;
        self.pool = Some((pool.clone(), dialect));
        Ok((pool, dialect))
    }
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
        for gauge in gauges(dialect, &self.tables) {
            let result = sqlx::query_scalar::<_, i64>(&gauge.sql)
                .fetch_one(&pool)
                .await;
            let ok = result.is_ok();
            metrics
                .collector_query_success
                .with_label_values(&[self.name(), gauge.name])
                .set(i64::from(ok));
            match result {
                Ok(count) => {
                    if let Some(g) = metrics.business.get(gauge.name) {
                        g.with_label_values::<&str>(&[]).set(count);
                    }
                    if self.failing.remove(gauge.name) {
                        info!(gauge = gauge.name, "business gauge measured again");
                    }
                }
                Err(err) if connection_lost(&err) => {
                    self.pool = None;
                    return Err(self.describe(&err));
                }
                Err(err) => {
                    if let Some(g) = metrics.business.get(gauge.name) {
                        g.reset();
                    }
                    if self.failing.insert(gauge.name) {
                        warn!(
                            gauge = gauge.name,
                            error = %self.describe(&err),
                            "business gauge skipped (a missing table or column?); set its \
                             table and columns under [collectors.database]"
                        );
                    }
                }
            }
        }
        Ok(())
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
