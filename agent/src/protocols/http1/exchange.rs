//! One server-side HTTP/1.x connection as a state machine over what the
//! probes saw: requests read, responses written, each with its time, its
//! length, and its first (or last) bytes. Pure and total: any input yields
//! outcomes or nothing, never a panic, and the state stays bounded.
//!
//! The probes copy the start of every read and write (gathered across the
//! buffers of a vectored call), and the end of a write longer than that.
//! Each syscall arrives as one [`Transfer`]: its first bytes, a gap, its
//! last bytes. The parser walks the bytes as one stream, so a head is found
//! wherever it starts (pipelined responses, a 103 before the 200, a head
//! written one byte at a time) and a body ends wherever its last byte is
//! written. Bodies are skipped by length, so a large upload or download
//! costs nothing. Where a head falls in a gap (one longer than the
//! capture), the connection falls back to alternation: the next read after
//! a write starts a new request, and a response whose end was not visible
//! ends with the next request, the close, or an idle timer.
use std::{collections::VecDeque, num::NonZeroU64};

use super::{
    auth::{Auth, AuthConfig},
    chunked::{Chunked, ends_body},
    head::{
        Encoding, Framing, Method, Parsed, RequestHead, Version, could_start_request,
        looks_like_request, parse_request, parse_request_start, parse_response, parse_status_line,
    },
    sse::{Event, Splitter},
};
use crate::protocols::Transfer;

/// Longest head (request or response) kept while it arrives in pieces.
pub const MAX_HEAD: usize = 8192;
/// Requests awaiting their responses (pipelining) per connection.
const MAX_PENDING: usize = 64;
/// Reads tolerated before an HTTP start on a connection picked up mid-stream.
const MID_STREAM_ATTEMPTS: u8 = 8;

/// What the policy that reads requests (route rules) decided for one
/// request: the body bytes to keep of it and of its response (0: none),
/// and which of its rules it matched, carried to the [`Exchange`] so that
/// the rule is found once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyWants {
    pub request: usize,
    pub response: usize,
    pub rule: Option<u32>,
    /// An event-stream answer is read as it comes ([`Outcome::Streamed`],
    /// each event within `response` bytes) rather than kept: a stream
    /// that may stay open for hours.
    pub live: bool,
}

impl BodyWants {
    /// Both wants: the larger budget on each side, `self`'s rule.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self {
            request: self.request.max(other.request),
            response: self.response.max(other.response),
            rule: self.rule.or(other.rule),
            live: self.live || other.live,
        }
    }
}

/// What the parser needs from the configuration.
#[derive(Clone, Copy)]
pub struct ParseConfig<'a> {
    pub auth: &'a AuthConfig,
    /// Which bodies to keep, by method and path (route rules decide).
    pub bodies: &'a dyn Fn(&Method, &str) -> BodyWants,
}

/// The first bytes of a body, kept for a route rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyBytes {
    pub bytes: Vec<u8>,
    /// Every byte of the body was captured and kept.
    pub complete: bool,
    /// As written on the wire: chunked framing still in the bytes.
    pub chunked: bool,
    pub encoding: Encoding,
    pub event_stream: bool,
    limit: usize,
}

impl BodyBytes {
    pub(crate) fn new(limit: usize, chunked: bool) -> Self {
        Self {
            bytes: Vec::new(),
            complete: true,
            chunked,
            encoding: Encoding::Identity,
            event_stream: false,
            limit,
        }
    }

    /// A body seen whole (tests, and callers that already hold one).
    pub fn whole(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
            limit: bytes.len(),
            ..Self::new(0, false)
        }
    }

    /// `used` body bytes went by, of which `visible` were captured.
    pub(crate) fn keep(&mut self, visible: &[u8], used: u64) {
        if !self.complete {
            return; // past a gap, bytes would be glued to the wrong place
        }
        let seen = &visible[..visible.len().min(used as usize)];
        let room = self.limit - self.bytes.len();
        self.bytes.extend_from_slice(&seen[..seen.len().min(room)]);
        if (seen.len() as u64) < used || seen.len() > room {
            self.complete = false;
        }
    }
}

/// The path of a request whose path loupe could not read (an HTTP/2
/// connection joined mid-way): its endpoint is `unknown`.
pub const UNKNOWN_PATH: &str = "";

/// A request and its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub method: Method,
    pub version: Version,
    /// Read from OpenSSL's plaintext (set by the connection's owner).
    pub tls: bool,
    pub path: String,
    /// The query, as a key (see [`super::head::query_key`]).
    pub query_key: Option<NonZeroU64>,
    /// `None` when the response head was not captured.
    pub status: Option<u16>,
    pub auth: Auth,
    /// First byte of the request read by the service.
    pub start_ns: u64,
    /// First byte of the response body written (its head if it has none).
    pub first_byte_ns: u64,
    /// Last byte of the response written.
    pub end_ns: u64,
    /// The allowlisted request headers' values.
    pub headers: Vec<(String, String)>,
    /// Kept only when a route rule asked for them.
    pub request_body: Option<BodyBytes>,
    pub response_body: Option<BodyBytes>,
    /// The error type the response's headers name (AWS's
    /// `x-amzn-errortype`).
    pub error_type: Option<Box<str>>,
    /// The route rule the request matched (see [`BodyWants::rule`]).
    pub rule: Option<u32>,
}

/// Why a connection is not parsed as HTTP/1.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unparsed {
    Http2,
    Tls,
    UnknownProtocol,
    MalformedHttp,
}

impl Unparsed {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http2 => "http2",
            Self::Tls => "tls",
            Self::UnknownProtocol => "unknown_protocol",
            Self::MalformedHttp => "malformed_http",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exchange(Exchange),
    /// A request whose connection closed before any response to it was
    /// written (the client gave up, or the server dropped it).
    Abandoned {
        method: Method,
        path: String,
    },
    /// The connection turned out not to be HTTP/1.x; reported once.
    Unparsed(Unparsed),
    /// An answer read as it comes (see [`BodyWants::live`]).
    Streamed(Streamed),
}

/// What a live answer brought (see [`BodyWants::live`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Streamed {
    /// An event, and when the write or read that ended it was.
    Event { ts: u64, event: Event },
    /// The answer ended, with its last byte at `ts` (its exchange
    /// follows).
    End { ts: u64 },
}

/// An event stream read as it comes: its chunked framing (when it has
/// one) and its events.
#[derive(Clone, Debug)]
struct Live {
    chunked: Option<Chunked>,
    events: Splitter,
}

impl Live {
    /// `used` body bytes went by, of which `visible` were captured; each
    /// event they end goes to `out`. Once its chunked framing falls in a
    /// gap, nothing more is read of the stream (its end is still told).
    fn feed(&mut self, visible: &[u8], used: u64, out: &mut impl FnMut(Event)) {
        let seen = &visible[..visible.len().min(used as usize)];
        let unseen = used - seen.len() as u64;
        let events = &mut self.events;
        match &mut self.chunked {
            Some(chunked) => {
                chunked.feed_data(seen, &mut |data| events.feed(data, out));
                if unseen > 0 && !chunked.skip(unseen) {
                    *chunked = Chunked::Broken;
                }
            }
            None => events.feed(seen, out),
        }
        if unseen > 0 {
            events.gap();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Detect {
        attempts: u8,
    },
    Http,
    /// After `101 Switching Protocols`: no longer HTTP.
    Upgraded,
    Unparsed,
}

/// The rest of a message body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    None,
    Left(u64),
    Chunked(Chunked),
    /// Chunked, but the decoder lost its place (a size line in a gap):
    /// the last bytes of the syscalls are watched for the end.
    ChunkedBlind(Recent),
    Close,
    /// Not known: ends with the direction.
    Unknown,
}

impl Body {
    fn of(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::Length(0) => Self::None,
            Framing::Length(n) => Self::Left(n),
            Framing::Chunked => Self::Chunked(Chunked::default()),
            Framing::Close => Self::Close,
        }
    }

    /// Consumes up to `len` transferred bytes of which `visible` were
    /// captured (all or none of them, from the same place); `ends_syscall`:
    /// they reach the end of the syscall. Returns the bytes used.
    fn consume(&mut self, len: u64, visible: &[u8], ends_syscall: bool) -> u64 {
        match self {
            Self::Left(left) => {
                let take = (*left).min(len);
                *left -= take;
                if *left == 0 {
                    *self = Self::None;
                }
                take
            }
            Self::Chunked(decoder) => {
                let used = decoder.feed(visible) as u64;
                if decoder.is_done() {
                    *self = Self::None;
                    return used;
                }
                let unseen = len - (visible.len() as u64).min(len);
                if *decoder == Chunked::Broken || !decoder.skip(unseen) {
                    *self = Self::ChunkedBlind(Recent::default());
                    return self.consume(len, visible, ends_syscall);
                }
                len
            }
            Self::ChunkedBlind(recent) => {
                recent.push(visible, len);
                if ends_syscall && ends_body(recent.bytes()) {
                    *self = Self::None;
                }
                len
            }
            Self::None => 0,
            Self::Close | Self::Unknown => len,
        }
    }

    /// The message has no visible end: the next message in the other
    /// direction ends it.
    fn open_ended(self) -> bool {
        matches!(self, Self::ChunkedBlind(_) | Self::Close | Self::Unknown)
    }
}

/// The last bytes of a direction's stream, as far as they were captured
/// without a gap (where a chunked body that lost its framing may end,
/// even when the end is split across writes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Recent {
    bytes: [u8; RECENT],
    len: u8,
}

/// Bytes kept by [`Recent`]: the longest end [`ends_body`] looks for.
const RECENT: usize = 16;

impl Recent {
    /// `len` transferred bytes, of which `visible` were captured.
    fn push(&mut self, visible: &[u8], len: u64) {
        if (visible.len() as u64) < len {
            *self = Self::default(); // a gap: what came before is not adjacent
        }
        let new = &visible[visible.len().saturating_sub(RECENT)..];
        let keep = (RECENT - new.len()).min(usize::from(self.len));
        let old = usize::from(self.len);
        self.bytes.copy_within(old - keep..old, 0);
        self.bytes[keep..keep + new.len()].copy_from_slice(new);
        self.len = (keep + new.len()) as u8;
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Clone, Debug)]
struct Request {
    method: Method,
    version: Version,
    path: String,
    auth: Auth,
    from_loupe: bool,
    start_ns: u64,
    headers: Vec<(String, String)>,
    body: Option<BodyBytes>,
    /// Response body bytes to keep.
    wants_response: usize,
    /// An event-stream answer is read live.
    live: bool,
    query_key: Option<NonZeroU64>,
    /// The route rule the request matched.
    rule: Option<u32>,
    /// `Upgrade: h2c`.
    h2c: bool,
}

impl Request {
    /// Its exchange, with the answer's status and times (its body and
    /// error type are the caller's to add).
    fn exchange(self, status: Option<u16>, first_byte_ns: u64, end_ns: u64) -> Exchange {
        Exchange {
            method: self.method,
            version: self.version,
            tls: false,
            path: self.path,
            query_key: self.query_key,
            status,
            auth: self.auth,
            start_ns: self.start_ns,
            first_byte_ns,
            end_ns,
            headers: self.headers,
            request_body: self.body,
            response_body: None,
            error_type: None,
            rule: self.rule,
        }
    }
}

/// A request answered `101 Switching Protocols` to HTTP/2 (`Upgrade:
/// h2c`): its answer comes as stream 1 of the HTTP/2 that follows, from
/// offset `at` of the syscall that wrote the `101`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H2cUpgrade {
    pub method: Method,
    pub path: String,
    pub auth: Auth,
    pub headers: Vec<(String, String)>,
    pub rule: Option<u32>,
    pub start_ns: u64,
    pub at: u64,
}

#[derive(Clone, Debug)]
struct Response {
    status: Option<u16>,
    /// When its head was written.
    first_ns: u64,
    /// When its first body byte was written (a head sent ahead of a
    /// streamed body does not count as the first byte).
    body_ns: Option<u64>,
    last_ns: u64,
    body: Body,
    kept: Option<BodyBytes>,
    /// Read as it comes instead of kept.
    live: Option<Box<Live>>,
    error_type: Option<Box<str>>,
}

#[derive(Clone, Debug)]
pub struct HttpConn {
    mode: Mode,
    /// Partial request head, and when its first byte was read.
    head: Vec<u8>,
    head_ns: u64,
    rx_body: Body,
    pending: VecDeque<Request>,
    response: Option<Response>,
    /// Partial response head, and when its first byte was written.
    tx_head: Vec<u8>,
    tx_head_ns: u64,
    /// A switch to HTTP/2 not yet taken over (see [`HttpConn::take_h2c`]).
    h2c: Option<H2cUpgrade>,
    /// The service opened the connection: its requests are calls, and one
    /// the close left unanswered is an exchange without a status.
    calling: bool,
}

impl HttpConn {
    /// A connection seen from its start, or (`mid_stream`) picked up while
    /// it was in use.
    pub fn new(mid_stream: bool) -> Self {
        let attempts = if mid_stream { MID_STREAM_ATTEMPTS } else { 1 };
        Self {
            mode: Mode::Detect { attempts },
            head: Vec::new(),
            head_ns: 0,
            rx_body: Body::None,
            pending: VecDeque::new(),
            response: None,
            tx_head: Vec::new(),
            tx_head_ns: 0,
            h2c: None,
            calling: false,
        }
    }

    /// A connection the service opened to call a server.
    pub fn calling() -> Self {
        Self {
            calling: true,
            ..Self::new(false)
        }
    }

    /// Bytes held in partial heads (for the agent's memory budget).
    pub fn buffered(&self) -> usize {
        let kept = |body: Option<&BodyBytes>| body.map_or(0, |b| b.bytes.capacity());
        self.head.capacity()
            + self.tx_head.capacity()
            + self
                .pending
                .iter()
                .map(|r| kept(r.body.as_ref()))
                .sum::<usize>()
            + kept(self.response.as_ref().and_then(|r| r.kept.as_ref()))
            + self
                .response
                .as_ref()
                .and_then(|r| r.live.as_ref())
                .map_or(0, |live| live.events.buffered())
    }

    /// Requests waiting for their response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Response bytes the newest waiting request wants copied (0: none;
    /// all of them for an answer read live).
    pub fn newest_wants_response(&self) -> usize {
        self.pending
            .back()
            .map_or(0, |r| if r.live { usize::MAX } else { r.wants_response })
    }

    /// Whether the connection still needs data to be watched.
    pub fn is_parsing(&self) -> bool {
        matches!(self.mode, Mode::Detect { .. } | Mode::Http)
    }

    fn give_up(&mut self, why: Unparsed, out: &mut impl FnMut(Outcome)) {
        // The agent's own request (its OpenAPI fetch) answered with what is
        // not HTTP/1 (an HTTP/2-only server): not the service's traffic.
        let own = self.pending.front().is_some_and(|r| r.from_loupe);
        self.mode = Mode::Unparsed;
        self.head = Vec::new();
        self.tx_head = Vec::new();
        self.pending.clear();
        self.response = None;
        if !own {
            out(Outcome::Unparsed(why));
        }
    }

    fn detect(&mut self, bytes: &[u8], out: &mut impl FnMut(Outcome)) -> bool {
        let Mode::Detect { attempts } = self.mode else {
            return self.mode == Mode::Http;
        };
        if bytes.is_empty() {
            return false;
        }
        let why = if bytes.starts_with(b"PRI * HTTP/2.0") {
            Unparsed::Http2
        } else if looks_like_request(bytes) || could_start_request(bytes) {
            // A request, or too little of one to tell (a slow client):
            // parsing the head decides.
            self.mode = Mode::Http;
            return true;
        } else if bytes.len() >= 3 && bytes[0] == 0x16 && bytes[1] == 0x03 {
            Unparsed::Tls
        } else {
            Unparsed::UnknownProtocol
        };
        if attempts > 1 && why == Unparsed::UnknownProtocol {
            self.mode = Mode::Detect {
                attempts: attempts - 1,
            };
            return false;
        }
        self.give_up(why, out);
        false
    }

    fn push_request(&mut self, head: RequestHead, start_ns: u64, config: &ParseConfig<'_>) {
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        let wants = if head.from_loupe {
            BodyWants::default()
        } else {
            (config.bodies)(&head.method, &head.path)
        };
        // One kept request body per connection (pipelined ones go without).
        let keeping = self
            .pending
            .iter()
            .any(|r| r.body.as_ref().is_some_and(|b| !b.bytes.is_empty()));
        let body = match head.framing {
            _ if wants.request == 0 => None,
            // No body: kept as an empty one, which a rule reads as such.
            Framing::None | Framing::Close | Framing::Length(0) => {
                Some(BodyBytes::new(wants.request, false))
            }
            Framing::Length(_) | Framing::Chunked if keeping => None,
            Framing::Length(_) => Some(BodyBytes::new(wants.request, false)),
            Framing::Chunked => Some(BodyBytes::new(wants.request, true)),
        };
        self.pending.push_back(Request {
            method: head.method,
            version: head.version,
            path: head.path,
            auth: head.auth,
            from_loupe: head.from_loupe,
            start_ns,
            headers: head.headers,
            body,
            wants_response: wants.response,
            live: wants.live,
            query_key: head.query_key,
            rule: wants.rule,
            h2c: head.h2c,
        });
    }

    /// Bytes from the client (read by a server, written by a client).
    pub fn on_request_bytes(
        &mut self,
        rx: &Transfer<'_>,
        config: &ParseConfig<'_>,
        out: &mut impl FnMut(Outcome),
    ) {
        if !self.detect(rx.head, out) && self.mode != Mode::Http {
            return;
        }
        if self.response.as_ref().is_some_and(|r| r.body.open_ended()) {
            self.finish_response(out);
        }
        if self.rx_body == Body::Unknown {
            // The previous request's body ran until this new read.
            self.rx_body = Body::None;
        }
        let mut pos = 0u64;
        while pos < rx.len && self.mode == Mode::Http {
            let (visible, run_end) = rx.at(pos);
            if self.rx_body != Body::None {
                let used = self
                    .rx_body
                    .consume(run_end - pos, visible, run_end == rx.len);
                if let Some(kept) = self.pending.back_mut().and_then(|r| r.body.as_mut()) {
                    kept.keep(visible, used);
                }
                pos += used;
                continue;
            }
            if visible.is_empty() {
                // A head that was not captured: resynchronise at the next
                // read after a write.
                self.rx_body = Body::Unknown;
                continue;
            }
            pos += self.read_request_head(rx.ts, visible, run_end == rx.len, config, out);
        }
    }

    /// Reads a request head from `visible`, the bytes of a run that reaches
    /// the end of the syscall when `to_end`; returns the bytes used.
    fn read_request_head(
        &mut self,
        ts: u64,
        visible: &[u8],
        to_end: bool,
        config: &ParseConfig<'_>,
        out: &mut impl FnMut(Outcome),
    ) -> u64 {
        let run = visible.len() as u64;
        if self.head.is_empty() {
            self.head_ns = ts;
        }
        let before = self.head.len();
        let room = MAX_HEAD - before;
        let visible = &visible[..visible.len().min(room)];
        match parse_held(&mut self.head, visible, |h| parse_request(h, config.auth)) {
            Parsed::Complete(head, len) => {
                self.rx_body = Body::of(head.framing);
                self.head.clear();
                self.push_request(head, self.head_ns, config);
                (len - before) as u64
            }
            Parsed::Partial if to_end && self.head.len() < MAX_HEAD => run,
            Parsed::Partial => {
                // Cut short: keep what its first lines say.
                let line = parse_request_start(&self.head, config.auth);
                self.head = Vec::new();
                match line {
                    Some(head) => {
                        self.push_request(head, self.head_ns, config);
                        self.rx_body = Body::Unknown;
                    }
                    None => self.give_up(Unparsed::MalformedHttp, out),
                }
                run
            }
            Parsed::Invalid => {
                let why = if self.head.starts_with(b"PRI * HTTP/2") {
                    Unparsed::Http2
                } else {
                    Unparsed::MalformedHttp
                };
                self.give_up(why, out);
                run
            }
        }
    }

    /// Bytes from the server (written by a server, read by a client).
    pub fn on_response_bytes(&mut self, tx: &Transfer<'_>, out: &mut impl FnMut(Outcome)) {
        let mut pos = 0u64;
        while pos < tx.len && self.mode == Mode::Http {
            let (visible, run_end) = tx.at(pos);
            let to_end = run_end == tx.len;
            let Some(response) = &mut self.response else {
                if self.pending.is_empty() {
                    return; // written without a request (or its request was lost)
                }
                pos += self.start_response(tx.ts, visible, run_end - pos, to_end, out);
                continue;
            };
            response.last_ns = tx.ts;
            if response.body != Body::None {
                response.body_ns.get_or_insert(tx.ts);
            }
            let used = response.body.consume(run_end - pos, visible, to_end);
            if let Some(kept) = &mut response.kept {
                kept.keep(visible, used);
            }
            if let Some(live) = &mut response.live {
                let ts = tx.ts;
                let mut event = |event| out(Outcome::Streamed(Streamed::Event { ts, event }));
                live.feed(visible, used, &mut event);
            }
            pos += used;
            if response.body == Body::None {
                self.finish_response(out);
            }
        }
        if let Some(upgrade) = &mut self.h2c {
            upgrade.at = pos;
        }
    }

    /// The request of a switch to HTTP/2 just answered, and where in the
    /// syscall the HTTP/2 begins.
    pub fn take_h2c(&mut self) -> Option<H2cUpgrade> {
        self.h2c.take()
    }

    /// Reads a response head from `visible`, the captured bytes of a run of
    /// `run` bytes (none: a gap) that reaches the end of the syscall when
    /// `to_end`; returns the bytes used.
    fn start_response(
        &mut self,
        ts: u64,
        visible: &[u8],
        run: u64,
        to_end: bool,
        out: &mut impl FnMut(Outcome),
    ) -> u64 {
        if visible.is_empty() {
            // A response whose head was not captured (or only its start).
            let started = !self.tx_head.is_empty();
            self.response = Some(Response {
                status: parse_status_line(&self.tx_head),
                first_ns: if started { self.tx_head_ns } else { ts },
                body_ns: None,
                last_ns: ts,
                body: Body::Unknown,
                kept: None,
                live: None,
                error_type: None,
            });
            self.tx_head = Vec::new();
            return run;
        }
        if self.tx_head.is_empty() {
            self.tx_head_ns = ts;
        }
        let before = self.tx_head.len();
        let room = MAX_HEAD - before;
        let visible = &visible[..visible.len().min(room)];
        let is_head = self
            .pending
            .front()
            .is_some_and(|r| r.method == Method::Head);
        let (wants, live) = self
            .pending
            .front()
            .map_or((0, false), |r| (r.wants_response, r.live));
        let mut kept = None;
        let mut streamed = None;
        let mut error_type = None;
        let (status, body, used) = match parse_held(&mut self.tx_head, visible, parse_response) {
            Parsed::Complete(head, len) => {
                let no_body = is_head
                    || (100..200).contains(&head.status)
                    || head.status == 204
                    || head.status == 304;
                let body = if no_body {
                    Body::None
                } else {
                    Body::of(head.framing)
                };
                if live && head.event_stream && head.encoding == Encoding::Identity && wants > 0 {
                    streamed = Some(Box::new(Live {
                        chunked: (head.framing == Framing::Chunked).then(Chunked::default),
                        events: Splitter::new(wants),
                    }));
                } else if wants > 0 {
                    // Without a body (204, HEAD), an empty one.
                    let chunked = body != Body::None && head.framing == Framing::Chunked;
                    let mut bytes = BodyBytes::new(wants, chunked);
                    if body != Body::None {
                        bytes.encoding = head.encoding;
                    }
                    bytes.event_stream = head.event_stream;
                    kept = Some(bytes);
                }
                error_type = head.error_type.map(String::into_boxed_str);
                (Some(head.status), body, (len - before) as u64)
            }
            Parsed::Partial if to_end && self.tx_head.len() < MAX_HEAD => return run,
            Parsed::Partial => (parse_status_line(&self.tx_head), Body::Unknown, run),
            Parsed::Invalid => {
                self.give_up(Unparsed::MalformedHttp, out);
                return run;
            }
        };
        self.tx_head = Vec::new();
        self.response = Some(Response {
            status,
            first_ns: self.tx_head_ns,
            body_ns: None,
            last_ns: ts,
            body,
            kept,
            live: streamed,
            error_type,
        });
        if body == Body::None {
            self.finish_response(out);
        }
        used
    }

    fn finish_response(&mut self, out: &mut impl FnMut(Outcome)) {
        let Some(response) = self.response.take() else {
            return;
        };
        if response.live.is_some() {
            out(Outcome::Streamed(Streamed::End {
                ts: response.last_ns,
            }));
        }
        if response
            .status
            .is_some_and(|s| (100..200).contains(&s) && s != 101)
        {
            return; // informational: the final response follows
        }
        let Some(request) = self.pending.pop_front() else {
            return;
        };
        if response.status == Some(101) {
            self.mode = Mode::Upgraded;
            self.head = Vec::new();
            self.pending.clear();
            if request.h2c {
                // Answered in HTTP/2: counted there.
                self.h2c = Some(H2cUpgrade {
                    method: request.method,
                    path: request.path,
                    auth: request.auth,
                    headers: request.headers,
                    rule: request.rule,
                    start_ns: request.start_ns,
                    at: 0,
                });
                return;
            }
        }
        if request.from_loupe {
            return;
        }
        let ended = !response.body.open_ended();
        let response_body = response.kept.map(|mut kept| {
            kept.complete &= ended;
            kept
        });
        let first_byte_ns = response.body_ns.unwrap_or(response.first_ns);
        out(Outcome::Exchange(Exchange {
            response_body,
            error_type: response.error_type,
            ..request.exchange(response.status, first_byte_ns, response.last_ns)
        }));
    }

    /// The connection closed at `ts`: a response that ran until the close
    /// is complete; requests never answered are abandoned (calls: ended
    /// without a status, as HTTP/2's are).
    pub fn on_close(&mut self, ts: u64, out: &mut impl FnMut(Outcome)) {
        if self.mode == Mode::Http {
            self.finish_response(out);
            for request in self.pending.drain(..).filter(|r| !r.from_loupe) {
                if self.calling {
                    out(Outcome::Exchange(request.exchange(None, ts, ts)));
                } else {
                    out(Outcome::Abandoned {
                        method: request.method,
                        path: request.path,
                    });
                }
            }
        }
        self.pending.clear();
        self.head = Vec::new();
        self.tx_head = Vec::new();
    }

    /// Ends a response with no visible end that has seen no write since
    /// `idle_since` (monotonic ns).
    pub fn expire(&mut self, idle_since: u64, out: &mut impl FnMut(Outcome)) {
        if let Some(response) = &self.response
            && response.body.open_ended()
            && response.last_ns < idle_since
        {
            self.finish_response(out);
        }
    }
}

/// Parses a head from `held`, the bytes of earlier runs, followed by
/// `visible`. With nothing held (the common case: a head within one run)
/// `visible` is parsed where it is; it is copied only when that head is
/// incomplete or unreadable, for the next run or the error path.
fn parse_held<T>(
    held: &mut Vec<u8>,
    visible: &[u8],
    parse: impl Fn(&[u8]) -> Parsed<T>,
) -> Parsed<T> {
    if held.is_empty()
        && let parsed @ Parsed::Complete(..) = parse(visible)
    {
        return parsed;
    }
    held.extend_from_slice(visible);
    parse(held)
}

#[cfg(test)]
mod tests;
