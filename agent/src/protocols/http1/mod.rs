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
pub mod sse;

use self::{
    exchange::{HttpConn, Outcome, Streamed},
    head::{could_start_request, looks_like_request},
};
use super::{
    ClientProtocol, Command, Context, Direction, Observation, Protocol, Sink, Transfer, http2::Role,
};

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
        let mut served = served(sink);
        match dir {
            Direction::Received => self.0.on_request_bytes(bytes, &context.served, &mut served),
            Direction::Sent => self.0.on_response_bytes(bytes, &mut served),
        }
    }

    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink) {
        self.0.on_close(ts, &mut served(sink));
    }

    fn expire(&mut self, idle_since: u64, sink: &mut dyn Sink) {
        self.0.expire(idle_since, &mut served(sink));
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

/// A server parser's outcomes as observations.
fn served(sink: &mut dyn Sink) -> impl FnMut(Outcome) + '_ {
    |outcome| match outcome {
        Outcome::Streamed(streamed) => sink.observe(streamed_on(Role::Served, streamed)),
        outcome => sink.observe(Observation::Served(outcome)),
    }
}

/// The calls among a client parser's outcomes (a connection that is not
/// HTTP after all is simply no longer followed).
fn calls(sink: &mut dyn Sink) -> impl FnMut(Outcome) + '_ {
    |outcome| match outcome {
        Outcome::Exchange(exchange) => sink.observe(Observation::Call(exchange)),
        Outcome::Streamed(streamed) => sink.observe(streamed_on(Role::Called, streamed)),
        Outcome::Abandoned { .. } | Outcome::Unparsed(_) => {}
    }
}

/// A live answer's news, on a connection the sink names.
fn streamed_on(role: Role, streamed: Streamed) -> Observation {
    Observation::Streamed {
        role,
        conn: 0,
        streamed,
    }
}

/// A request, or its first letters (a head written in pieces).
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    let request = looks_like_request(bytes) || could_start_request(bytes);
    (dir == Direction::Sent && request)
        .then(|| Box::new(Client(HttpConn::calling())) as Box<dyn Protocol>)
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

    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink) {
        self.0.on_close(ts, &mut calls(sink));
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
