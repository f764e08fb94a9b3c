//! What the parsers' tests and the fuzz targets drive them with: a sink
//! that hands findings to a closure, a parsing context that keeps no body,
//! and (tests only) the database parsers' harness.
use super::{
    Command, Context, Observation, Sink,
    http1::{
        auth::AuthConfig,
        exchange::{BodyWants, ParseConfig},
        head::Method,
    },
};
#[cfg(test)]
use super::{Direction, Protocol, Transfer, sql::Statement};

/// A sink that hands each observation to a closure (commands are not
/// what the fuzz targets check).
pub struct Collect<F>(pub F);

impl<F: FnMut(Observation)> Sink for Collect<F> {
    fn observe(&mut self, observation: Observation) {
        (self.0)(observation);
    }

    fn command(&mut self, _: Command) {}
}

/// Runs `f` with a parsing context that reads no body.
pub fn with_context<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
    with_bodies(&|_, _| BodyWants::default(), f)
}

/// Runs `f` with a parsing context that keeps the bodies `bodies` asks
/// for, served and called alike.
pub fn with_bodies<T>(
    bodies: &dyn Fn(&Method, &str) -> BodyWants,
    f: impl FnOnce(&Context<'_>) -> T,
) -> T {
    let auth = AuthConfig::default();
    let config = ParseConfig {
        auth: &auth,
        bodies,
    };
    f(&Context {
        served: config,
        calls: config,
    })
}

/// Drives a database connection through the interface; collects its
/// statements.
#[cfg(test)]
pub struct Wire<P> {
    pub conn: P,
    pub ts: u64,
    pub out: Vec<Statement>,
}

#[cfg(test)]
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
