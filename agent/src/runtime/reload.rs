//! SIGHUP: the configuration file is read again, and its rules apply from
//! then on; a file that does not load changes nothing. Either way it is
//! counted in `loupe_config_reloads_total`.
use std::sync::{Arc, Mutex};

use tracing::{error, info, warn};

use super::{lock, state::State};
use crate::{config::Config, export::server::web::Reload};

/// Reads the configuration file again.
pub type Reloader = Box<dyn Fn() -> Result<Config, Box<dyn std::error::Error>> + Send>;

/// Serves SIGHUP until the task is dropped; without a file (`reload` is
/// `None`: loupe runs from flags alone) there is nothing to read.
pub async fn on_hangup(state: Arc<Mutex<State>>, reload: Option<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let reloads = lock(&state).export.metrics.config_reloads.clone();
    // Every series from the start, at 0.
    for result in Reload::ALL {
        reloads.with_label_values(&[result.as_str()]);
    }
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler: the configuration is read at start-up only");
        return;
    };
    while hangups.recv().await.is_some() {
        let Some(reload) = &reload else {
            info!("SIGHUP: no configuration file to read again (loupe runs from flags alone)");
            continue;
        };
        match reload() {
            Ok(config) => {
                lock(&state).apply_rules(&config);
                reloads.with_label_values(&[Reload::Loaded.as_str()]).inc();
                info!(
                    rules = config.rules.rules.len(),
                    "SIGHUP: configuration read again; its rules apply now (other settings are read at start-up only)"
                );
            }
            Err(err) => {
                reloads.with_label_values(&[Reload::Failed.as_str()]).inc();
                error!(error = %crate::describe_error(err.as_ref()), "SIGHUP: the configuration did not load; the old one stays");
            }
        }
    }
}
