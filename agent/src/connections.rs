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
mod tests {
    use loupe_common::{
        event::{Header, KIND_TCP_STATE},
        maps::ipv4_mapped,
    };

    use super::*;

    const SVC: u32 = 0;

    fn tuple(sport: u16, dport: u16) -> TupleKey {
        TupleKey {
            sport,
            dport,
            _pad: 0,
            saddr: ipv4_mapped([127, 0, 0, 1]),
            daddr: ipv4_mapped([127, 0, 0, 1]),
        }
    }

    fn event(skaddr: u64, direction: u32, old: u32, new: u32, tuple: TupleKey) -> TcpState {
        TcpState {
            header: Header {
                kind: KIND_TCP_STATE,
                tgid: 1,
                ts_ns: 0,
            },
            skaddr,
            owner: SockOwner {
                service: SVC,
                direction,
            },
            oldstate: old,
            newstate: new,
            flags: 0,
            netns: 0,
            tuple,
        }
    }

    fn label(_: u32, peer: SocketAddr) -> String {
        peer.to_string()
    }

    #[test]
    fn outbound_connect_establish_close() {
        let mut conns = Connections::default();
        let t = tuple(0, 6379);
        assert_eq!(
            conns.on_event(
                &event(1, DIRECTION_OUTBOUND, tcp::CLOSE, tcp::SYN_SENT, t),
                label
            ),
            None
        );
        let t = tuple(40000, 6379);
        let opened = conns
            .on_event(
                &event(1, DIRECTION_OUTBOUND, tcp::SYN_SENT, tcp::ESTABLISHED, t),
                label,
            )
            .unwrap();
        assert_eq!(opened.active, 1);
        assert!(opened.opened);
        assert_eq!(opened.peer.as_deref(), Some("127.0.0.1:6379"));
        assert_eq!(conns.active(SVC, Direction::Outbound), 1);
        assert_eq!(conns.peer_active(SVC, "127.0.0.1:6379"), 1);
        let closed = conns
            .on_event(
                &event(1, DIRECTION_OUTBOUND, tcp::FIN_WAIT2, tcp::CLOSE, t),
                label,
            )
            .unwrap();
        assert_eq!(closed.active, -1);
        assert_eq!(conns.active(SVC, Direction::Outbound), 0);
        assert_eq!(conns.peer_active(SVC, "127.0.0.1:6379"), 0);
    }

    #[test]
    fn failed_connect_is_not_counted() {
        let mut conns = Connections::default();
        let t = tuple(0, 1);
        conns.on_event(
            &event(2, DIRECTION_OUTBOUND, tcp::CLOSE, tcp::SYN_SENT, t),
            label,
        );
        assert_eq!(
            conns.on_event(
                &event(2, DIRECTION_OUTBOUND, tcp::SYN_SENT, tcp::CLOSE, t),
                label
            ),
            None
        );
        assert_eq!(conns.active(SVC, Direction::Outbound), 0);
    }

    #[test]
    fn inbound_passive_open_and_duplicate_records() {
        let mut conns = Connections::default();
        let t = tuple(8000, 50000);
        let e = event(3, DIRECTION_INBOUND, tcp::SYN_RECV, tcp::ESTABLISHED, t);
        assert_eq!(conns.on_event(&e, label).unwrap().peer, None);
        assert_eq!(
            conns.on_event(&e, label),
            None,
            "a repeated record counts once"
        );
        assert_eq!(conns.active(SVC, Direction::Inbound), 1);
        conns.on_event(
            &event(3, DIRECTION_INBOUND, tcp::LAST_ACK, tcp::CLOSE, t),
            label,
        );
        assert_eq!(
            conns.on_event(
                &event(3, DIRECTION_INBOUND, tcp::LAST_ACK, tcp::CLOSE, t),
                label
            ),
            None
        );
        assert_eq!(conns.active(SVC, Direction::Inbound), 0);
    }

    #[test]
    fn seeded_connection_is_adopted_then_closed() {
        let mut conns = Connections::default();
        let t = tuple(8000, 50001);
        let owner = SockOwner {
            service: SVC,
            direction: DIRECTION_INBOUND,
        };
        let seeded = conns.seed(owner, t, label).unwrap();
        assert_eq!((seeded.active, seeded.opened), (1, false));
        assert_eq!(
            conns.seed(owner, t, label),
            None,
            "seeding twice counts once"
        );
        let mut adopt = event(9, DIRECTION_INBOUND, tcp::ESTABLISHED, tcp::CLOSE_WAIT, t);
        adopt.flags = TCP_FLAG_ADOPTED;
        assert_eq!(conns.on_event(&adopt, label), None);
        assert_eq!(conns.active(SVC, Direction::Inbound), 1);
        let closed = conns
            .on_event(
                &event(9, DIRECTION_INBOUND, tcp::LAST_ACK, tcp::CLOSE, t),
                label,
            )
            .unwrap();
        assert_eq!(closed.active, -1);
        assert_eq!(conns.active(SVC, Direction::Inbound), 0);
    }

    #[test]
    fn seeding_a_connection_a_probe_already_reported_counts_once() {
        let mut conns = Connections::default();
        let t = tuple(8000, 50002);
        let owner = SockOwner {
            service: SVC,
            direction: DIRECTION_INBOUND,
        };
        // Record first, then the /proc seed.
        conns.on_event(
            &event(4, DIRECTION_INBOUND, tcp::SYN_RECV, tcp::ESTABLISHED, t),
            label,
        );
        assert_eq!(conns.seed(owner, t, label), None);
        // Seed first, then the record of the open (queued before the seed).
        let t2 = tuple(8000, 50003);
        conns.seed(owner, t2, label).unwrap();
        let opened = conns
            .on_event(
                &event(5, DIRECTION_INBOUND, tcp::SYN_RECV, tcp::ESTABLISHED, t2),
                label,
            )
            .unwrap();
        assert_eq!((opened.active, opened.opened), (0, true));
        assert_eq!(conns.active(SVC, Direction::Inbound), 2);
        assert_eq!(conns.seeded().count(), 0);
    }

    #[test]
    fn unseeding_closes_a_connection_nobody_reported() {
        let mut conns = Connections::default();
        let t = tuple(40001, 5432);
        let owner = SockOwner {
            service: SVC,
            direction: DIRECTION_OUTBOUND,
        };
        conns.seed(owner, t, label).unwrap();
        assert_eq!(conns.peer_active(SVC, "127.0.0.1:5432"), 1);
        assert_eq!(conns.unseed(&t).unwrap().active, -1);
        assert_eq!(conns.unseed(&t), None);
        assert_eq!(conns.peer_active(SVC, "127.0.0.1:5432"), 0);
    }

    #[test]
    fn a_lost_close_record_is_made_up_for() {
        let mut conns = Connections::default();
        let t = tuple(8000, 50010);
        conns.on_event(
            &event(11, DIRECTION_INBOUND, tcp::SYN_RECV, tcp::ESTABLISHED, t),
            label,
        );
        let t2 = tuple(8000, 50011);
        conns.on_event(
            &event(12, DIRECTION_INBOUND, tcp::SYN_RECV, tcp::ESTABLISHED, t2),
            label,
        );
        let deltas = conns.close_missing(&HashSet::from([12]));
        assert_eq!(deltas.len(), 1);
        assert_eq!(conns.active(SVC, Direction::Inbound), 1);
        // The late record of socket 11 changes nothing.
        let late = event(11, DIRECTION_INBOUND, tcp::LAST_ACK, tcp::CLOSE, t);
        assert_eq!(conns.on_event(&late, label), None);
        assert_eq!(conns.active(SVC, Direction::Inbound), 1);

        // A seeded connection whose adoption record was lost closes by tuple.
        let owner = SockOwner {
            service: SVC,
            direction: DIRECTION_INBOUND,
        };
        let t3 = tuple(8000, 50012);
        conns.seed(owner, t3, label).unwrap();
        let close = event(13, DIRECTION_INBOUND, tcp::LAST_ACK, tcp::CLOSE, t3);
        assert_eq!(conns.on_event(&close, label).unwrap().active, -1);
        assert_eq!(conns.active(SVC, Direction::Inbound), 1);
    }

    #[test]
    fn peers_print_ipv6_in_brackets_and_mapped_ipv4_plainly() {
        let mut t = tuple(1, 443);
        assert_eq!(peer(&t).to_string(), "127.0.0.1:443");
        t.daddr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(peer(&t).to_string(), "[::1]:443");
    }

    #[test]
    fn records_with_an_unknown_direction_are_ignored() {
        let mut conns = Connections::default();
        let e = event(7, 0, tcp::SYN_RECV, tcp::ESTABLISHED, tuple(1, 2));
        assert_eq!(conns.on_event(&e, label), None);
    }
}
