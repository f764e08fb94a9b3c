//! Route templates from each service's OpenAPI document: when to fetch it,
//! and what to do with the answer. The fetch itself runs on a thread of its
//! own, over a socket made in the target's network namespace; see
//! `crate::enrich::openapi` and `crate::privileges::netns`.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracing::{debug, info};

use super::state::State;
use crate::{
    capture::own::SelfPorts,
    enrich::{
        endpoint::Template,
        openapi::{self, OpenApiError},
    },
    privileges::helper::Helper,
};

/// Retry delay after a failed fetch.
const RETRY: Duration = Duration::from_secs(60);

/// One fetch to run.
#[derive(Clone, Debug)]
pub struct FetchJob {
    pub service: u32,
    pub pid: u32,
    pub addr: SocketAddr,
    pub path: String,
}

/// Where to reach a listener from inside its namespace.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) => ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl State {
    /// Fetches that are due: services with a target and a listener whose
    /// document is older than the refresh interval.
    pub fn openapi_jobs(&mut self, now: Instant) -> Vec<FetchJob> {
        let Some(openapi) = self.enrich.http.openapi.clone() else {
            return Vec::new();
        };
        let mut jobs = Vec::new();
        for (index, service) in self.targets.services.iter_mut().enumerate() {
            if service.openapi_due.is_some_and(|due| due > now) {
                continue;
            }
            let (Some(&pid), Some(&listen)) =
                (service.targets.first(), service.listen_addrs.first())
            else {
                continue;
            };
            // Not again until this one is answered (or the refresh is due).
            service.openapi_due = Some(now + openapi.refresh);
            jobs.push(FetchJob {
                service: index as u32,
                pid,
                addr: reachable(listen),
                path: openapi.path.clone(),
            });
        }
        jobs
    }

    /// The answer of a fetch.
    pub fn apply_openapi(
        &mut self,
        job: &FetchJob,
        result: Result<Vec<String>, OpenApiError>,
        now: Instant,
    ) {
        let name = self.shown(job.service);
        let Some(service) = self.targets.services.get_mut(job.service as usize) else {
            return;
        };
        match result {
            Ok(paths) => {
                let before = service.routes.len();
                service
                    .routes
                    .extend(paths.iter().filter_map(|p| Template::parse(p)));
                if service.routes.len() != before {
                    info!(service = %name, routes = service.routes.len(), "route templates from the OpenAPI document");
                }
                self.publish_targets(job.service);
            }
            Err(err) => {
                service.openapi_due = Some(now + RETRY);
                if !service.openapi_failed {
                    service.openapi_failed = true;
                    info!(service = %name, addr = %job.addr, error = %err, "no OpenAPI document; endpoints use templates from the configuration and the heuristic");
                } else {
                    debug!(service = %name, error = %err, "OpenAPI fetch failed again");
                }
            }
        }
    }

    pub fn self_ports(&self) -> SelfPorts {
        self.capture.self_ports.clone()
    }
}

/// Runs one fetch on a thread of its own and hands the answer to the state.
pub fn spawn_fetch(job: FetchJob, state: Arc<Mutex<State>>, ports: SelfPorts, helper: Helper) {
    let spawned = std::thread::Builder::new()
        .name("loupe-openapi".into())
        .spawn(move || {
            let mut used = None;
            let socket = helper
                .socket(job.pid, openapi::family(job.addr))
                .map_err(|err| OpenApiError::Namespace(Box::new(err)));
            let result = socket.and_then(|socket| {
                openapi::fetch(socket, job.addr, &job.path, |port| {
                    ports.add((job.addr.ip(), port));
                    used = Some((job.addr.ip(), port));
                })
            });
            let now = Instant::now();
            if let Some(connection) = used {
                ports.release(connection, now);
            }
            super::lock(&state).apply_openapi(&job, result, now);
        });
    if let Err(err) = spawned {
        debug!(error = %err, "cannot start the OpenAPI fetch thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_reached_on_loopback_when_unspecified() {
        let cases = [
            ("0.0.0.0:8000", "127.0.0.1:8000"),
            ("[::]:8000", "[::1]:8000"),
            ("[::ffff:10.0.0.5]:80", "10.0.0.5:80"),
            ("10.1.2.3:9000", "10.1.2.3:9000"),
        ];
        for (listen, expected) in cases {
            assert_eq!(reachable(listen.parse().unwrap()).to_string(), expected);
        }
    }
}
