//! Connections the service opened: which protocol each speaks (told from
//! its first bytes, ports being only a hint), and the parser that follows
//! it (HTTP/1.x, Redis, PostgreSQL, MySQL).
//!
//! An HTTP client connection is the server's parser seen from the other
//! end: what the service writes are requests (parsed as a server parses
//! what it reads), what it reads are responses. The timings mirror too: a
//! call lasts from the write that carried its first byte to the read that
//! brought the response's last byte.
use loupe_common::event::{DIR_RX, DIR_TX, DataHeader};

use crate::{
    protocols::found::Found,
    protocols::http1::{
        exchange::{HttpConn, Outcome, ParseConfig, Transfer},
        head::{could_start_request, looks_like_request},
    },
    protocols::mysql::MysqlConn,
    protocols::postgres::PgConn,
    protocols::redis::RedisConn,
    protocols::sql::DbSystem,
};

/// Client connections of one service, by protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    pub redis: i64,
    /// Database connections, by [`DbSystem`] index.
    pub db: [i64; 2],
    /// Those with a statement in flight or a transaction open.
    pub db_busy: [i64; 2],
}

/// The HTTP calls among a client parser's outcomes (a connection that is
/// not HTTP after all is simply no longer followed).
fn calls(out: &mut impl FnMut(Found)) -> impl FnMut(Outcome) + '_ {
    |outcome| {
        if let Outcome::Exchange(exchange) = outcome {
            out(Found::HttpCall(exchange));
        }
    }
}

/// What a connection open before loupe attached is taken for, from the
/// server's well-known port, until its bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guess {
    Redis,
    Db(DbSystem),
}

impl Guess {
    /// From the port the connection goes to.
    pub fn from_port(port: u16) -> Option<Self> {
        match port {
            6379 => Some(Self::Redis),
            5432 => Some(Self::Db(DbSystem::Postgres)),
            3306 => Some(Self::Db(DbSystem::Mysql)),
            _ => None,
        }
    }

    /// The parser for the guessed protocol, picked up mid-stream.
    fn client(self) -> Client {
        match self {
            Self::Redis => Client::Redis(Box::default()),
            Self::Db(DbSystem::Postgres) => Client::Postgres(Box::new(PgConn::mid_stream())),
            Self::Db(DbSystem::Mysql) => Client::Mysql(Box::new(MysqlConn::mid_stream())),
        }
    }
}

/// One client connection.
#[derive(Clone, Debug, Default)]
pub enum Client {
    /// Nothing seen yet.
    #[default]
    Detect,
    /// Open before loupe attached, to a server's well-known port, no bytes
    /// seen yet: counted in the pool gauges as what the port says.
    Seeded(Guess),
    Redis(Box<RedisConn>),
    Postgres(Box<PgConn>),
    Mysql(Box<MysqlConn>),
    Http(Box<HttpConn>),
    /// Not a protocol loupe parses: ignored.
    Other,
}

impl Client {
    /// From the first bytes the server sent (MySQL speaks first).
    fn classify_reply(bytes: &[u8]) -> Self {
        if MysqlConn::recognise(bytes) {
            Self::Mysql(Box::default())
        } else {
            Self::Detect
        }
    }

    /// From the first bytes the service wrote.
    fn classify(bytes: &[u8]) -> Self {
        match bytes {
            // A RESP array of bulk strings: `*<n>\r\n$`.
            [b'*', rest @ ..] if rest.first().is_some_and(u8::is_ascii_digit) => {
                Self::Redis(Box::default())
            }
            [] => Self::Detect,
            // A request, or its first letters (a head written in pieces).
            _ if looks_like_request(bytes) || could_start_request(bytes) => {
                Self::Http(Box::new(HttpConn::new(false)))
            }
            _ => match PgConn::recognise(bytes) {
                Some(false) => Self::Postgres(Box::default()),
                Some(true) => Self::Postgres(Box::new(PgConn::mid_stream())),
                None if MysqlConn::recognise_command(bytes) => {
                    Self::Mysql(Box::new(MysqlConn::mid_stream()))
                }
                None => Self::Other,
            },
        }
    }

    /// One syscall's captured bytes: `bytes` from its start, `last` from
    /// its end when `bytes` does not reach it; `http` is how HTTP calls are
    /// parsed.
    pub fn on_data(
        &mut self,
        head: &DataHeader,
        bytes: &[u8],
        last: &[u8],
        http: &ParseConfig<'_>,
        out: &mut impl FnMut(Found),
    ) {
        let ts = head.header.ts_ns;
        match *self {
            Self::Detect => {
                *self = match head.dir {
                    DIR_TX => Self::classify(bytes),
                    _ => Self::classify_reply(bytes),
                };
            }
            // A command written mid-stream tells the protocol; a reply
            // alone does not, and the port's guess stands.
            Self::Seeded(guess) => {
                *self = match (head.dir, Self::classify(bytes)) {
                    (DIR_TX, Self::Detect) | (DIR_RX, _) => guess.client(),
                    (_, found) => found,
                };
            }
            _ => {}
        }
        if let Self::Http(conn) = self {
            let transfer = Transfer::of_record(head, bytes, last);
            match head.dir {
                DIR_TX => {
                    let waiting = conn.pending();
                    conn.on_rx(&transfer, http, &mut calls(out));
                    let wanted = conn.newest_wants_response();
                    if conn.pending() > waiting && wanted > 0 {
                        out(Found::WantsReply(wanted));
                    }
                }
                DIR_RX => conn.on_tx(&transfer, &mut calls(out)),
                _ => {}
            }
            return;
        }
        let mut db = |system, statement| out(Found::Db { system, statement });
        match (self, head.dir) {
            // Commands and replies are read from their start; a database
            // reply's end helps to resynchronise after a long result.
            (Self::Postgres(conn), DIR_RX) => {
                let mut found = |st| db(DbSystem::Postgres, st);
                conn.on_rx(ts, bytes, head.len, false, &mut found);
                if !last.is_empty() {
                    conn.on_rx(ts, last, head.len, true, &mut found);
                }
            }
            (Self::Mysql(conn), DIR_RX) => {
                let mut found = |st| db(DbSystem::Mysql, st);
                conn.on_rx(ts, bytes, head.len, false, &mut found);
                if !last.is_empty() {
                    conn.on_rx(ts, last, head.len, true, &mut found);
                }
            }
            (Self::Postgres(conn), DIR_TX) => conn.on_tx(ts, bytes, head.len),
            (Self::Mysql(conn), DIR_TX) => conn.on_tx(ts, bytes, head.len),
            (Self::Redis(conn), DIR_TX) => conn.on_tx(ts, bytes, head.len),
            (Self::Redis(conn), DIR_RX) => {
                conn.on_rx(ts, bytes, head.len, &mut |op| out(Found::Redis(op)));
            }
            _ => {}
        }
    }

    /// The connection closed at `ts`: what never got an answer failed.
    pub fn on_close(self, ts: u64, out: &mut impl FnMut(Found)) {
        let mut db = |system, statement| out(Found::Db { system, statement });
        match self {
            Self::Redis(mut conn) => conn.on_close(ts, &mut |op| out(Found::Redis(op))),
            Self::Postgres(mut conn) => conn.on_close(ts, &mut |st| db(DbSystem::Postgres, st)),
            Self::Mysql(mut conn) => conn.on_close(ts, &mut |st| db(DbSystem::Mysql, st)),
            Self::Http(mut conn) => conn.on_close(&mut calls(out)),
            Self::Detect | Self::Seeded(_) | Self::Other => {}
        }
    }

    /// Ends a response with no visible end that has seen no read since
    /// `idle_since`.
    pub fn expire(&mut self, idle_since: u64, out: &mut impl FnMut(Found)) {
        if let Self::Http(conn) = self {
            conn.expire(idle_since, &mut calls(out));
        }
    }

    /// A connection to Redis or a database (one of a pool).
    pub fn is_pooled(&self) -> bool {
        matches!(
            self,
            Self::Redis(_) | Self::Postgres(_) | Self::Mysql(_) | Self::Seeded(_)
        )
    }

    pub fn is_parsing(&self) -> bool {
        match self {
            Self::Detect | Self::Seeded(_) => true,
            Self::Redis(conn) => conn.is_parsing(),
            Self::Postgres(conn) => conn.is_parsing(),
            Self::Mysql(conn) => conn.is_parsing(),
            Self::Http(conn) => conn.is_parsing(),
            Self::Other => false,
        }
    }

    /// A database connection that turned to TLS at the socket (its
    /// plaintext, where OpenSSL is hooked, is another stream).
    pub fn is_encrypted(&self) -> bool {
        match self {
            Self::Postgres(conn) => conn.is_encrypted(),
            Self::Mysql(conn) => conn.is_encrypted(),
            _ => false,
        }
    }

    pub fn count_into(&self, counts: &mut ClientCounts) {
        let (index, busy) = match self {
            Self::Redis(_) | Self::Seeded(Guess::Redis) => {
                counts.redis += 1;
                return;
            }
            Self::Postgres(conn) => (DbSystem::Postgres.index(), conn.is_busy()),
            Self::Mysql(conn) => (DbSystem::Mysql.index(), conn.is_busy()),
            Self::Seeded(Guess::Db(system)) => (system.index(), false),
            Self::Http(_) | Self::Detect | Self::Other => return,
        };
        counts.db[index] += 1;
        counts.db_busy[index] += i64::from(busy);
    }
}
