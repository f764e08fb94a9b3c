//! MySQL and MariaDB from the wire, as the service's client connection
//! shows it. Pure and total: any input yields statements or nothing, never
//! a panic, and the state stays bounded.
//!
//! - The server speaks first (its handshake); a client that answers with an
//!   SSL request means TLS: the connection is counted, not read.
//! - Commands start a sequence (id 0): `COM_QUERY` is a statement typed by
//!   its SQL; `COM_STMT_PREPARE` remembers the statement id the server
//!   assigns, and each `COM_STMT_EXECUTE` is a statement of that type
//!   (`unknown` when prepared before loupe watched; MariaDB's id
//!   `0xffffffff` names the statement prepared last, which Connector/J
//!   pipelines behind its prepare). MariaDB's `COM_STMT_BULK_EXECUTE`
//!   (Connector/J's `useBulkStmts`) runs a statement for many parameter
//!   rows in one command and one answer: it is counted once. Other
//!   commands (ping, change of database...) are not statements.
//! - Answers: `OK`, `ERR`, or a result set (column count, column
//!   definitions, rows, end), with `EOF` packets unless the client asked to
//!   deprecate them; the status flags of the last `OK`/`EOF` say whether a
//!   transaction is open.
//! - Packets longer than the capture are skipped by length; a header the
//!   probes did not copy loses the frame, and a read whose last bytes end a
//!   result set (the probes copy the tail of long reads) resynchronises.

use std::collections::{HashMap, VecDeque};

use crate::protocols::{
    ClientProtocol, Direction, Pool, Protocol, WellKnown,
    framer::{self, Header},
    sql::{self, DbSystem, Statement, UNKNOWN},
};

const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
/// MariaDB: one statement, many rows of parameters.
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// MariaDB: the statement id that means "the one prepared last".
const LAST_PREPARED: u32 = u32::MAX;
/// Commands the server does not answer.
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_QUIT: u8 = 0x01;

const CLIENT_SSL: u32 = 0x0800;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// Bytes of a packet's payload kept (command, start of the SQL, a header).
const KEEP: usize = 256;
const MAX_STATEMENTS: usize = 256;
const MAX_PENDING: usize = 1024;

/// MySQL's packet header: a 3-byte little-endian payload length and a
/// sequence id.
#[derive(Debug)]
struct My;

impl Header for My {
    const LEN: usize = 4;
    const KEEP: usize = KEEP;

    fn parse(header: &[u8]) -> Option<(u8, u32)> {
        Some((
            header[3],
            u32::from_le_bytes([header[0], header[1], header[2], 0]),
        ))
    }
}

type Framer = framer::Framer<My>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the client's handshake response.
    Handshake,
    /// Authentication exchange, until the server's `OK`.
    Auth,
    Commands,
    Encrypted,
}

/// Where the answer to the oldest command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Its first packet.
    Start,
    /// Column definitions left, then (without deprecated EOF) an EOF.
    Columns(u64),
    ColumnsEof,
    Rows,
    /// Packets left of a prepare's answer (parameter and column
    /// definitions, each block followed by an EOF unless deprecated).
    Skip(u64),
}

#[derive(Clone, Debug)]
struct Command {
    /// `None`: not a statement (a prepare, a ping...).
    query_type: Option<&'static str>,
    /// A prepare: its SQL's type, for the id the server assigns.
    prepares: Option<&'static str>,
    start_ns: u64,
}

#[derive(Clone, Debug)]
pub struct MysqlConn {
    phase: Phase,
    tx: Framer,
    rx: Framer,
    pending: VecDeque<Command>,
    answer: Answer,
    statements: HashMap<u32, &'static str>,
    /// The type of the statement this client prepared last.
    last_prepare: Option<&'static str>,
    deprecate_eof: bool,
    in_transaction: bool,
    rx_lost: bool,
    tx_lost: bool,
}

/// A length-encoded integer at the start of `bytes`.
fn lenenc(bytes: &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    let take = |n: usize| -> Option<u64> {
        let mut raw = [0u8; 8];
        raw[..n].copy_from_slice(rest.get(..n)?);
        Some(u64::from_le_bytes(raw))
    };
    match first {
        0..=0xfa => Some(u64::from(first)),
        0xfc => take(2),
        0xfd => take(3),
        0xfe => take(8),
        _ => None,
    }
}

/// Size of the length-encoded integer starting with `first`.
fn lenenc_size(first: u8) -> usize {
    match first {
        0xfc => 3,
        0xfd => 4,
        0xfe => 9,
        _ => 1,
    }
}

/// Status flags of an `OK` packet body (header `0x00` or `0xfe`).
fn ok_status(body: &[u8]) -> Option<u16> {
    let mut at = 1;
    for _ in 0..2 {
        at += lenenc_size(*body.get(at)?);
    }
    Some(u16::from_le_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// Status flags of an `EOF` packet body (`0xfe`, warnings, status).
fn eof_status(body: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*body.get(3)?, *body.get(4)?]))
}

impl MysqlConn {
    /// A connection whose handshake the probes saw.
    pub fn new() -> Self {
        Self {
            phase: Phase::Handshake,
            tx: Framer::default(),
            rx: Framer::default(),
            pending: VecDeque::new(),
            answer: Answer::Start,
            statements: HashMap::new(),
            last_prepare: None,
            deprecate_eof: false,
            in_transaction: false,
            rx_lost: false,
            tx_lost: false,
        }
    }

    /// Whether `bytes`, the first a server sent, are a MySQL handshake
    /// (protocol version 10, sequence 0).
    pub fn recognise(bytes: &[u8]) -> bool {
        let [a, b, c, 0, 10, ..] = *bytes else {
            return false;
        };
        let len = u32::from_le_bytes([a, b, c, 0]) as usize;
        (20..1024).contains(&len) && bytes.get(5).is_some_and(u8::is_ascii_digit)
    }

    /// A connection picked up while in use (its first write a command).
    pub fn mid_stream() -> Self {
        Self {
            phase: Phase::Commands,
            ..Self::new()
        }
    }

    /// Whether `bytes`, the first a client wrote on a connection already in
    /// use, are one MySQL command packet (sequence 0, a known command).
    pub fn recognise_command(bytes: &[u8]) -> bool {
        let [a, b, c, 0, command, ..] = *bytes else {
            return false;
        };
        let len = u32::from_le_bytes([a, b, c, 0]) as usize;
        len + 4 == bytes.len()
            && matches!(
                command,
                COM_QUERY
                    | COM_STMT_PREPARE
                    | COM_STMT_EXECUTE
                    | COM_STMT_BULK_EXECUTE
                    | 0x0e
                    | 0x02
            )
    }

    pub fn buffered(&self) -> usize {
        self.tx.buffered()
            + self.rx.buffered()
            + self.pending.capacity() * 32
            + self.statements.len() * 16
    }

    pub fn is_parsing(&self) -> bool {
        self.phase != Phase::Encrypted
    }

    /// The client switched to TLS: the rest is ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.phase == Phase::Encrypted
    }

    pub fn is_busy(&self) -> bool {
        self.phase == Phase::Commands && (!self.pending.is_empty() || self.in_transaction)
    }

    /// Bytes the service wrote.
    pub fn on_tx(&mut self, ts: u64, bytes: &[u8], len: u64) {
        if self.phase == Phase::Encrypted {
            return;
        }
        if self.tx_lost {
            // Commands start their own write: resume at one with sequence 0.
            if bytes.get(3) != Some(&0) {
                return;
            }
            self.tx = Framer::default();
            self.tx_lost = false;
        }
        // The framer is taken out while it calls back into `self` (no copy
        // of the packets).
        let mut tx = std::mem::take(&mut self.tx);
        let result = tx.feed(bytes, len, &mut |p| self.client_packet(p.body, ts));
        self.tx = tx;
        if result.is_err() {
            self.tx_lost = true;
        }
    }

    fn client_packet(&mut self, body: &[u8], ts: u64) {
        if self.phase == Phase::Handshake {
            let caps = body
                .get(..4)
                .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            self.deprecate_eof = caps & CLIENT_DEPRECATE_EOF != 0;
            // An SSL request is the capability block alone (32 bytes).
            self.phase = if caps & CLIENT_SSL != 0 && body.len() == 32 {
                Phase::Encrypted
            } else {
                Phase::Auth
            };
            return;
        }
        if self.phase == Phase::Auth {
            return; // authentication data
        }
        let Some((&command, rest)) = body.split_first() else {
            return;
        };
        let (query_type, prepares) = match command {
            COM_QUERY => (Some(sql::query_type(rest)), None),
            COM_STMT_PREPARE => {
                let query_type = sql::query_type(rest);
                self.last_prepare = Some(query_type);
                (None, Some(query_type))
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => {
                let id = rest
                    .get(..4)
                    .map_or(0, |i| u32::from_le_bytes([i[0], i[1], i[2], i[3]]));
                let known = match id {
                    LAST_PREPARED => self.last_prepare,
                    _ => self.statements.get(&id).copied(),
                };
                (Some(known.unwrap_or(UNKNOWN)), None)
            }
            COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA | COM_QUIT => return,
            _ => (None, None),
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Command {
            query_type,
            prepares,
            start_ns: ts,
        });
    }

    /// The connection closed: statements never answered failed.
    pub fn on_close(&mut self, ts: u64, out: &mut impl FnMut(Statement)) {
        for command in self.pending.drain(..) {
            if let Some(query_type) = command.query_type {
                out(Statement {
                    query_type,
                    start_ns: command.start_ns,
                    end_ns: ts.max(command.start_ns),
                    error: true,
                });
            }
        }
    }

    /// Bytes the service read. `tail`: the last bytes of a long read.
    pub fn on_rx(
        &mut self,
        ts: u64,
        bytes: &[u8],
        len: u64,
        tail: bool,
        out: &mut impl FnMut(Statement),
    ) {
        if self.phase == Phase::Auth && !tail {
            // Until the server's OK (0x00) ends the authentication exchange.
            let mut ok = false;
            let _ = self
                .rx
                .feed(bytes, len, &mut |p| ok |= p.body.first() == Some(&0));
            if ok {
                self.phase = Phase::Commands;
                self.rx = Framer::default();
            }
            return;
        }
        if self.phase != Phase::Commands {
            return; // the handshake (the client's answer moves on), or TLS
        }
        if tail {
            if self.rx_lost
                && let Some(status) = ends_result(bytes)
            {
                self.rx_lost = false;
                self.rx = Framer::default();
                self.answer = Answer::Start;
                self.in_transaction = status & SERVER_STATUS_IN_TRANS != 0;
                self.finish(ts, false, out);
            }
            return;
        }
        if self.rx_lost {
            return;
        }
        let mut rx = std::mem::take(&mut self.rx);
        let result = rx.feed(bytes, len, &mut |p| {
            self.server_packet(p.len, p.body, ts, out)
        });
        self.rx = rx;
        if result.is_err() {
            self.rx_lost = true;
        }
    }

    fn finish(&mut self, ts: u64, error: bool, out: &mut impl FnMut(Statement)) {
        self.answer = Answer::Start;
        if let Some(command) = self.pending.pop_front()
            && let Some(query_type) = command.query_type.or(command.prepares.filter(|_| error))
        {
            out(Statement {
                query_type,
                start_ns: command.start_ns,
                end_ns: ts,
                error,
            });
        }
    }

    /// End of a result set (or of one of several).
    fn end_of_results(&mut self, status: u16, ts: u64, out: &mut impl FnMut(Statement)) {
        self.in_transaction = status & SERVER_STATUS_IN_TRANS != 0;
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.answer = Answer::Start; // the next result of the same query
        } else {
            self.finish(ts, false, out);
        }
    }

    fn server_packet(&mut self, len: u32, body: &[u8], ts: u64, out: &mut impl FnMut(Statement)) {
        let first = body.first().copied().unwrap_or(0);
        // An end-of-rows packet: `0xfe` and short (a row starting with 0xfe
        // is a length of 2^24 or more).
        let is_end = first == 0xfe && len < 0xff_ffff && (self.deprecate_eof || len < 9);
        match self.answer {
            Answer::Start => match first {
                0x00 => {
                    if let Some(Command {
                        prepares: Some(query_type),
                        ..
                    }) = self.pending.front()
                    {
                        let query_type = *query_type;
                        self.prepared(body, query_type, ts, out);
                        return;
                    }
                    let status = ok_status(body).unwrap_or(0);
                    self.end_of_results(status, ts, out);
                }
                0xfe if len < 9 => {
                    let status = eof_status(body).unwrap_or(0);
                    self.end_of_results(status, ts, out);
                }
                0xff => self.finish(ts, true, out),
                _ => {
                    let columns = lenenc(body).unwrap_or(0);
                    self.answer = if columns == 0 {
                        Answer::Rows
                    } else {
                        Answer::Columns(columns)
                    };
                }
            },
            Answer::Columns(left) => {
                self.answer = match (left - 1, self.deprecate_eof) {
                    (0, true) => Answer::Rows,
                    (0, false) => Answer::ColumnsEof,
                    (n, _) => Answer::Columns(n),
                };
            }
            Answer::ColumnsEof => self.answer = Answer::Rows,
            Answer::Rows => {
                if first == 0xff {
                    self.finish(ts, true, out);
                } else if is_end {
                    let status = if self.deprecate_eof {
                        ok_status(body)
                    } else {
                        eof_status(body)
                    };
                    self.end_of_results(status.unwrap_or(0), ts, out);
                }
            }
            Answer::Skip(left) => {
                if left <= 1 {
                    self.finish(ts, false, out);
                } else {
                    self.answer = Answer::Skip(left - 1);
                }
            }
        }
    }

    /// A prepare's `OK`: remembers the statement id; its definitions follow.
    fn prepared(
        &mut self,
        body: &[u8],
        query_type: &'static str,
        ts: u64,
        out: &mut impl FnMut(Statement),
    ) {
        let id = body
            .get(1..5)
            .map_or(0, |i| u32::from_le_bytes([i[0], i[1], i[2], i[3]]));
        let count = |at: usize| {
            body.get(at..at + 2)
                .map_or(0, |v| u64::from(u16::from_le_bytes([v[0], v[1]])))
        };
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(id, query_type);
        let (columns, params) = (count(5), count(7));
        let eofs =
            u64::from(!self.deprecate_eof) * (u64::from(params > 0) + u64::from(columns > 0));
        match params + columns + eofs {
            0 => self.finish(ts, false, out),
            n => self.answer = Answer::Skip(n),
        }
    }
}

sql::database_protocol!(MysqlConn, DbSystem::Mysql);

/// The server's handshake, or a command written on a connection in use.
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    match dir {
        Direction::Received if MysqlConn::recognise(bytes) => Some(Box::new(MysqlConn::new())),
        Direction::Sent if MysqlConn::recognise_command(bytes) => {
            Some(Box::new(MysqlConn::mid_stream()))
        }
        _ => None,
    }
}

pub const CLIENT: ClientProtocol = ClientProtocol {
    detect,
    well_known: Some(WellKnown {
        port: 3306,
        pool: Pool::Db(DbSystem::Mysql),
        mid_stream: || Box::new(MysqlConn::mid_stream()),
    }),
};

impl Default for MysqlConn {
    fn default() -> Self {
        Self::new()
    }
}

/// The status flags of the packet that ends `bytes`, if it is the end of a
/// result set (an `EOF`, or an `OK` with header `0xfe`).
fn ends_result(bytes: &[u8]) -> Option<u16> {
    for start in (0..bytes.len().saturating_sub(4)).rev() {
        let len =
            u32::from_le_bytes([bytes[start], bytes[start + 1], bytes[start + 2], 0]) as usize;
        if start + 4 + len == bytes.len() && (5..64).contains(&len) && bytes[start + 4] == 0xfe {
            let body = &bytes[start + 4..];
            return if len == 5 {
                eof_status(body)
            } else {
                ok_status(body)
            };
        }
    }
    None
}

#[cfg(test)]
mod tests;
