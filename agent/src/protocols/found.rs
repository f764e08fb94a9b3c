//! What the protocol parsers report of a connection, for the agent to
//! publish (and, for a call whose reply is wanted whole, to act on).
use crate::{
    protocols::http1::exchange::{Exchange, Outcome},
    protocols::redis,
    protocols::sql::{DbSystem, Statement},
};

/// What the parsers found on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// On a connection the service accepted.
    Http(Outcome),
    /// On a connection the service opened to Redis.
    Redis(redis::Op),
    /// On a connection the service opened to a database.
    Db {
        system: DbSystem,
        statement: Statement,
    },
    /// An HTTP call the service made (a request it wrote, the response it
    /// read).
    HttpCall(Exchange),
    /// The service sent a call whose reply is wanted whole (up to this
    /// many bytes): the probes should copy the connection's reads in full.
    WantsReply(usize),
}
