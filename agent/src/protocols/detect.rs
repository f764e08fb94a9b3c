//! Connections the service opened: which protocol each speaks, told from
//! its first bytes by the [`CLIENTS`] in turn (ports being only a hint for
//! connections open before loupe attached), then followed by that
//! protocol's parser.
use super::{CLIENTS, Context, Direction, PoolUse, Protocol, Sink, Transfer, WellKnown};

/// One client connection.
pub enum Outbound {
    /// Nothing seen yet.
    Detect,
    /// Open before loupe attached, to a server's well-known port, no bytes
    /// seen yet: counted in the pool gauges as what the port says.
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

impl Outbound {
    /// From the first bytes: the first protocol that knows them; bytes the
    /// service wrote that none knows are no protocol of loupe's.
    fn detect(dir: Direction, bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Self::Detect;
        }
        match CLIENTS
            .iter()
            .find_map(|client| (client.detect)(dir, bytes))
        {
            Some(protocol) => Self::Known(protocol),
            None if dir == Direction::Sent => Self::Other,
            None => Self::Detect,
        }
    }
}

impl Protocol for Outbound {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        match self {
            Self::Detect => *self = Self::detect(dir, bytes.head),
            // A command written mid-stream tells the protocol; a reply
            // alone does not, and the port's guess stands.
            Self::Seeded(known) => {
                *self = match (dir, Self::detect(dir, bytes.head)) {
                    (Direction::Sent, Self::Detect) | (Direction::Received, _) => {
                        Self::Known((known.mid_stream)())
                    }
                    (_, found) => found,
                };
            }
            Self::Known(_) | Self::Other => {}
        }
        if let Self::Known(protocol) = self {
            protocol.on_bytes(dir, bytes, context, sink);
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
            Self::Detect | Self::Seeded(_) => true,
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
            Self::Detect | Self::Other => None,
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Self::Known(protocol) => protocol.buffered(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fuzzing::{Collect, with_context},
        protocols::{Pool, sql::DbSystem},
    };

    /// The pool an outbound connection counts in after its first bytes,
    /// and whether they are still read.
    fn after(mut conn: Outbound, dir: Direction, bytes: &[u8]) -> (Option<Pool>, bool) {
        let transfer = Transfer::new(1, bytes.len() as u64, bytes);
        let mut sink = Collect(|_| {});
        with_context(|context| conn.on_bytes(dir, &transfer, context, &mut sink));
        (conn.pool().map(|used| used.pool), conn.is_parsing())
    }

    #[test]
    fn the_first_bytes_tell_the_protocol() {
        let postgres = Some(Pool::Db(DbSystem::Postgres));
        let mysql = Some(Pool::Db(DbSystem::Mysql));
        let sent = |bytes: &[u8]| after(Outbound::Detect, Direction::Sent, bytes);
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
            after(Outbound::Detect, Direction::Received, greeting),
            (mysql, true)
        );
        assert_eq!(
            after(Outbound::Detect, Direction::Received, b"+OK\r\n"),
            (None, true),
            "a reply alone tells nothing"
        );
    }

    #[test]
    fn a_connection_open_before_loupe_counts_as_its_port_says() {
        let redis = well_known(6379).unwrap();
        assert_eq!(
            after(Outbound::Seeded(redis), Direction::Received, b"+OK\r\n").0,
            Some(Pool::Redis)
        );
        let postgres = well_known(5432).unwrap();
        assert_eq!(
            after(
                Outbound::Seeded(postgres),
                Direction::Sent,
                b"GET / HTTP/1.1\r\n"
            ),
            (None, true),
            "a command that says otherwise wins"
        );
        assert!(well_known(8080).is_none());
    }
}
