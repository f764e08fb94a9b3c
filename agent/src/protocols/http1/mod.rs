//! HTTP/1.x from the bytes a service reads and writes: heads, bodies by
//! length or chunks, request/response pairing and timing, endpoints and
//! authentication schemes. Everything here is pure and host-tested.
pub mod auth;
pub mod chunked;
pub mod exchange;
pub mod head;
