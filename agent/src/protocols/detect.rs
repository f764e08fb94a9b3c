//! Which protocol a connection speaks, told from its first bytes, and
//! then its parser. A connection the service accepted is HTTP/2 when the
//! client's preface starts it, else HTTP/1. A connection it opened is what
//! the first of the [`CLIENTS`] to know its first bytes says (ports being
//! only a hint for connections open before loupe attached).
use super::{
    CLIENTS, Context, Direction, PoolUse, Protocol, Sink, Transfer, WellKnown, http1, http2,
};

/// Bytes held while an accepted connection's protocol is not known yet.
const MAX_UNDECIDED: usize = 8 << 10;

/// A syscall kept while the protocol is not known yet.
pub struct Held {
    dir: Direction,
    ts: u64,
    len: u64,
    head: Box<[u8]>,
    tail: Box<[u8]>,
    /// The pieces of frames the probes followed (an HTTP/2 server over
    /// TLS writes its SETTINGS before the client's preface is read).
    pieces: Vec<(u64, Box<[u8]>)>,
}

impl Held {
    fn of(dir: Direction, bytes: &Transfer<'_>) -> Self {
        Self {
            dir,
            ts: bytes.ts,
            len: bytes.len,
            head: bytes.head.into(),
            tail: bytes.tail.into(),
            pieces: bytes
                .pieces
                .iter()
                .map(|(at, b)| (*at, (*b).into()))
                .collect(),
        }
    }

    fn size(&self) -> usize {
        let pieces: usize = self.pieces.iter().map(|(_, b)| b.len()).sum();
        self.head.len() + self.tail.len() + pieces
    }

    /// Hands what was held to `protocol`.
    fn replay(&self, protocol: &mut dyn Protocol, context: &Context<'_>, sink: &mut dyn Sink) {
        let pieces: Vec<(u64, &[u8])> = self.pieces.iter().map(|(at, b)| (*at, &b[..])).collect();
        let transfer = Transfer {
            pieces: &pieces,
            ..Transfer::ends(self.ts, self.len, &self.head, &self.tail)
        };
        protocol.on_bytes(self.dir, &transfer, context, sink);
    }
}

/// A connection, before and after its protocol is known.
pub enum Connection {
    /// Accepted by the service; what was transferred while the client's
    /// first bytes could still be the start of the HTTP/2 preface (written
    /// in pieces, or after the server's own first frames).
    Accepted(Vec<Held>),
    /// Accepted before loupe attached, nothing seen yet: HTTP/2 if its
    /// first bytes are frames, else HTTP/1 (which finds its place).
    Joined,
    /// Opened by the service, its protocol not known yet: what it read so
    /// far (a server that speaks first, its greeting read in pieces: a
    /// 4-byte packet header, then the packet).
    Opened(Vec<Held>),
    /// Opened before loupe attached, to a server's well-known port, no
    /// bytes seen yet: counted in the pool gauges as what the port says.
    Seeded(&'static WellKnown),
    Known(Box<dyn Protocol>),
    /// Not a protocol loupe parses: ignored.
    Other,
}

/// The protocol whose servers listen on `port`, for a connection open
/// before loupe attached.
pub fn well_known(port: u16) -> Option<&'static WellKnown> {
    CLIENTS
        .iter()
        .filter_map(|client| client.well_known.as_ref())
        .find(|known| known.port == port)
}

/// What the held syscalls read, joined while each was captured whole (a
/// gap would glue bytes that were not adjacent).
fn read_so_far(held: &[Held]) -> Vec<u8> {
    let mut read = Vec::new();
    for h in held.iter().filter(|h| h.dir == Direction::Received) {
        read.extend_from_slice(&h.head);
        if h.len != h.head.len() as u64 {
            break;
        }
    }
    read
}

fn held_size(held: &[Held]) -> usize {
    held.iter().map(Held::size).sum()
}

/// Whether an accepted connection is HTTP/2: yes if the client's bytes so
/// far are its preface, no if they are not; `None` while they are a proper
/// prefix of it.
fn is_http2(held: &[Held], dir: Direction, transfer: &Transfer<'_>) -> Option<bool> {
    let mut read = read_so_far(held);
    if dir == Direction::Received {
        read.extend_from_slice(transfer.start());
    }
    let prefix = http2::Http2::recognise(&read);
    if read.len() >= http2::PREFACE.len() || (!read.is_empty() && !prefix) {
        return Some(prefix);
    }
    let kept = held_size(held);
    let whole = transfer.len == transfer.start().len() as u64;
    let room = kept + transfer.start().len() <= MAX_UNDECIDED;
    // Still the preface's start (or nothing read yet): wait, unless the
    // client's bytes were not all captured or too much is held.
    (!room || (dir == Direction::Received && !whole)).then_some(false)
}

/// The first client protocol that knows `bytes`, a connection's first.
fn client_of(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    CLIENTS
        .iter()
        .find_map(|client| (client.detect)(dir, bytes))
}

impl Connection {
    /// A connection the service opened, nothing seen yet.
    pub fn opened() -> Self {
        Self::Opened(Vec::new())
    }

    /// A connection the service opened, once its bytes tell: the first
    /// protocol that knows what it wrote first, or all it read so far
    /// (with that replayed); bytes it wrote that none knows are no
    /// protocol of loupe's. `None` while they do not tell.
    fn decide_opened(
        held: &mut Vec<Held>,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) -> Option<Self> {
        let start = bytes.start();
        if start.is_empty() {
            return None;
        }
        if dir == Direction::Sent {
            // What was read before a request is not its answer.
            held.clear();
            return Some(client_of(dir, start).map_or(Self::Other, Self::Known));
        }
        let mut read = read_so_far(held);
        read.extend_from_slice(start);
        let Some(mut protocol) = client_of(dir, &read) else {
            held.push(Held::of(dir, bytes));
            if held_size(held) > MAX_UNDECIDED {
                held.clear(); // a reply that tells nothing
            }
            return None;
        };
        for h in held.drain(..) {
            h.replay(protocol.as_mut(), context, sink);
        }
        Some(Self::Known(protocol))
    }

    /// An accepted connection's parser, once its bytes tell, with what was
    /// held until then replayed; `None` while they do not.
    fn accepted(
        held: &mut Vec<Held>,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) -> Option<Self> {
        let Some(h2) = is_http2(held, dir, bytes) else {
            held.push(Held::of(dir, bytes));
            return None;
        };
        let mut protocol: Box<dyn Protocol> = if h2 {
            Box::new(http2::Http2::served())
        } else {
            Box::new(http1::Server::new(false))
        };
        for h in held.drain(..) {
            h.replay(protocol.as_mut(), context, sink);
        }
        Some(Self::Known(protocol))
    }
}

impl Protocol for Connection {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        match self {
            Self::Accepted(held) => match Self::accepted(held, dir, bytes, context, sink) {
                Some(known) => *self = known,
                None => return,
            },
            Self::Opened(held) => match Self::decide_opened(held, dir, bytes, context, sink) {
                Some(decided) => *self = decided,
                None => return,
            },
            Self::Joined => {
                // Nothing captured: HTTP/1, which finds its place later.
                *self = Self::Known(if http2::frame::starts_frames(bytes.start()) {
                    Box::new(http2::Http2::joined())
                } else {
                    Box::new(http1::Server::new(true))
                });
            }
            // A command written mid-stream tells the protocol; a reply
            // alone does not, and the port's guess stands.
            Self::Seeded(known) => {
                let start = bytes.start();
                *self = match dir {
                    Direction::Sent if !start.is_empty() => {
                        client_of(dir, start).map_or(Self::Other, Self::Known)
                    }
                    _ => Self::Known((known.mid_stream)()),
                };
            }
            Self::Known(_) | Self::Other => {}
        }
        if let Self::Known(protocol) = self {
            protocol.on_bytes(dir, bytes, context, sink);
            if let Some(upgrade) = protocol.switched() {
                // The rest of the syscall that wrote the `101` is HTTP/2.
                let at = upgrade.at;
                let mut h2 = http2::Http2::upgraded(upgrade);
                h2.continue_from(dir, bytes, at, context, sink);
                *protocol = Box::new(h2);
            }
        }
    }

    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink) {
        if let Self::Known(protocol) = self {
            protocol.on_close(ts, sink);
        }
    }

    fn expire(&mut self, idle_since: u64, sink: &mut dyn Sink) {
        if let Self::Known(protocol) = self {
            protocol.expire(idle_since, sink);
        }
    }

    fn is_parsing(&self) -> bool {
        match self {
            Self::Accepted(_) | Self::Joined | Self::Opened(_) | Self::Seeded(_) => true,
            Self::Known(protocol) => protocol.is_parsing(),
            Self::Other => false,
        }
    }

    fn pool(&self) -> Option<PoolUse> {
        match self {
            Self::Seeded(known) => Some(PoolUse {
                pool: known.pool,
                busy: false,
                encrypted: false,
            }),
            Self::Known(protocol) => protocol.pool(),
            Self::Accepted(_) | Self::Joined | Self::Opened(_) | Self::Other => None,
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Self::Accepted(held) | Self::Opened(held) => held_size(held),
            Self::Known(protocol) => protocol.buffered(),
            Self::Joined | Self::Seeded(_) | Self::Other => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::{
        Pool,
        sql::DbSystem,
        testing::{Collect, with_context},
    };

    /// The pool an outbound connection counts in after its first bytes,
    /// and whether they are still read.
    fn after(mut conn: Connection, dir: Direction, bytes: &[u8]) -> (Option<Pool>, bool) {
        let transfer = Transfer::new(1, bytes.len() as u64, bytes);
        let mut sink = Collect(|_| {});
        with_context(|context| conn.on_bytes(dir, &transfer, context, &mut sink));
        (conn.pool().map(|used| used.pool), conn.is_parsing())
    }

    #[test]
    fn the_first_bytes_tell_the_protocol() {
        let postgres = Some(Pool::Db(DbSystem::Postgres));
        let mysql = Some(Pool::Db(DbSystem::Mysql));
        let sent = |bytes: &[u8]| after(Connection::opened(), Direction::Sent, bytes);
        assert_eq!(sent(b"*1\r\n$4\r\nPING\r\n"), (Some(Pool::Redis), true));
        assert_eq!(sent(b"GET / HTTP/1.1\r\n"), (None, true));
        assert_eq!(sent(b"POS"), (None, true), "a head written in pieces");
        let mut startup = 8u32.to_be_bytes().to_vec();
        startup.extend(80_877_103u32.to_be_bytes());
        assert_eq!(sent(&startup), (postgres, true), "an SSL request");
        assert_eq!(
            sent(b"\x16\x03\x01\x02\x00"),
            (None, false),
            "TLS: no protocol"
        );
        let greeting = b"\x23\x00\x00\x00\x0a10.11.19-MariaDB\x00\x01\x00\x00\x00abcdefgh\x00";
        assert_eq!(
            after(Connection::opened(), Direction::Received, greeting),
            (mysql, true)
        );
        assert_eq!(
            after(Connection::opened(), Direction::Received, b"+OK\r\n"),
            (None, true),
            "a reply alone tells nothing"
        );
        // The greeting read in two pieces, as Connector/J may read it: a
        // packet header, then the packet.
        let mut conn = Connection::opened();
        let mut sink = Collect(|_| {});
        for piece in [&greeting[..4], &greeting[4..]] {
            let transfer = Transfer::new(1, piece.len() as u64, piece);
            with_context(|context| {
                conn.on_bytes(Direction::Received, &transfer, context, &mut sink)
            });
        }
        assert_eq!(conn.pool().map(|used| used.pool), mysql);
    }

    /// What an accepted connection's parser finds in `syscalls`.
    fn served(syscalls: &[(Direction, &[u8])]) -> Vec<crate::protocols::Observation> {
        replay(Connection::Accepted(Vec::new()), syscalls)
    }

    fn replay(
        mut conn: Connection,
        syscalls: &[(Direction, &[u8])],
    ) -> Vec<crate::protocols::Observation> {
        let mut found = Vec::new();
        let mut sink = Collect(|o| found.push(o));
        for (ts, &(dir, bytes)) in syscalls.iter().enumerate() {
            let transfer = Transfer::new(ts as u64, bytes.len() as u64, bytes);
            with_context(|context| conn.on_bytes(dir, &transfer, context, &mut sink));
        }
        conn.on_close(99, &mut sink);
        found
    }

    #[test]
    fn a_connection_joined_mid_way_is_http2_if_its_bytes_are_frames() {
        use crate::protocols::{Observation, http1::exchange::Outcome};
        use Direction::{Received, Sent};
        use http2::frame::{END_HEADERS, END_STREAM, HEADERS, encode};
        let path = |e: &Observation| match e {
            Observation::Served(Outcome::Exchange(e)) => (e.path.clone(), e.status),
            other => panic!("{other:?}"),
        };
        // A request on stream 9 (GET /), its answer (200).
        let found = replay(
            Connection::Joined,
            &[
                (
                    Received,
                    &encode(HEADERS, END_HEADERS | END_STREAM, 9, &[0x82, 0x84]),
                ),
                (Sent, &encode(HEADERS, END_HEADERS | END_STREAM, 9, &[0x88])),
            ],
        );
        assert_eq!(
            found.iter().map(path).collect::<Vec<_>>(),
            [("/".into(), Some(200))]
        );
        // HTTP/1 from the middle of a body, then a request: HTTP/1.
        let found = replay(
            Connection::Joined,
            &[
                (Received, b"ody\"}"),
                (Received, b"GET /b HTTP/1.1\r\n\r\n"),
                (Sent, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
        );
        assert_eq!(
            found.iter().map(path).collect::<Vec<_>>(),
            [("/b".into(), Some(200))]
        );
    }

    #[test]
    fn an_h2c_upgrade_answers_its_request_in_http2() {
        use crate::protocols::http1::exchange::Outcome;
        use Direction::{Received, Sent};
        use http2::frame::{DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS, encode};
        let upgrade: &[u8] =
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
            Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
        // The 101, the server's SETTINGS and stream 1's answer in one write.
        let mut switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
            Upgrade: h2c\r\n\r\n"
            .to_vec();
        switch.extend(encode(SETTINGS, 0, 0, &[]));
        switch.extend(encode(HEADERS, END_HEADERS, 1, &[0x88])); // 200
        switch.extend(encode(DATA, END_STREAM, 1, b"ok"));
        let mut client = http2::PREFACE.to_vec();
        client.extend(encode(SETTINGS, 0, 0, &[]));
        // GET /index.html (RFC 7541 C.3.1, without indexing: 0x04 + path)
        let mut block = vec![0x82, 0x86, 0x04, 0x0b];
        block.extend(b"/index.html");
        client.extend(encode(HEADERS, END_HEADERS | END_STREAM, 3, &block));
        let answer = encode(HEADERS, END_HEADERS | END_STREAM, 3, &[0x8d]); // 404
        let found = served(&[
            (Received, upgrade),
            (Sent, &switch),
            (Received, &client),
            (Sent, &answer),
        ]);
        let exchanges: Vec<(&str, Option<u16>)> = found
            .iter()
            .map(|o| match o {
                crate::protocols::Observation::Served(Outcome::Exchange(e)) => {
                    (e.path.as_str(), e.status)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(exchanges, [("/a", Some(200)), ("/index.html", Some(404))]);
    }

    #[test]
    fn an_accepted_connection_is_http2_only_from_its_preface() {
        use crate::protocols::http1::exchange::{Outcome, Unparsed};
        use Direction::{Received, Sent};
        let request = b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        let answer: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        // One byte per read: "P" could start the preface, "PO" cannot.
        let mut bytes: Vec<(Direction, &[u8])> = request.chunks(1).map(|b| (Received, b)).collect();
        bytes.push((Sent, answer));
        let found = served(&bytes);
        let [crate::protocols::Observation::Served(Outcome::Exchange(e))] = &found[..] else {
            panic!("{found:?}")
        };
        assert_eq!(
            (e.path.as_str(), e.status, e.start_ns),
            ("/x", Some(204), 0)
        );
        // The server's SETTINGS first, then the preface in two pieces: HTTP/2.
        // Stream 0 for SETTINGS, stream 1 for the request.
        let frame = |kind: u8, flags: u8, payload: &[u8]| {
            http2::frame::encode(kind, flags, u32::from(kind != 4), payload)
        };
        let mut rest = http2::PREFACE[5..].to_vec();
        rest.extend(frame(4, 0, &[]));
        rest.extend(frame(1, 5, &[0x82, 0x84, 0x86])); // GET /, END_STREAM
        let found = served(&[
            (Sent, &frame(4, 0, &[])),
            (Received, &http2::PREFACE[..5]),
            (Received, &rest),
            (Sent, &frame(1, 5, &[0x88])), // 200, END_STREAM
        ]);
        let [crate::protocols::Observation::Served(Outcome::Exchange(e))] = &found[..] else {
            panic!("{found:?}")
        };
        assert_eq!((e.path.as_str(), e.status, e.start_ns), ("/", Some(200), 2));
        assert!(!found.iter().any(|o| matches!(
            o,
            crate::protocols::Observation::Served(Outcome::Unparsed(Unparsed::Http2))
        )));
    }

    #[test]
    fn a_connection_open_before_loupe_counts_as_its_port_says() {
        let redis = well_known(6379).unwrap();
        assert_eq!(
            after(Connection::Seeded(redis), Direction::Received, b"+OK\r\n").0,
            Some(Pool::Redis)
        );
        let postgres = well_known(5432).unwrap();
        assert_eq!(
            after(
                Connection::Seeded(postgres),
                Direction::Sent,
                b"GET / HTTP/1.1\r\n"
            ),
            (None, true),
            "a command that says otherwise wins"
        );
        assert!(well_known(8080).is_none());
    }
}
