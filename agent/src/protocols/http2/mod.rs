//! HTTP/2 from the wire (RFC 9113): frames (`frame`), header compression
//! (`hpack`), gRPC calls (`grpc`), and the connections a service serves
//! (`server`; h2c with prior knowledge; TLS through the OpenSSL uprobes).
//! Calls the service makes over HTTP/2 and the h2c upgrade are not read
//! yet.
pub mod frame;
pub mod grpc;
pub mod hpack;
mod server;

pub use frame::PREFACE;
pub use server::Server;
