//! The agent's picture of the TCP connections its services own, built from
//! the probes' state-change records and from `/proc` at attach time. Pure:
//! it turns inputs into [`Delta`]s and counts; the caller exports them.
//!
//! A connection is counted as opened when it reaches `ESTABLISHED` and as
//! closed when it reaches `CLOSE`, whichever process holds it then. One that
//! was open before loupe attached is "seeded" from `/proc` (active, not
//! opened), identified by its address tuple until a probe adopts it.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use loupe_common::{
    event::{TCP_FLAG_ADOPTED, TcpState},
    maps::{DIRECTION_INBOUND, DIRECTION_OUTBOUND, SockOwner, TupleKey},
    tcp,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub const ALL: [Self; 2] = [Self::Inbound, Self::Outbound];

    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            DIRECTION_INBOUND => Some(Self::Inbound),
            DIRECTION_OUTBOUND => Some(Self::Outbound),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The remote end of a tuple, IPv4-mapped addresses shown as IPv4.
pub fn peer(tuple: &TupleKey) -> SocketAddr {
    let v6 = Ipv6Addr::from(tuple.daddr);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, tuple.dport)
}

/// One change to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub service: u32,
    pub direction: Direction,
    /// The exported peer label (outbound connections only).
    pub peer: Option<String>,
    /// +1 opened or seeded, -1 closed, 0 no change of the active count.
    pub active: i64,
    /// The connection was opened while loupe watched.
    pub opened: bool,
}

#[derive(Clone, Debug)]
struct Conn {
    service: u32,
    direction: Direction,
    peer: Option<String>,
    tuple: TupleKey,
    established: bool,
}

#[derive(Debug, Default)]
pub struct Connections {
    /// Sockets a probe reported, by kernel address.
    by_sock: HashMap<u64, Conn>,
    /// Seeded from `/proc`, not yet adopted by a probe.
    seeded: HashMap<TupleKey, Conn>,
    /// Tuples of established sockets in `by_sock`.
    live_tuples: HashMap<TupleKey, u64>,
    active: HashMap<(u32, Direction), i64>,
    peers: HashMap<(u32, String), i64>,
}

impl Connections {
    /// Open connections of a service in one direction.
    pub fn active(&self, service: u32, direction: Direction) -> i64 {
        self.active.get(&(service, direction)).copied().unwrap_or(0)
    }

    /// Open outbound connections of a service to one peer label.
    pub fn peer_active(&self, service: u32, peer: &str) -> i64 {
        self.peers
            .get(&(service, peer.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (service, peer label) with open connections.
    pub fn live_peers(&self) -> impl Iterator<Item = (u32, &str)> {
        self.peers
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|((service, peer), _)| (*service, peer.as_str()))
    }

    /// Connections seeded from `/proc` that no probe has adopted yet.
    pub fn seeded(&self) -> impl Iterator<Item = &TupleKey> {
        self.seeded.keys()
    }

    fn count(&mut self, conn: &Conn, delta: i64, opened: bool) -> Delta {
        *self
            .active
            .entry((conn.service, conn.direction))
            .or_default() += delta;
        if let Some(peer) = &conn.peer {
            *self.peers.entry((conn.service, peer.clone())).or_default() += delta;
        }
        Delta {
            service: conn.service,
            direction: conn.direction,
            peer: conn.peer.clone(),
            active: delta,
            opened,
        }
    }

    fn new_conn(
        owner: SockOwner,
        tuple: TupleKey,
        label_peer: &mut impl FnMut(u32, SocketAddr) -> String,
    ) -> Option<Conn> {
        let direction = Direction::from_raw(owner.direction)?;
        let peer =
            (direction == Direction::Outbound).then(|| label_peer(owner.service, peer(&tuple)));
        Some(Conn {
            service: owner.service,
            direction,
            peer,
            tuple,
            established: false,
        })
    }

    /// Applies one state-change record. `label_peer` chooses the exported
    /// peer label of a new outbound connection.
    pub fn on_event(
        &mut self,
        event: &TcpState,
        mut label_peer: impl FnMut(u32, SocketAddr) -> String,
    ) -> Option<Delta> {
        if event.flags & TCP_FLAG_ADOPTED != 0 {
            return self.on_adopted(event);
        }
        match event.newstate {
            tcp::SYN_SENT => {
                let conn = Self::new_conn(event.owner, event.tuple, &mut label_peer)?;
                self.by_sock.insert(event.skaddr, conn);
                None
            }
            tcp::ESTABLISHED => {
                let mut conn = match self.by_sock.remove(&event.skaddr) {
                    Some(conn) if conn.established => {
                        self.by_sock.insert(event.skaddr, conn);
                        return None;
                    }
                    Some(conn) => conn,
                    None => Self::new_conn(event.owner, event.tuple, &mut label_peer)?,
                };
                conn.established = true;
                conn.tuple = event.tuple;
                // Seeded between the open and this record: already active.
                let delta = if self.seeded.remove(&event.tuple).is_some() {
                    0
                } else {
                    1
                };
                let delta = self.count(&conn, delta, true);
                self.live_tuples.insert(event.tuple, event.skaddr);
                self.by_sock.insert(event.skaddr, conn);
                Some(delta)
            }
            tcp::CLOSE => {
                let Some(conn) = self.by_sock.remove(&event.skaddr) else {
                    // A seeded connection whose adoption record was lost.
                    return self.unseed(&event.tuple);
                };
                if !conn.established {
                    return None;
                }
                self.live_tuples.remove(&conn.tuple);
                Some(self.count(&conn, -1, false))
            }
            _ => None,
        }
    }

    /// A seeded connection's first state change: from now on it is known by
    /// its socket address.
    fn on_adopted(&mut self, event: &TcpState) -> Option<Delta> {
        let mut conn = self.seeded.remove(&event.tuple)?;
        if event.newstate == tcp::CLOSE {
            return Some(self.count(&conn, -1, false));
        }
        conn.established = true;
        self.live_tuples.insert(event.tuple, event.skaddr);
        self.by_sock.insert(event.skaddr, conn);
        None
    }

    /// Closes the sockets the probes no longer own (`live` holds the kernel
    /// map's keys): their `CLOSE` record was lost. A record still queued for
    /// one of them finds nothing left to close.
    pub fn close_missing(&mut self, live: &HashSet<u64>) -> Vec<Delta> {
        let gone: Vec<u64> = self
            .by_sock
            .keys()
            .copied()
            .filter(|sk| !live.contains(sk))
            .collect();
        let mut deltas = Vec::new();
        for sk in gone {
            let conn = self.by_sock.remove(&sk).expect("key listed above");
            if conn.established {
                self.live_tuples.remove(&conn.tuple);
                deltas.push(self.count(&conn, -1, false));
            }
        }
        deltas
    }

    /// A connection found open in `/proc`; `None` if it is already known.
    pub fn seed(
        &mut self,
        owner: SockOwner,
        tuple: TupleKey,
        mut label_peer: impl FnMut(u32, SocketAddr) -> String,
    ) -> Option<Delta> {
        if self.live_tuples.contains_key(&tuple) || self.seeded.contains_key(&tuple) {
            return None;
        }
        let mut conn = Self::new_conn(owner, tuple, &mut label_peer)?;
        conn.established = true;
        let delta = self.count(&conn, 1, false);
        self.seeded.insert(tuple, conn);
        Some(delta)
    }

    /// A seeded connection that `/proc` no longer shows (it closed before a
    /// probe could adopt it).
    pub fn unseed(&mut self, tuple: &TupleKey) -> Option<Delta> {
        let conn = self.seeded.remove(tuple)?;
        Some(self.count(&conn, -1, false))
    }
}

#[cfg(test)]
mod tests;
