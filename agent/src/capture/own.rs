//! The agent's own connections to the services it watches (OpenAPI
//! fetches), so that the connection metrics leave them out.
use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long after a fetch its connection is still recognised as the agent's.
const SELF_PORT_GRACE: Duration = Duration::from_secs(60);

/// A connection of the agent: the service address it reached and the
/// agent's port.
type OwnConnection = (IpAddr, u16);
/// An own connection, and until when it is remembered once finished.
type Remembered = (OwnConnection, Option<Instant>);

/// The agent's own connections to targets, so that the connection metrics
/// leave them out.
#[derive(Clone, Default)]
pub struct SelfPorts(Arc<Mutex<Vec<Remembered>>>);

impl SelfPorts {
    pub fn add(&self, connection: OwnConnection) {
        self.lock().push((connection, None));
    }

    /// The fetch is over: forget the connection after a grace period.
    pub fn release(&self, connection: OwnConnection, now: Instant) {
        for entry in self.lock().iter_mut().filter(|(c, _)| *c == connection) {
            entry.1 = Some(now + SELF_PORT_GRACE);
        }
    }

    /// Whether the service's side `local` of a connection from `peer_port`
    /// is one of the agent's connections.
    pub fn contains(&self, local: IpAddr, peer_port: u16) -> bool {
        self.lock()
            .iter()
            .any(|((ip, port), _)| *ip == local && *port == peer_port)
    }

    pub fn expire(&self, now: Instant) {
        self.lock()
            .retain(|(_, until)| until.is_none_or(|t| t > now));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Remembered>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn self_ports_expire_after_their_grace() {
        let ports = SelfPorts::default();
        let now = Instant::now();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        ports.add((local, 40000));
        ports.expire(now + Duration::from_secs(3600));
        assert!(ports.contains(local, 40000), "in use: kept");
        assert!(!ports.contains(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000));
        ports.release((local, 40000), now);
        ports.expire(now + SELF_PORT_GRACE / 2);
        assert!(ports.contains(local, 40000));
        ports.expire(now + SELF_PORT_GRACE * 2);
        assert!(!ports.contains(local, 40000));
    }
}
