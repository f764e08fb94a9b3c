//! Periodic collectors: what the agent asks the database and Redis
//! directly, for what no socket shows. Each runs in its own task on its own
//! timer with a timeout, so a slow or failing one delays neither the others
//! nor `/metrics`; its health is exported (`loupe_collector_*`), and its
//! state changes (up, down, up) are logged once each.
#[cfg(feature = "collectors")]
pub mod database;
#[cfg(feature = "collectors")]
pub mod redis;
pub mod redis_info;

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{config::collectors::CollectorsConfig, export::Metrics};

/// One collector.
pub trait Collector: Send + 'static {
    /// The `collector` label.
    fn name(&self) -> &'static str;
    /// One run; the error says what failed (never a secret).
    fn collect(&mut self, metrics: &Metrics) -> impl Future<Output = Result<(), String>> + Send;
    /// A run was cut off at the timeout: drop what it left half-used (a
    /// connection in the middle of a reply).
    fn abandon(&mut self) {}
}

/// Starts every configured collector; abort the handles to stop them.
#[cfg(feature = "collectors")]
pub fn spawn(config: &CollectorsConfig, metrics: &Metrics) -> Vec<JoinHandle<()>> {
    let start = |collector| {
        tokio::spawn(run(
            collector,
            config.interval,
            config.timeout,
            metrics.clone(),
        ))
    };
    let mut tasks = Vec::new();
    if let Some(url) = &config.redis {
        tasks.push(start(Collectors::Redis(redis::RedisCollector::new(
            url.clone(),
        ))));
    }
    if let Some(database) = &config.database {
        tasks.push(start(Collectors::Database(Box::new(
            database::DatabaseCollector::new(database.clone(), config.timeout, metrics),
        ))));
    }
    tasks
}

/// Without the `collectors` feature there are none to start.
#[cfg(not(feature = "collectors"))]
pub fn spawn(_config: &CollectorsConfig, _metrics: &Metrics) -> Vec<JoinHandle<()>> {
    Vec::new()
}

/// The collectors there are (one task type for all).
#[cfg(feature = "collectors")]
enum Collectors {
    Redis(redis::RedisCollector),
    Database(Box<database::DatabaseCollector>),
}

#[cfg(feature = "collectors")]
impl Collector for Collectors {
    fn name(&self) -> &'static str {
        match self {
            Self::Redis(c) => c.name(),
            Self::Database(c) => c.name(),
        }
    }

    async fn collect(&mut self, metrics: &Metrics) -> Result<(), String> {
        match self {
            Self::Redis(c) => c.collect(metrics).await,
            Self::Database(c) => c.collect(metrics).await,
        }
    }

    fn abandon(&mut self) {
        match self {
            Self::Redis(c) => c.abandon(),
            Self::Database(c) => c.abandon(),
        }
    }
}

/// Runs `collector` every `interval`, each run cut off after `timeout`,
/// until aborted.
#[cfg_attr(
    not(any(feature = "collectors", feature = "kubernetes")),
    allow(dead_code)
)]
pub(crate) async fn run<C: Collector>(
    mut collector: C,
    interval: Duration,
    timeout: Duration,
    metrics: Metrics,
) {
    let name = collector.name();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up: Option<bool> = None;
    // Errors start at 0, so that `rate()` and `increase()` see the first.
    metrics.collector_errors.with_label_values(&[name]);
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, collector.collect(&metrics)).await {
            Ok(result) => result,
            Err(_) => {
                collector.abandon();
                Err(format!("timed out after {timeout:?}"))
            }
        };
        let labels = [name];
        metrics
            .collector_duration
            .with_label_values(&labels)
            .set(started.elapsed().as_secs_f64());
        let up = result.is_ok();
        metrics
            .collector_up
            .with_label_values(&labels)
            .set(i64::from(up));
        match &result {
            Ok(()) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                metrics
                    .collector_last_success
                    .with_label_values(&labels)
                    .set(now.as_secs_f64());
                if was_up == Some(false) {
                    info!(collector = name, "collector is back up");
                }
            }
            Err(err) => {
                metrics.collector_errors.with_label_values(&labels).inc();
                if was_up != Some(false) {
                    warn!(collector = name, error = %err, "collector failed; retrying every interval");
                }
            }
        }
        was_up = Some(up);
    }
}
