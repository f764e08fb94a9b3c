//! What the probes deliver, on its way to the parsers: the records decoded
//! in place, the TCP connection picture they keep, and the byte streams of
//! each connection handed to its protocol parser.
pub mod connections;
pub mod own;
pub mod records;
pub mod streams;
