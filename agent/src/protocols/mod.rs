//! The wire protocols loupe reads: pure parsers, host-tested and fuzzed,
//! that turn a connection's bytes into findings.
pub mod detect;
pub mod found;
pub mod framer;
pub mod http1;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
