//! Connections the service opened: which protocol each speaks (told from
//! its first bytes, ports being only a hint), and the parser that follows
//! it (HTTP/1.x, Redis, PostgreSQL, MySQL).
//!
//! An HTTP client connection is the server's parser seen from the other
//! end: what the service writes are requests (parsed as a server parses
//! what it reads), what it reads are responses. The timings mirror too: a
//! call lasts from the write that carried its first byte to the read that
//! brought the response's last byte.
use loupe_common::event::{DATA_SAME_SYSCALL, DATA_TAIL, DIR_RX, DIR_TX, DataHeader};

use crate::{
    capture::{Found, transfer},
    http::{
        exchange::{HttpConn, Outcome, ParseConfig},
        head::looks_like_request,
    },
    mysql::MysqlConn,
    postgres::PgConn,
    redis::RedisConn,
};

/// The databases loupe reads the wire of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbSystem {
    Postgres,
    Mysql,
}

impl DbSystem {
    pub const ALL: [Self; 2] = [Self::Postgres, Self::Mysql];

    /// The `db_system` label (OpenTelemetry's names).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::Mysql => "mysql",
        }
    }
}

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

/// One client connection.
#[derive(Clone, Debug, Default)]
pub enum Client {
    /// Nothing seen yet.
    #[default]
    Detect,
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
            _ if looks_like_request(bytes) => Self::Http(Box::new(HttpConn::new(false))),
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

    /// One syscall's captured bytes; `http` is how HTTP calls are parsed.
    pub fn on_data(
        &mut self,
        head: &DataHeader,
        bytes: &[u8],
        http: &ParseConfig<'_>,
        out: &mut impl FnMut(Found),
    ) {
        let ts = head.header.ts_ns;
        let tail = head.flags & DATA_TAIL != 0;
        let continues = head.flags & DATA_SAME_SYSCALL != 0;
        if matches!(self, Self::Detect) && !tail {
            *self = match head.dir {
                DIR_TX => Self::classify(bytes),
                _ => Self::classify_reply(bytes),
            };
        }
        if let Self::Http(conn) = self {
            let transfer = transfer(head, bytes);
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
            // reply's tail helps to resynchronise after a long result.
            (Self::Postgres(conn), DIR_RX) => {
                conn.on_rx(ts, bytes, head.len, tail, &mut |st| {
                    db(DbSystem::Postgres, st);
                });
            }
            (Self::Mysql(conn), DIR_RX) => {
                conn.on_rx(ts, bytes, head.len, tail, &mut |st| db(DbSystem::Mysql, st));
            }
            (_, _) if tail || continues => {}
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
            Self::Detect | Self::Other => {}
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
        matches!(self, Self::Redis(_) | Self::Postgres(_) | Self::Mysql(_))
    }

    pub fn is_parsing(&self) -> bool {
        match self {
            Self::Detect => true,
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
            Self::Redis(_) => {
                counts.redis += 1;
                return;
            }
            Self::Postgres(conn) => (0, conn.is_busy()),
            Self::Mysql(conn) => (1, conn.is_busy()),
            Self::Http(_) | Self::Detect | Self::Other => return,
        };
        counts.db[index] += 1;
        counts.db_busy[index] += i64::from(busy);
    }
}
