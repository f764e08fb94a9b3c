//! Table tests of the connection bookkeeping.
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
