//! One server-side HTTP/1.x connection as a state machine over what the
//! probes saw: requests read, responses written, each with its time, its
//! length, and its first (or last) bytes. Pure and total: any input yields
//! outcomes or nothing, never a panic, and the state stays bounded.
//!
//! The probes copy the start of every read and of the first write after a
//! read, and the end of later writes. Bodies are skipped by length, so a
//! large upload or download costs nothing. Where bytes were not captured
//! (a head longer than the capture), the connection falls back to
//! alternation: the next read after a write starts a new request, and a
//! response whose end was not visible ended with its last write.
use std::collections::VecDeque;

use super::{
    auth::{Auth, AuthConfig},
    chunked::{Chunked, ends_body},
    head::{
        Framing, Method, Parsed, RequestHead, looks_like_request, parse_request,
        parse_request_line, parse_response, parse_status_line,
    },
};

/// Longest head (request or response) kept while it arrives in pieces.
pub const MAX_HEAD: usize = 8192;
/// Requests awaiting their responses (pipelining) per connection.
const MAX_PENDING: usize = 64;
/// Reads tolerated before an HTTP start on a connection picked up mid-stream.
const MID_STREAM_ATTEMPTS: u8 = 8;

/// What one syscall transferred, as far as it was captured.
#[derive(Clone, Copy, Debug)]
pub struct Transfer<'a> {
    /// Monotonic nanoseconds at the end of the syscall.
    pub ts: u64,
    /// Bytes the syscall transferred.
    pub len: u64,
    /// Captured bytes: the first ones, or the last ones if `tail`.
    pub bytes: &'a [u8],
    pub tail: bool,
    /// An extra record with the last bytes of the previous syscall, whose
    /// length was already counted.
    pub continues: bool,
}

/// How many body bytes a route rule wants kept for one request (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyWants {
    pub request: usize,
    pub response: usize,
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
    pub gzip: bool,
    pub event_stream: bool,
    limit: usize,
}

impl BodyBytes {
    fn new(limit: usize, chunked: bool) -> Self {
        Self {
            bytes: Vec::new(),
            complete: true,
            chunked,
            gzip: false,
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
    fn keep(&mut self, visible: &[u8], used: u64) {
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

/// A request and its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
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
    /// The connection turned out not to be HTTP/1.x; reported once.
    Unparsed(Unparsed),
}

/// Bytes too few to tell whether they start a request: a method's letters
/// so far, perhaps with its space.
fn could_start_request(bytes: &[u8]) -> bool {
    let token = bytes.strip_suffix(b" ").unwrap_or(bytes);
    bytes.len() < 16 && !token.is_empty() && token.iter().all(u8::is_ascii_uppercase)
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
    /// Chunked, but the decoder lost its place: watch the tails for the end.
    ChunkedBlind,
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
    /// captured (starting at the same place); returns the bytes used.
    fn consume(&mut self, len: u64, visible: &[u8]) -> u64 {
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
                    *self = Self::ChunkedBlind;
                }
                len
            }
            Self::None => 0,
            Self::ChunkedBlind | Self::Close | Self::Unknown => len,
        }
    }

    /// The message has no visible end: the next message in the other
    /// direction ends it.
    fn open_ended(self) -> bool {
        matches!(self, Self::ChunkedBlind | Self::Close | Self::Unknown)
    }
}

#[derive(Clone, Debug)]
struct Request {
    method: Method,
    path: String,
    auth: Auth,
    from_loupe: bool,
    start_ns: u64,
    headers: Vec<(String, String)>,
    body: Option<BodyBytes>,
    /// Response body bytes to keep.
    wants_response: usize,
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
    }

    /// Requests waiting for their response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Response bytes the newest waiting request wants kept (0: none).
    pub fn newest_wants_response(&self) -> usize {
        self.pending.back().map_or(0, |r| r.wants_response)
    }

    /// Whether the connection still needs data to be watched.
    pub fn is_parsing(&self) -> bool {
        matches!(self.mode, Mode::Detect { .. } | Mode::Http)
    }

    fn give_up(&mut self, why: Unparsed, out: &mut impl FnMut(Outcome)) {
        self.mode = Mode::Unparsed;
        self.head = Vec::new();
        self.tx_head = Vec::new();
        self.pending.clear();
        self.response = None;
        out(Outcome::Unparsed(why));
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
        let keeping = self.pending.iter().any(|r| r.body.is_some());
        let body = match head.framing {
            Framing::None | Framing::Close | Framing::Length(0) => None,
            Framing::Length(_) | Framing::Chunked if wants.request == 0 || keeping => None,
            Framing::Length(_) => Some(BodyBytes::new(wants.request, false)),
            Framing::Chunked => Some(BodyBytes::new(wants.request, true)),
        };
        self.pending.push_back(Request {
            method: head.method,
            path: head.path,
            auth: head.auth,
            from_loupe: head.from_loupe,
            start_ns,
            headers: head.headers,
            body,
            wants_response: wants.response,
        });
    }

    /// Data the service read.
    pub fn on_rx(
        &mut self,
        rx: &Transfer<'_>,
        config: &ParseConfig<'_>,
        out: &mut impl FnMut(Outcome),
    ) {
        if rx.continues || rx.tail {
            return; // reads are captured from their start
        }
        if !self.detect(rx.bytes, out) && self.mode != Mode::Http {
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
        while pos < rx.len {
            let visible = rx.bytes.get(pos as usize..).unwrap_or_default();
            if self.rx_body != Body::None {
                let used = self.rx_body.consume(rx.len - pos, visible);
                if let Some(kept) = self.pending.back_mut().and_then(|r| r.body.as_mut()) {
                    kept.keep(visible, used);
                }
                pos += used;
                if self.rx_body != Body::None {
                    return;
                }
                continue;
            }
            if visible.is_empty() {
                // Bytes of this read were not captured: resynchronise at
                // the next read after a write.
                self.rx_body = Body::Unknown;
                return;
            }
            let captured_all = pos + visible.len() as u64 == rx.len;
            if self.head.is_empty() {
                self.head_ns = rx.ts;
            }
            let before = self.head.len();
            let room = MAX_HEAD - before;
            self.head
                .extend_from_slice(&visible[..visible.len().min(room)]);
            match parse_request(&self.head, config.auth) {
                Parsed::Complete(head, len) => {
                    pos += (len - before) as u64;
                    self.rx_body = Body::of(head.framing);
                    self.head.clear();
                    self.push_request(head, self.head_ns, config);
                }
                Parsed::Partial if captured_all && self.head.len() < MAX_HEAD => return,
                Parsed::Partial => {
                    // Cut short: keep what its first line says.
                    let line = parse_request_line(&self.head);
                    self.head = Vec::new();
                    match line {
                        Some(head) => {
                            self.push_request(head, self.head_ns, config);
                            self.rx_body = Body::Unknown;
                        }
                        None => self.give_up(Unparsed::MalformedHttp, out),
                    }
                    return;
                }
                Parsed::Invalid => {
                    let why = if self.head.starts_with(b"PRI * HTTP/2") {
                        Unparsed::Http2
                    } else {
                        Unparsed::MalformedHttp
                    };
                    self.give_up(why, out);
                    return;
                }
            }
        }
    }

    /// Data the service wrote.
    pub fn on_tx(&mut self, tx: &Transfer<'_>, out: &mut impl FnMut(Outcome)) {
        if self.mode != Mode::Http {
            return;
        }
        if tx.continues {
            if let Some(response) = &self.response
                && response.body == Body::ChunkedBlind
                && ends_body(tx.bytes)
            {
                self.finish_response(out);
            }
            return;
        }
        let mut pos = 0u64;
        while pos < tx.len {
            let Some(response) = &mut self.response else {
                if self.pending.is_empty() {
                    return; // written without a request (or its request was lost)
                }
                pos += self.start_response(tx, pos, out);
                continue;
            };
            response.last_ns = tx.ts;
            if response.body != Body::None {
                response.body_ns.get_or_insert(tx.ts);
            }
            if tx.tail {
                if let Some(kept) = &mut response.kept {
                    kept.complete = false;
                }
                let ended = match response.body {
                    Body::ChunkedBlind => ends_body(tx.bytes),
                    Body::Chunked(_) => {
                        response.body = Body::ChunkedBlind;
                        ends_body(tx.bytes)
                    }
                    _ => {
                        response.body.consume(tx.len - pos, &[]);
                        response.body == Body::None
                    }
                };
                if ended {
                    self.finish_response(out);
                }
                return;
            }
            let visible = tx.bytes.get(pos as usize..).unwrap_or_default();
            let used = response.body.consume(tx.len - pos, visible);
            if let Some(kept) = &mut response.kept {
                kept.keep(visible, used);
            }
            pos += used;
            if response.body == Body::None {
                self.finish_response(out);
            } else {
                return;
            }
        }
    }

    /// Reads a response head at `pos` of a write; returns the bytes used.
    fn start_response(
        &mut self,
        tx: &Transfer<'_>,
        pos: u64,
        out: &mut impl FnMut(Outcome),
    ) -> u64 {
        let rest = tx.len - pos;
        let visible = if tx.tail {
            &[][..]
        } else {
            tx.bytes.get(pos as usize..).unwrap_or_default()
        };
        if visible.is_empty() {
            // A response whose head was not captured (or only its start).
            let started = !self.tx_head.is_empty();
            self.response = Some(Response {
                status: parse_status_line(&self.tx_head),
                first_ns: if started { self.tx_head_ns } else { tx.ts },
                body_ns: None,
                last_ns: tx.ts,
                body: Body::Unknown,
                kept: None,
            });
            self.tx_head = Vec::new();
            return rest;
        }
        if self.tx_head.is_empty() {
            self.tx_head_ns = tx.ts;
        }
        let before = self.tx_head.len();
        let room = MAX_HEAD - before;
        self.tx_head
            .extend_from_slice(&visible[..visible.len().min(room)]);
        let captured_all = visible.len() as u64 == rest;
        let is_head = self
            .pending
            .front()
            .is_some_and(|r| r.method == Method::Head);
        let wants = self.pending.front().map_or(0, |r| r.wants_response);
        let mut kept = None;
        let (status, body, used) = match parse_response(&self.tx_head) {
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
                if wants > 0 && body != Body::None {
                    let mut bytes = BodyBytes::new(wants, head.framing == Framing::Chunked);
                    bytes.gzip = head.gzip;
                    bytes.event_stream = head.event_stream;
                    kept = Some(bytes);
                }
                (Some(head.status), body, (len - before) as u64)
            }
            Parsed::Partial if captured_all && self.tx_head.len() < MAX_HEAD => return rest,
            Parsed::Partial => (parse_status_line(&self.tx_head), Body::Unknown, rest),
            Parsed::Invalid => {
                self.give_up(Unparsed::MalformedHttp, out);
                return rest;
            }
        };
        self.tx_head = Vec::new();
        self.response = Some(Response {
            status,
            first_ns: self.tx_head_ns,
            body_ns: None,
            last_ns: tx.ts,
            body,
            kept,
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
        }
        if request.from_loupe {
            return;
        }
        let ended = !response.body.open_ended();
        let response_body = response.kept.map(|mut kept| {
            kept.complete &= ended;
            kept
        });
        out(Outcome::Exchange(Exchange {
            method: request.method,
            path: request.path,
            status: response.status,
            auth: request.auth,
            start_ns: request.start_ns,
            first_byte_ns: response.body_ns.unwrap_or(response.first_ns),
            end_ns: response.last_ns,
            headers: request.headers,
            request_body: request.body,
            response_body,
        }));
    }

    /// The connection closed: a response that ran until the close is
    /// complete; requests never answered are dropped.
    pub fn on_close(&mut self, out: &mut impl FnMut(Outcome)) {
        if self.mode == Mode::Http {
            self.finish_response(out);
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

#[cfg(test)]
mod tests;
