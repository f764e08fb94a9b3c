//! HTTP/1.x from the bytes a service reads and writes: heads, bodies by
//! length or chunks, request/response pairing and timing, authentication
//! schemes. Everything here is pure and host-tested.
//!
//! A connection has two ends: the service serves it ([`Server`]: it reads
//! requests, writes responses) or calls over it ([`Client`]: it writes
//! requests, reads responses). One parser ([`exchange::HttpConn`]) follows
//! both; the timings mirror too: a call lasts from the write that carried
//! its first byte to the read that brought the response's last byte.
pub mod auth;
pub mod chunked;
pub mod exchange;
pub mod head;

use self::{
    exchange::{HttpConn, Outcome},
    head::{could_start_request, looks_like_request},
};
use super::{ClientProtocol, Command, Context, Direction, Observation, Protocol, Sink, Transfer};

/// A connection the service accepted.
pub struct Server(HttpConn);

impl Server {
    /// `mid_stream`: open before loupe attached.
    pub fn new(mid_stream: bool) -> Self {
        Self(HttpConn::new(mid_stream))
    }
}

impl Protocol for Server {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        let mut served = |outcome| sink.observe(Observation::Served(outcome));
        match dir {
            Direction::Received => self.0.on_request_bytes(bytes, &context.served, &mut served),
            Direction::Sent => self.0.on_response_bytes(bytes, &mut served),
        }
    }

    fn on_close(&mut self, _ts: u64, sink: &mut dyn Sink) {
        self.0
            .on_close(&mut |outcome| sink.observe(Observation::Served(outcome)));
    }

    fn expire(&mut self, idle_since: u64, sink: &mut dyn Sink) {
        self.0.expire(idle_since, &mut |outcome| {
            sink.observe(Observation::Served(outcome));
        });
    }

    fn is_parsing(&self) -> bool {
        self.0.is_parsing()
    }

    fn buffered(&self) -> usize {
        self.0.buffered()
    }

    fn switched(&mut self) -> Option<exchange::H2cUpgrade> {
        self.0.take_h2c()
    }
}

/// A connection the service opened to call an HTTP server.
pub struct Client(HttpConn);

/// The calls among a client parser's outcomes (a connection that is not
/// HTTP after all is simply no longer followed).
fn calls(sink: &mut dyn Sink) -> impl FnMut(Outcome) + '_ {
    |outcome| {
        if let Outcome::Exchange(exchange) = outcome {
            sink.observe(Observation::Call(exchange));
        }
    }
}

/// A request, or its first letters (a head written in pieces).
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    let request = looks_like_request(bytes) || could_start_request(bytes);
    (dir == Direction::Sent && request)
        .then(|| Box::new(Client(HttpConn::new(false))) as Box<dyn Protocol>)
}

pub const CLIENT: ClientProtocol = ClientProtocol {
    detect,
    well_known: None,
};

impl Protocol for Client {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        let conn = &mut self.0;
        match dir {
            Direction::Sent => {
                let waiting = conn.pending();
                conn.on_request_bytes(bytes, &context.calls, &mut calls(sink));
                let wanted = conn.newest_wants_response();
                if conn.pending() > waiting && wanted > 0 {
                    sink.command(Command::CaptureReply(wanted));
                }
            }
            Direction::Received => conn.on_response_bytes(bytes, &mut calls(sink)),
        }
    }

    fn on_close(&mut self, _ts: u64, sink: &mut dyn Sink) {
        self.0.on_close(&mut calls(sink));
    }

    fn expire(&mut self, idle_since: u64, sink: &mut dyn Sink) {
        self.0.expire(idle_since, &mut calls(sink));
    }

    fn is_parsing(&self) -> bool {
        self.0.is_parsing()
    }

    fn buffered(&self) -> usize {
        self.0.buffered()
    }
}
