//! The wire protocols loupe reads: pure parsers, host-tested and fuzzed,
//! each behind one interface, [`Protocol`]. A connection's parser receives
//! every syscall's captured bytes ([`Transfer`]) with their [`Direction`],
//! then the close; it reports what it found as [`Observation`]s and asks
//! for more capture with [`Command`]s, through a [`Sink`].
//!
//! Adding a protocol: a folder here whose parser implements [`Protocol`],
//! a [`ClientProtocol`] line in [`CLIENTS`] (or, for a protocol a service
//! serves, the choice in `detect::Connection::accepted`), an
//! [`Observation`] variant if it finds something new, and
//! its families in the catalogue.
pub mod detect;
pub mod framer;
pub mod http1;
pub mod http2;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
#[cfg(any(test, feature = "fuzzing"))]
pub mod testing;

use self::{
    http1::exchange::{Exchange, Outcome, ParseConfig, Streamed},
    sql::{DbSystem, Statement},
};

/// Which way bytes went, seen from the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The service read them.
    Received,
    /// The service wrote them.
    Sent,
}

/// What one syscall transferred, as far as it was captured.
#[derive(Clone, Copy, Debug)]
pub struct Transfer<'a> {
    /// Monotonic nanoseconds at the end of the syscall.
    pub ts: u64,
    /// Bytes the syscall transferred.
    pub len: u64,
    /// Its first bytes, as far as they were captured.
    pub head: &'a [u8],
    /// Its last bytes, when `head` does not reach its end (else empty).
    pub tail: &'a [u8],
    /// Bytes from anywhere in it, at their offsets (ascending, apart): what
    /// the probes copied by following an HTTP/2 connection's frames.
    pub pieces: &'a [(u64, &'a [u8])],
}

impl<'a> Transfer<'a> {
    /// A syscall captured from its start only.
    pub fn new(ts: u64, len: u64, head: &'a [u8]) -> Self {
        Self {
            ts,
            len,
            head,
            tail: &[],
            pieces: &[],
        }
    }

    /// A syscall captured from its start and its end.
    pub fn ends(ts: u64, len: u64, head: &'a [u8], tail: &'a [u8]) -> Self {
        Self {
            tail,
            ..Self::new(ts, len, head)
        }
    }

    /// Its captured bytes from its start (empty if its start was not).
    pub fn start(&self) -> &'a [u8] {
        self.at(0).0
    }

    /// The captured bytes from `pos` on, and where that run ends: the end
    /// of the captured run, of the gap (no bytes), or of the syscall.
    pub fn at(&self, pos: u64) -> (&'a [u8], u64) {
        let head = (self.head.len() as u64).min(self.len);
        if pos < head {
            return (&self.head[pos as usize..head as usize], head);
        }
        let tail = (self.tail.len() as u64).min(self.len);
        let tail_start = self.len - tail;
        if pos >= tail_start {
            let skip = self.tail.len() - tail as usize;
            let from = skip + (pos - tail_start) as usize;
            return (&self.tail[from..], self.len);
        }
        let next = self
            .pieces
            .partition_point(|(at, bytes)| at + bytes.len() as u64 <= pos);
        match self.pieces.get(next) {
            Some(&(at, bytes)) if at <= pos => {
                let end = (at + bytes.len() as u64).min(tail_start);
                (&bytes[(pos - at) as usize..(end - at) as usize], end)
            }
            Some(&(at, _)) => (&[], at.min(tail_start)),
            None => (&[], tail_start),
        }
    }
}

/// What the parsers need from the configuration, for one service.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Requests the service serves: authentication, bodies rules read.
    pub served: ParseConfig<'a>,
    /// HTTP calls the service makes.
    pub calls: ParseConfig<'a>,
}

/// What a parser found on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// On a connection the service accepted.
    Served(Outcome),
    /// An HTTP call the service made (a request it wrote, the response it
    /// read).
    Call(Exchange),
    /// What an answer read as it comes brought (see
    /// [`http1::exchange::BodyWants::live`]), on the service's side `role`
    /// of connection `conn` (set by the capture's sink, which knows it).
    Streamed {
        role: http2::Role,
        conn: u64,
        streamed: Streamed,
    },
    /// A gRPC call the service answered or made (also in `Served` or
    /// `Call`, as an HTTP/2 request).
    Grpc(http2::Role, http2::grpc::Event),
    /// On a connection the service opened to Redis.
    Redis(redis::Op),
    /// On a connection the service opened to a database.
    Statement {
        system: DbSystem,
        statement: Statement,
    },
}

/// What a parser asks of the probes for its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The service sent a call whose reply is wanted whole, up to this many
    /// bytes: copy the connection's reads in full.
    CaptureReply(usize),
}

/// Where a parser's findings go.
pub trait Sink {
    fn observe(&mut self, observation: Observation);
    fn command(&mut self, command: Command);
}

/// The pool a client connection counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    Redis,
    Db(DbSystem),
}

/// A pooled client connection (to Redis or a database), as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: Pool,
    /// A statement in flight or a transaction open.
    pub busy: bool,
    /// Turned to TLS at the socket (its plaintext, where OpenSSL is
    /// hooked, is another connection of loupe's).
    pub encrypted: bool,
}

/// One connection's parser.
pub trait Protocol: Send {
    /// One syscall's bytes.
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    );

    /// The connection closed at `ts`: what never got an answer ends.
    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink);

    /// Nothing was read since `idle_since`: ends what only silence ends.
    fn expire(&mut self, _idle_since: u64, _sink: &mut dyn Sink) {}

    /// Whether the connection's bytes are still wanted.
    fn is_parsing(&self) -> bool;

    /// The pool it counts in, for a client connection to Redis or a
    /// database.
    fn pool(&self) -> Option<PoolUse> {
        None
    }

    /// Bytes held (for the memory budget).
    fn buffered(&self) -> usize;

    /// An HTTP/1.1 connection just switched to HTTP/2 (`Upgrade: h2c`,
    /// answered `101`): the upgraded request and where in the syscall the
    /// HTTP/2 begins, handed out once.
    fn switched(&mut self) -> Option<http1::exchange::H2cUpgrade> {
        None
    }
}

/// A connection's parser, or `None` when its first bytes in `Direction`
/// are not the protocol's.
pub type Detect = fn(Direction, &[u8]) -> Option<Box<dyn Protocol>>;

/// A protocol recognised on connections the service opens.
pub struct ClientProtocol {
    /// Its parser, if a connection's first bytes in `Direction` are its
    /// own (the service's request, or a server that speaks first).
    pub detect: Detect,
    /// For connections open before loupe attached: its servers'
    /// well-known port, and its parser picked up mid-stream.
    pub well_known: Option<WellKnown>,
}

/// A protocol's well-known server port.
pub struct WellKnown {
    pub port: u16,
    pub pool: Pool,
    pub mid_stream: fn() -> Box<dyn Protocol>,
}

/// The client protocols, in the order they are tried on a connection's
/// first bytes.
pub const CLIENTS: &[ClientProtocol] = &[
    redis::CLIENT,
    // Before HTTP/1's, which would take "PRI *" for a request line.
    http2::CLIENT,
    http1::CLIENT,
    postgres::CLIENT,
    mysql::CLIENT,
];

/// The parser of a connection the service accepted: HTTP/2 or HTTP/1, as
/// its first bytes say (`mid_stream`: open before loupe attached, so they
/// are frames or HTTP/1 from wherever the stream was).
pub fn inbound(mid_stream: bool) -> Box<dyn Protocol> {
    Box::new(if mid_stream {
        detect::Connection::Joined
    } else {
        detect::Connection::Accepted(Vec::new())
    })
}
