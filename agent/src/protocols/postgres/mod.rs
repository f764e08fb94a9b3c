//! PostgreSQL from the wire, as the service's client connection shows it.
//! Pure and total: any input yields statements or nothing, never a panic,
//! and the state stays bounded.
//!
//! - Startup: `SSLRequest` answered `N` continues in plaintext; `S` means
//!   TLS: the connection is counted, its payload skipped (also for an
//!   accepted `GSSENCRequest`). A `CancelRequest` connection carries nothing.
//! - Simple query (`Q`): each `CommandComplete` is one statement, typed by
//!   its leading keyword like an extended one (the query's text is split at
//!   its top-level semicolons; a statement past the kept start of a long
//!   text is typed by its command tag); an `ErrorResponse` ends the query,
//!   its failing statement counted as an error.
//! - Extended protocol: `Parse` remembers each statement's type by name,
//!   `Bind` maps the portal to it, each `Execute` is one statement, answered
//!   by `CommandComplete`, `PortalSuspended`, `EmptyQueryResponse` or
//!   `ErrorResponse`; after an error the server skips the rest of the batch
//!   until `Sync`, and so do we. Batches may be pipelined (asyncpg,
//!   psycopg 3): answers are matched in order.
//! - `ReadyForQuery` carries the transaction status (idle, in a
//!   transaction, failed transaction).
//! - A connection picked up mid-stream is recognised by the shape of its
//!   messages; statements prepared before that are of type `unknown`.
//! - A read whose headers were not captured loses the frame: statements
//!   still waiting complete when a read ends with `ReadyForQuery` (the
//!   probes copy the last bytes of long reads on client connections), and
//!   parsing resumes after it.
pub mod frame;

use std::collections::{HashMap, VecDeque};

use self::frame::{Frame, Framer, cstr, known_kind};
use crate::protocols::{
    ClientProtocol, Direction, Pool, Protocol, WellKnown,
    sql::{self, DbSystem, Statement, UNKNOWN},
};

/// Statements and portals remembered per connection.
const MAX_NAMES: usize = 256;
/// Bytes of a statement or portal name kept (longer names share a prefix).
const MAX_NAME: usize = 64;
/// Statements awaiting their answers per connection.
const MAX_PENDING: usize = 4096;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 196_608;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the startup message (client side, untyped).
    Startup,
    /// `SSLRequest` or `GSSENCRequest` sent: one byte answers.
    Negotiating,
    /// Encrypted: nothing to read.
    Encrypted,
    /// Typed messages both ways.
    Typed,
    /// Carries nothing we measure (a cancel request).
    Done,
}

#[derive(Clone, Debug)]
enum Pending {
    /// An `Execute`.
    Execute {
        query_type: &'static str,
        start_ns: u64,
    },
    /// A simple query: the types of its statements not yet completed,
    /// last first (those the kept text shows).
    Simple {
        types: Vec<&'static str>,
        start_ns: u64,
    },
    /// A `Sync`: the answer is `ReadyForQuery`. `prepared`: the batch
    /// parsed a statement without executing it (a prepare), whose error
    /// counts as a failed statement.
    Sync {
        prepared: Option<(&'static str, u64)>,
    },
}

#[derive(Clone, Debug)]
pub struct PgConn {
    phase: Phase,
    tx: Framer,
    rx: Framer,
    statements: HashMap<Vec<u8>, &'static str>,
    portals: HashMap<Vec<u8>, &'static str>,
    pending: VecDeque<Pending>,
    /// After an `ErrorResponse` in a batch: skip answers until `Sync`.
    failed_batch: bool,
    /// The reply side lost its frame: wait for a read ending in `ReadyForQuery`.
    rx_lost: bool,
    tx_lost: bool,
    /// Transaction status of the last `ReadyForQuery` (`I`, `T`, `E`).
    status: u8,
    /// The current batch parsed a statement and has not executed one.
    prepared: Option<(&'static str, u64)>,
}

impl PgConn {
    /// A connection seen from its start.
    pub fn new() -> Self {
        Self::with_phase(Phase::Startup)
    }

    /// A connection picked up while in use.
    pub fn mid_stream() -> Self {
        Self::with_phase(Phase::Typed)
    }

    fn with_phase(phase: Phase) -> Self {
        Self {
            phase,
            tx: Framer::default(),
            rx: Framer::default(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            failed_batch: false,
            rx_lost: false,
            tx_lost: false,
            status: b'I',
            prepared: None,
        }
    }

    /// Whether `bytes`, the first a client wrote, start a PostgreSQL
    /// connection (`Some(false)`), or typed messages of one already in use
    /// (`Some(true)`).
    pub fn recognise(bytes: &[u8]) -> Option<bool> {
        if let [a, b, c, d, e, f, g, h, ..] = *bytes {
            let length = u32::from_be_bytes([a, b, c, d]);
            let code = u32::from_be_bytes([e, f, g, h]);
            let startup = matches!(code, SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST)
                && matches!(length, 8 | 16)
                || code == PROTOCOL_3 && (8..10_000).contains(&length);
            if startup {
                return Some(false);
            }
        }
        // Typed messages: a frontend type, then a plausible length, and
        // either the buffer ends with the message or another one follows.
        let [kind, a, b, c, d, ..] = *bytes else {
            return None;
        };
        let length = u32::from_be_bytes([a, b, c, d]) as usize;
        let frontend = matches!(
            kind,
            b'Q' | b'P' | b'B' | b'E' | b'S' | b'D' | b'H' | b'C' | b'X'
        );
        let fits = (4..(1 << 24)).contains(&length);
        let next = bytes.get(length + 1);
        (frontend && fits && next.is_none_or(|&k| known_kind(k))).then_some(true)
    }

    pub fn buffered(&self) -> usize {
        self.tx.buffered()
            + self.rx.buffered()
            + (self.statements.len() + self.portals.len()) * (MAX_NAME + 48)
            + self.pending.capacity() * size_of::<Pending>()
            + self
                .pending
                .iter()
                .map(|p| match p {
                    Pending::Simple { types, .. } => types.capacity() * size_of::<&str>(),
                    _ => 0,
                })
                .sum::<usize>()
    }

    pub fn is_parsing(&self) -> bool {
        matches!(
            self.phase,
            Phase::Startup | Phase::Negotiating | Phase::Typed
        )
    }

    /// The server accepted TLS: the rest is ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.phase == Phase::Encrypted
    }

    /// A statement in flight, or an open transaction.
    pub fn is_busy(&self) -> bool {
        self.phase == Phase::Typed
            && (self
                .pending
                .iter()
                .any(|p| !matches!(p, Pending::Sync { .. }))
                || self.status != b'I')
    }

    /// Bytes the service wrote.
    pub fn on_tx(&mut self, ts: u64, bytes: &[u8], len: u64) {
        match self.phase {
            Phase::Startup => {
                self.startup(bytes);
                return;
            }
            Phase::Typed => {}
            _ => return,
        }
        if self.tx_lost {
            // Resume where a write starts with a message.
            if Self::recognise(bytes) != Some(true) {
                return;
            }
            self.tx.reset();
            self.tx_lost = false;
        }
        // The framer is taken out while it calls back into `self` (no copy
        // of the messages).
        let mut tx = std::mem::take(&mut self.tx);
        let result = tx.feed(bytes, len, &mut |m: Frame<'_>| {
            self.frontend(m.tag, m.body, ts);
        });
        self.tx = tx;
        if result.is_err() {
            self.tx_lost = true;
        }
    }

    fn startup(&mut self, bytes: &[u8]) {
        let code = bytes
            .get(4..8)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        self.phase = match code {
            Some(SSL_REQUEST | GSSENC_REQUEST) => Phase::Negotiating,
            Some(CANCEL_REQUEST) => Phase::Done,
            Some(PROTOCOL_3) => Phase::Typed,
            _ => Phase::Done,
        };
    }

    fn remember(map: &mut HashMap<Vec<u8>, &'static str>, name: &[u8], query_type: &'static str) {
        let name = &name[..name.len().min(MAX_NAME)];
        if map.len() >= MAX_NAMES && !map.contains_key(name) {
            map.clear(); // forgotten names read as `unknown`
        }
        map.insert(name.to_vec(), query_type);
    }

    fn push(&mut self, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(pending);
    }

    fn frontend(&mut self, kind: u8, body: &[u8], ts: u64) {
        match kind {
            b'Q' => {
                // The text's NUL was kept when all of it was.
                let (text, _) = cstr(body);
                let mut types = sql::statement_types(text, text.len() < body.len());
                types.reverse();
                self.push(Pending::Simple {
                    types,
                    start_ns: ts,
                });
            }
            b'P' => {
                let (name, rest) = cstr(body);
                let (query, _) = cstr(rest);
                let query_type = sql::query_type(query);
                Self::remember(&mut self.statements, name, query_type);
                self.prepared.get_or_insert((query_type, ts));
            }
            b'B' => {
                let (portal, rest) = cstr(body);
                let (statement, _) = cstr(rest);
                let statement = &statement[..statement.len().min(MAX_NAME)];
                let query_type = self.statements.get(statement).copied().unwrap_or(UNKNOWN);
                Self::remember(&mut self.portals, portal, query_type);
            }
            b'E' => {
                let (portal, _) = cstr(body);
                let portal = &portal[..portal.len().min(MAX_NAME)];
                let query_type = self.portals.get(portal).copied().unwrap_or(UNKNOWN);
                self.prepared = None;
                self.push(Pending::Execute {
                    query_type,
                    start_ns: ts,
                });
            }
            b'S' => {
                let prepared = self.prepared.take();
                self.push(Pending::Sync { prepared });
            }
            _ => {}
        }
    }

    /// The connection closed: statements never answered failed.
    pub fn on_close(&mut self, ts: u64, out: &mut impl FnMut(Statement)) {
        for pending in self.pending.drain(..) {
            let (query_type, start_ns) = match pending {
                Pending::Execute {
                    query_type,
                    start_ns,
                } => (query_type, start_ns),
                Pending::Simple { types, start_ns } => (next_type(&types, None), start_ns),
                Pending::Sync { .. } => continue,
            };
            out(Statement {
                query_type,
                start_ns,
                end_ns: ts.max(start_ns),
                error: true,
            });
        }
    }

    /// Bytes the service read. `tail`: the last bytes of a read whose
    /// start was already given (long reads).
    pub fn on_rx(
        &mut self,
        ts: u64,
        bytes: &[u8],
        len: u64,
        tail: bool,
        out: &mut impl FnMut(Statement),
    ) {
        match self.phase {
            Phase::Negotiating if !tail => {
                self.phase = match bytes.first() {
                    Some(b'N') => Phase::Startup,
                    _ => Phase::Encrypted,
                };
                return;
            }
            Phase::Typed => {}
            _ => return,
        }
        if tail {
            if self.rx_lost && ends_ready(bytes) {
                self.resync(ts, bytes[bytes.len() - 1], out);
            }
            return;
        }
        if self.rx_lost {
            return;
        }
        let mut rx = std::mem::take(&mut self.rx);
        let result = rx.feed(bytes, len, &mut |m: Frame<'_>| {
            self.backend(m.tag, m.body.first().copied(), m.body, ts, out);
        });
        self.rx = rx;
        if result.is_err() {
            self.rx.reset();
            self.rx_lost = true;
            if ends_ready(bytes) && bytes.len() as u64 == len {
                self.resync(ts, bytes[bytes.len() - 1], out);
            }
        }
    }

    /// A read ended with `ReadyForQuery` after bytes we could not follow:
    /// what waited up to the first `Sync` (or simple query) is done.
    fn resync(&mut self, ts: u64, status: u8, out: &mut impl FnMut(Statement)) {
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                Pending::Execute {
                    query_type,
                    start_ns,
                } => {
                    if !self.failed_batch {
                        out(Statement {
                            query_type,
                            start_ns,
                            end_ns: ts,
                            error: false,
                        });
                    }
                }
                Pending::Simple { types, start_ns } => {
                    out(Statement {
                        query_type: next_type(&types, None),
                        start_ns,
                        end_ns: ts,
                        error: false,
                    });
                    break;
                }
                Pending::Sync { .. } => break,
            }
        }
        self.failed_batch = false;
        self.status = status;
        self.rx_lost = false;
    }

    fn backend(
        &mut self,
        kind: u8,
        first: Option<u8>,
        body: &[u8],
        ts: u64,
        out: &mut impl FnMut(Statement),
    ) {
        match kind {
            // CommandComplete, PortalSuspended.
            b'C' | b's' => match self.pending.front_mut() {
                Some(&mut Pending::Execute {
                    query_type,
                    start_ns,
                }) => {
                    self.pending.pop_front();
                    out(Statement {
                        query_type,
                        start_ns,
                        end_ns: ts,
                        error: false,
                    });
                }
                // One statement of a simple query.
                Some(Pending::Simple { types, start_ns }) if kind == b'C' => {
                    let query_type = next_type(types, Some(cstr(body).0));
                    types.pop();
                    out(Statement {
                        query_type,
                        start_ns: *start_ns,
                        end_ns: ts,
                        error: false,
                    });
                }
                _ => {}
            },
            // EmptyQueryResponse: an empty statement, not counted.
            b'I' => {
                if matches!(self.pending.front(), Some(Pending::Execute { .. })) {
                    self.pending.pop_front();
                }
            }
            b'E' => match self.pending.front().cloned() {
                Some(Pending::Execute {
                    query_type,
                    start_ns,
                }) => {
                    self.pending.pop_front();
                    out(Statement {
                        query_type,
                        start_ns,
                        end_ns: ts,
                        error: true,
                    });
                    // The server skips the rest of the batch until Sync.
                    while matches!(self.pending.front(), Some(Pending::Execute { .. })) {
                        self.pending.pop_front();
                    }
                }
                Some(Pending::Simple { types, start_ns }) => {
                    // The failing statement of the query; ReadyForQuery
                    // ends the query.
                    out(Statement {
                        query_type: next_type(&types, None),
                        start_ns,
                        end_ns: ts,
                        error: true,
                    });
                    self.pending.pop_front();
                    self.pending.push_front(Pending::Sync { prepared: None });
                }
                Some(Pending::Sync {
                    prepared: Some((query_type, start_ns)),
                }) => {
                    // A statement that failed to prepare.
                    out(Statement {
                        query_type,
                        start_ns,
                        end_ns: ts,
                        error: true,
                    });
                    self.pending.pop_front();
                    self.pending.push_front(Pending::Sync { prepared: None });
                }
                None => {
                    // A prepare flushed without Sync (asyncpg) that failed.
                    if let Some((query_type, start_ns)) = self.prepared.take() {
                        out(Statement {
                            query_type,
                            start_ns,
                            end_ns: ts,
                            error: true,
                        });
                    }
                }
                _ => {}
            },
            b'Z' => {
                self.status = first.unwrap_or(b'I');
                // Ends the oldest simple query or batch.
                while let Some(pending) = self.pending.pop_front() {
                    if matches!(pending, Pending::Sync { .. } | Pending::Simple { .. }) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
}

sql::database_protocol!(PgConn, DbSystem::Postgres);

/// Its first bytes written: a startup, or typed messages mid-stream.
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    let mid_stream = PgConn::recognise(bytes).filter(|_| dir == Direction::Sent)?;
    Some(Box::new(if mid_stream {
        PgConn::mid_stream()
    } else {
        PgConn::new()
    }))
}

pub const CLIENT: ClientProtocol = ClientProtocol {
    detect,
    well_known: Some(WellKnown {
        port: 5432,
        pool: Pool::Db(DbSystem::Postgres),
        mid_stream: || Box::new(PgConn::mid_stream()),
    }),
};

impl Default for PgConn {
    fn default() -> Self {
        Self::new()
    }
}

/// The type of a simple query's next statement: its leading keyword where
/// the kept text showed it, else the keyword of its command `tag` (when
/// completed), else `other`.
fn next_type(types: &[&'static str], tag: Option<&[u8]>) -> &'static str {
    match (types.last(), tag) {
        (Some(&known), _) => known,
        (None, Some(tag)) => sql::query_type(tag),
        (None, None) => sql::OTHER,
    }
}

/// Whether a read ends with a complete `ReadyForQuery` (`Z`, length 5,
/// status `I`, `T` or `E`).
fn ends_ready(bytes: &[u8]) -> bool {
    bytes.len() >= 6
        && bytes[bytes.len() - 6..bytes.len() - 1] == [b'Z', 0, 0, 0, 5]
        && matches!(bytes[bytes.len() - 1], b'I' | b'T' | b'E')
}

#[cfg(test)]
mod tests;
