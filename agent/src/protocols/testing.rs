//! A database connection parser fed like the probes feed it, through the
//! [`Protocol`] interface: the PostgreSQL and MySQL tests' harness.
use super::{Direction, Observation, Protocol, Transfer, sql::Statement};
use crate::fuzzing::{Collect, with_context};

/// Drives a connection; collects its statements.
pub struct Wire<P> {
    pub conn: P,
    pub ts: u64,
    pub out: Vec<Statement>,
}

impl<P: Protocol> Wire<P> {
    pub fn new(conn: P) -> Self {
        Self {
            conn,
            ts: 0,
            out: Vec::new(),
        }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8]) -> &mut Self {
        self.ts += 10;
        let transfer = Transfer::new(self.ts, bytes.len() as u64, bytes);
        let out = &mut self.out;
        let mut sink = Collect(|found| {
            if let Observation::Statement { statement, .. } = found {
                out.push(statement);
            }
        });
        let conn = &mut self.conn;
        with_context(|context| conn.on_bytes(dir, &transfer, context, &mut sink));
        self
    }

    /// Bytes the service wrote.
    pub fn tx(&mut self, bytes: &[u8]) -> &mut Self {
        self.feed(Direction::Sent, bytes)
    }

    /// Bytes the service read.
    pub fn rx(&mut self, bytes: &[u8]) -> &mut Self {
        self.feed(Direction::Received, bytes)
    }

    /// `(type, error)` per statement so far.
    pub fn seen(&self) -> Vec<(&'static str, bool)> {
        self.out.iter().map(|s| (s.query_type, s.error)).collect()
    }
}
