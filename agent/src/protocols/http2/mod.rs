//! HTTP/2 from the wire (RFC 9113): frames (`frame`), header compression
//! (`hpack`), gRPC calls (`grpc`), and connections (`conn`), served or
//! opened by the service (h2c with prior knowledge or by upgrade from
//! HTTP/1.1; TLS through the OpenSSL uprobes).
mod conn;
pub mod frame;
pub mod grpc;
pub mod hpack;

pub use conn::Http2;
pub use frame::PREFACE;

use super::{ClientProtocol, Direction, Protocol};

/// Which end of an HTTP/2 connection the service is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It accepted the connection: it answers.
    Served,
    /// It opened the connection: it calls.
    Called,
}

/// A connection the service opened whose first bytes written are the
/// client's preface.
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    (dir == Direction::Sent && bytes.starts_with(PREFACE))
        .then(|| Box::new(Http2::called()) as Box<dyn Protocol>)
}

pub const CLIENT: ClientProtocol = ClientProtocol {
    detect,
    well_known: None,
};
