//! An HTTP/2 connection, served by the service or opened by it (h2c with
//! prior knowledge, or h2 through the OpenSSL uprobes): the client's
//! frames are requests, the server's are responses, one exchange per
//! stream, from the request's first HEADERS to the response's END_STREAM.
//!
//! Both directions' header blocks are decoded, every one of them, so that
//! the dynamic tables stay the encoders'; a block that does not decode, or
//! a frame that was not captured where its content matters, loses the
//! connection: it is reported once as unparsed (`http2`, for a connection
//! served) and its later streams are not counted, never mislabelled.
use std::{collections::HashMap, num::NonZeroU64};

use super::{
    Role,
    frame::{
        self, ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, Head, Lost, PREFACE,
        PUSH_PROMISE, Part, RST_STREAM, Reader, SETTINGS,
    },
    grpc::{self, Code, Messages, is_grpc},
    hpack::{Decoder, UNREAD},
};
use crate::protocols::{
    Command, Context, Direction, Observation, Protocol, Sink, Transfer,
    http1::{
        exchange::{BodyBytes, Exchange, H2cUpgrade, Outcome, ParseConfig, UNKNOWN_PATH, Unparsed},
        head::{Method, Version, body_encoding, request_head},
    },
};

/// Streams followed at once per connection; beyond, new streams are not
/// counted (a client may open up to its peer's limit, commonly 100 or 250).
const MAX_STREAMS: usize = 1024;
/// Header fields kept per block (names and values, for authentication and
/// the allowlisted headers).
const MAX_FIELDS: usize = 128;
/// The most room a side keeps of its last block's fields for the next.
const MAX_KEPT_FIELDS: usize = 4096;
/// `SETTINGS_HEADER_TABLE_SIZE`.
const HEADER_TABLE_SIZE: u16 = 0x1;

/// One direction: its frames, its header table and the block being read.
#[derive(Debug, Default)]
struct Side {
    frames: Reader,
    hpack: Decoder,
    /// A header block continued in CONTINUATION frames: its frame and the
    /// fragments so far.
    open: Option<Head>,
    /// The side's first frame (SETTINGS, RFC 9113, 3.4) was read.
    started: bool,
    block: Vec<u8>,
    /// The last header block's fields, kept for their buffers' room.
    fields: Fields,
}

/// What the service read of a stream's request.
#[derive(Debug)]
struct Request {
    method: Method,
    path: String,
    query_key: Option<NonZeroU64>,
    auth: crate::protocols::http1::auth::Auth,
    headers: Vec<(String, String)>,
    rule: Option<u32>,
    /// The request body as it comes, if a rule reads it, and how much of
    /// the response's a rule reads.
    body: Option<BodyBytes>,
    wants_response: usize,
    /// The client ended its side of the stream.
    ended: bool,
    start_ns: u64,
}

#[derive(Debug, Default)]
struct Stream {
    request: Option<Request>,
    /// A gRPC call (`application/grpc*`): its messages each way, and its
    /// status once a `grpc-status` was written.
    grpc: Option<Box<GrpcStream>>,
    /// The response's header block was written, and its final status
    /// (unknown when a joined decoder could not read it).
    answered: bool,
    status: Option<u16>,
    /// When the first octet of the response's body (or its header block if
    /// it has none) was written.
    first_ns: Option<u64>,
    /// The response body, if a rule (or a model call) reads it.
    response_body: Option<BodyBytes>,
    /// The error type the response's fields name (`x-amzn-errortype`).
    error_type: Option<Box<str>>,
}

#[derive(Debug, Default)]
struct GrpcStream {
    /// The client's messages, and the server's.
    requests: Messages,
    responses: Messages,
    code: Option<Code>,
}

/// An HTTP/2 connection.
#[derive(Debug)]
pub struct Http2 {
    role: Role,
    /// Octets of the client's preface seen so far.
    preface: usize,
    client: Side,
    server: Side,
    streams: HashMap<u32, Stream>,
    lost: bool,
}

/// A decoded header block: the fields the exchange needs.
#[derive(Debug, Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<Vec<u8>>,
    status: Option<u16>,
    /// The regular fields' names (as UTF-8) and values, one after the
    /// other, and where each name and value ends: two buffers per block,
    /// not two per field.
    bytes: Vec<u8>,
    ends: Vec<(usize, usize)>,
    /// Some field could not be read (a joined connection's older entry).
    unread: bool,
}

impl Fields {
    /// The regular fields, and `:authority` as `host`.
    fn headers(&self) -> Vec<httparse::Header<'_>> {
        let mut headers: Vec<httparse::Header<'_>> = self
            .others()
            .map(|(name, value)| httparse::Header { name, value })
            .collect();
        if let Some(authority) = &self.authority {
            headers.push(httparse::Header {
                name: "host",
                value: authority.as_slice(),
            });
        }
        headers
    }

    /// The regular fields, in order.
    fn others(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            // UTF-8: names are stored converted.
            let name = std::str::from_utf8(&self.bytes[start..name_end]).unwrap_or_default();
            start = value_end;
            (name, &self.bytes[name_end..value_end])
        })
    }

    fn clear(&mut self) {
        let (mut bytes, mut ends) = (
            std::mem::take(&mut self.bytes),
            std::mem::take(&mut self.ends),
        );
        bytes.clear();
        ends.clear();
        *self = Self {
            bytes,
            ends,
            ..Self::default()
        };
    }

    fn add(&mut self, name: &[u8], value: &[u8]) {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        match name {
            UNREAD => self.unread = true,
            b":method" => self.method = Some(text(value)),
            b":path" => self.path = Some(text(value)),
            b":authority" => self.authority = Some(value.to_vec()),
            b":status" => {
                self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ if self.ends.len() < MAX_FIELDS && !name.starts_with(b":") => {
                let name = String::from_utf8_lossy(name);
                self.bytes.extend_from_slice(name.as_bytes());
                let name_end = self.bytes.len();
                self.bytes.extend_from_slice(value);
                self.ends.push((name_end, self.bytes.len()));
            }
            _ => {}
        }
    }
}

impl Http2 {
    /// A connection the service accepted.
    pub fn served() -> Self {
        Self::new(Role::Served)
    }

    /// A connection the service opened (it wrote the preface).
    pub fn called() -> Self {
        Self::new(Role::Called)
    }

    /// A connection the service accepted before loupe attached, whose
    /// bytes are HTTP/2 frames: read from a frame's start, with header
    /// tables that know only what is inserted from now on. Its streams
    /// count by what is certain: a method, path or status that refers to
    /// an older entry is unknown, never guessed.
    pub fn joined() -> Self {
        let mut conn = Self::served();
        conn.preface = PREFACE.len();
        for side in [&mut conn.client, &mut conn.server] {
            side.started = true;
            side.hpack = Decoder::joined();
        }
        conn
    }

    /// A connection the service accepted in HTTP/1.1 and switched to
    /// HTTP/2 (`Upgrade: h2c`, answered `101`): `upgrade`'s request is
    /// stream 1, answered in HTTP/2; the client's preface comes next.
    pub fn upgraded(upgrade: H2cUpgrade) -> Self {
        let mut conn = Self::served();
        let request = Request {
            method: upgrade.method,
            path: upgrade.path,
            query_key: None,
            auth: upgrade.auth,
            headers: upgrade.headers,
            rule: upgrade.rule,
            body: None,
            wants_response: 0,
            ended: true,
            start_ns: upgrade.start_ns,
        };
        conn.streams.entry(1).or_default().request = Some(request);
        conn
    }

    /// Frames from offset `from` of `bytes` on (past the preface, or what
    /// follows the `101` of an upgrade); a connection whose frames are lost
    /// is reported once.
    pub fn continue_from(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        from: u64,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        if self.frames(dir, bytes, from, context, sink).is_err() {
            self.lose(sink);
        }
    }

    fn new(role: Role) -> Self {
        Self {
            role,
            preface: 0,
            client: Side::default(),
            server: Side::default(),
            streams: HashMap::new(),
            lost: false,
        }
    }

    /// Whether `bytes`, the first the client sent on a connection, start
    /// the client's preface (or are all of it so far).
    pub fn recognise(bytes: &[u8]) -> bool {
        let n = bytes.len().min(PREFACE.len());
        n > 0 && bytes[..n] == PREFACE[..n]
    }

    /// The way the client's bytes go, seen from the service.
    fn requests(&self) -> Direction {
        match self.role {
            Role::Served => Direction::Received,
            Role::Called => Direction::Sent,
        }
    }

    fn lose(&mut self, sink: &mut dyn Sink) {
        if !self.lost {
            self.lost = true;
            self.streams.clear();
            if self.role == Role::Served {
                sink.observe(Observation::Served(Outcome::Unparsed(Unparsed::Http2)));
            }
        }
    }

    /// Reads the client's preface from `transfer`; returns where its frames
    /// start, or `Err` when the bytes are not the preface.
    fn preface(&mut self, transfer: &Transfer<'_>) -> Result<u64, Lost> {
        let want = PREFACE.len() - self.preface;
        if want == 0 {
            return Ok(0);
        }
        let (visible, _) = transfer.at(0);
        let n = want.min(visible.len());
        if n == 0 || visible[..n] != PREFACE[self.preface..self.preface + n] {
            return Err(Lost);
        }
        self.preface += n;
        Ok(n as u64)
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        if dir == self.requests() {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// The frames of `transfer` from its offset `from` on.
    fn frames(
        &mut self,
        dir: Direction,
        transfer: &Transfer<'_>,
        from: u64,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Lost> {
        let ts = transfer.ts;
        // Out of `self` while it hands out frames (no copy of a payload).
        let mut reader = std::mem::take(&mut self.side(dir).frames);
        let mut outcome = Ok(());
        let read = reader.feed(transfer, from, &mut |part| match part {
            _ if outcome.is_err() => {}
            Part::Frame(head, payload) => {
                outcome = self.frame(dir, head, payload, ts, context, sink);
            }
            Part::Data(head, run, visible) => self.data(dir, head.stream, run, visible),
        });
        self.side(dir).frames = reader;
        read.and(outcome)
    }

    fn frame(
        &mut self,
        dir: Direction,
        head: &Head,
        payload: &[u8],
        ts: u64,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Lost> {
        let side = self.side(dir);
        if !side.started && head.kind != SETTINGS {
            return Err(Lost); // not HTTP/2 after all (an HTTP/1 answer, say)
        }
        side.started = true;
        if side.open.is_some() != (head.kind == CONTINUATION) {
            return Err(Lost); // a header block interrupted (RFC 9113, 6.10)
        }
        match head.kind {
            HEADERS | PUSH_PROMISE => {
                side.block.clear();
                side.block
                    .extend_from_slice(frame::fragment(head, payload)?);
                side.open = Some(*head);
            }
            CONTINUATION => side.block.extend_from_slice(payload),
            DATA => {
                if dir != self.requests() {
                    self.response_data(head, ts, sink);
                } else if head.flags & END_STREAM != 0 {
                    self.request_ends(head.stream);
                }
                return Ok(());
            }
            RST_STREAM => {
                // A call reset without a status: cancelled if the reset
                // says so (CANCEL, 0x8), else of unknown outcome.
                let cancel = payload == [0, 0, 0, 8];
                if let Some(stream) = self.streams.get_mut(&head.stream) {
                    if let Some(grpc) = &mut stream.grpc {
                        grpc.code.get_or_insert(if cancel {
                            Code::CANCELLED
                        } else {
                            Code::UNKNOWN
                        });
                    }
                    if let Some(body) = &mut stream.response_body {
                        body.complete = false; // cut short
                    }
                }
                self.finish(head.stream, ts, sink);
                return Ok(());
            }
            SETTINGS if head.flags & ACK == 0 => {
                // The sender's decoder allows the other side's encoder this
                // much table (the largest announced, to stay lenient).
                let other = if dir == self.requests() {
                    &mut self.server
                } else {
                    &mut self.client
                };
                for setting in payload.chunks_exact(6) {
                    if u16::from_be_bytes([setting[0], setting[1]]) == HEADER_TABLE_SIZE {
                        let size =
                            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                        other.hpack.set_limit(size as usize);
                    }
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        if head.flags & END_HEADERS == 0 {
            return Ok(()); // CONTINUATION frames follow
        }
        let Some(first) = side.open.take() else {
            return Err(Lost);
        };
        let mut fields = std::mem::take(&mut side.fields);
        fields.clear();
        let block = std::mem::take(&mut side.block);
        let decoded = side
            .hpack
            .decode(&block, &mut |name, value| fields.add(name, value));
        side.block = block;
        decoded.map_err(|_| Lost)?;
        if first.kind == PUSH_PROMISE {
            return Ok(()); // decoded for the table; pushes are not requests
        }
        let end = first.flags & END_STREAM != 0;
        if dir == self.requests() {
            let config = match self.role {
                Role::Served => &context.served,
                Role::Called => &context.calls,
            };
            self.request(first.stream, &fields, ts, config, sink);
            if end {
                self.request_ends(first.stream);
            }
        } else {
            self.response(first.stream, &fields, end, ts, sink);
        }
        if fields.bytes.capacity() <= MAX_KEPT_FIELDS {
            self.side(dir).fields = fields;
        }
        Ok(())
    }

    /// A run of a DATA payload on stream `id`: a gRPC call's messages, a
    /// body a rule reads.
    fn data(&mut self, dir: Direction, id: u32, run: u64, visible: &[u8]) {
        let requests = dir == self.requests();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(grpc) = &mut stream.grpc {
            let messages = if requests {
                &mut grpc.requests
            } else {
                &mut grpc.responses
            };
            messages.data(run, visible);
        }
        let body = if requests {
            stream.request.as_mut().and_then(|r| r.body.as_mut())
        } else {
            stream.response_body.as_mut()
        };
        if let Some(body) = body {
            body.keep(visible, run);
        }
    }

    fn request_ends(&mut self, id: u32) {
        if let Some(request) = self.streams.get_mut(&id).and_then(|s| s.request.as_mut()) {
            request.ended = true;
        }
    }

    fn request(
        &mut self,
        id: u32,
        fields: &Fields,
        ts: u64,
        config: &ParseConfig<'_>,
        sink: &mut dyn Sink,
    ) {
        if self.streams.get(&id).is_some_and(|s| s.request.is_some()) {
            return; // trailers
        }
        if !self.streams.contains_key(&id) && self.streams.len() >= MAX_STREAMS {
            return;
        }
        let (method, path) = match (fields.method.as_deref(), fields.path.as_deref()) {
            (Some(method), Some(path)) => (method, path),
            // Joined mid-way: what could not be read is unknown.
            (method, path) if fields.unread => {
                (method.unwrap_or("?"), path.unwrap_or(UNKNOWN_PATH))
            }
            _ => return, // CONNECT without a path, or not a request
        };
        let mut head = request_head(method, path, &fields.headers(), config.auth);
        head.version = Version::Http2;
        if head.from_loupe && self.role == Role::Served {
            return;
        }
        let wants = (config.bodies)(&head.method, &head.path);
        if wants.response > 0 {
            // Before the answer comes: the probes copy DATA within the
            // connection's budget.
            sink.command(Command::CaptureReply(wants.response));
        }
        let grpc = fields
            .others()
            .any(|(name, value)| name == "content-type" && is_grpc(value));
        if grpc {
            let started = grpc::Event::Started(head.path.clone());
            sink.observe(Observation::Grpc(self.role, started));
        }
        let stream = self.streams.entry(id).or_default();
        stream.grpc = grpc.then(Box::default);
        stream.request = Some(Request {
            method: head.method,
            path: head.path,
            query_key: head.query_key,
            auth: head.auth,
            headers: head.headers,
            rule: wants.rule,
            body: (wants.request > 0).then(|| BodyBytes::new(wants.request, false)),
            wants_response: wants.response,
            ended: false,
            start_ns: ts,
        });
    }

    fn response(&mut self, id: u32, fields: &Fields, end: bool, ts: u64, sink: &mut dyn Sink) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        match fields.status {
            // Informational: the final response follows.
            Some(status) if (100..200).contains(&status) => return,
            None if fields.unread && !stream.answered => stream.answered = true,
            Some(status) if !stream.answered => {
                stream.answered = true;
                stream.status = Some(status);
                let wants = stream.request.as_ref().map_or(0, |r| r.wants_response);
                if wants > 0 {
                    let mut body = BodyBytes::new(wants, false);
                    let error_type;
                    (body.encoding, body.event_stream, error_type) =
                        body_encoding(&fields.headers());
                    stream.error_type = error_type.map(String::into_boxed_str);
                    stream.response_body = Some(body);
                }
            }
            _ => {} // trailers
        }
        if let Some(grpc) = &mut stream.grpc
            && let Some((_, value)) = fields.others().find(|(name, _)| *name == "grpc-status")
        {
            grpc.code = Some(Code::parse(value));
        }
        if end {
            stream.first_ns.get_or_insert(ts);
            self.finish(id, ts, sink);
        }
    }

    fn response_data(&mut self, head: &Head, ts: u64, sink: &mut dyn Sink) {
        let Some(stream) = self.streams.get_mut(&head.stream) else {
            return;
        };
        stream.first_ns.get_or_insert(ts);
        if head.flags & END_STREAM != 0 {
            self.finish(head.stream, ts, sink);
        }
    }

    /// The stream ended (its response's END_STREAM, a reset, the close) at
    /// `ts`: an exchange if it was answered, else an abandoned request.
    fn finish(&mut self, id: u32, ts: u64, sink: &mut dyn Sink) {
        let Some(Stream {
            request: Some(mut request),
            grpc,
            answered,
            status,
            first_ns,
            response_body,
            error_type,
        }) = self.streams.remove(&id)
        else {
            return;
        };
        if let Some(grpc) = grpc {
            // Ended without a status: a response without trailers.
            let ended = grpc::Event::Ended(grpc::Call {
                path: request.path.clone(),
                code: grpc.code.unwrap_or(Code::UNKNOWN),
                requests: grpc.requests.count,
                responses: grpc.responses.count,
                start_ns: request.start_ns,
                end_ns: ts,
            });
            sink.observe(Observation::Grpc(self.role, ended));
        }
        if !answered && self.role == Role::Served {
            let abandoned = Outcome::Abandoned {
                method: request.method,
                path: request.path,
            };
            return sink.observe(Observation::Served(abandoned));
        }
        let exchange = Exchange {
            method: request.method,
            version: Version::Http2,
            tls: false,
            path: request.path,
            query_key: request.query_key,
            status,
            auth: request.auth,
            start_ns: request.start_ns,
            first_byte_ns: first_ns.unwrap_or(ts),
            end_ns: ts,
            headers: request.headers,
            request_body: request.body.take().map(|mut body| {
                body.complete &= request.ended;
                body
            }),
            response_body,
            error_type,
            rule: request.rule,
        };
        sink.observe(match self.role {
            Role::Served => Observation::Served(Outcome::Exchange(exchange)),
            // Unanswered: counted with an unknown status.
            Role::Called => Observation::Call(exchange),
        });
    }
}

impl Protocol for Http2 {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        if self.lost {
            return;
        }
        let mut from = 0;
        if dir == self.requests() && self.preface < PREFACE.len() {
            match self.preface(bytes) {
                Ok(used) => from = used,
                Err(Lost) => return self.lose(sink),
            }
        }
        self.continue_from(dir, bytes, from, context, sink);
    }

    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink) {
        if !self.server.started {
            // The server never spoke HTTP/2 (an HTTP/1-only server drops
            // such a connection, whether or not it read a request first):
            // not HTTP/2 traffic loupe can count, and no request abandoned.
            return self.lose(sink);
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.finish(id, ts, sink);
        }
    }

    fn is_parsing(&self) -> bool {
        !self.lost
    }

    fn buffered(&self) -> usize {
        let side = |s: &Side| {
            let fields = s.fields.bytes.capacity() + s.fields.ends.capacity() * 16;
            s.frames.buffered() + s.hpack.buffered() + s.block.capacity() + fields
        };
        side(&self.client) + side(&self.server) + self.streams.len() * 160
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http1::exchange::BodyWants;
    use crate::protocols::http2::frame::{PADDED, ProbeModel, encode, hex};
    use crate::protocols::testing::{Collect, with_bodies, with_context};

    /// The client's first write: the preface, its SETTINGS, then `frames`.
    fn hello(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(encode(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
        out.extend(frames.concat());
        out
    }

    /// The server's first write: its SETTINGS, then `frames`.
    fn welcome(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = encode(SETTINGS, 0, 0, &[]);
        out.extend(frames.concat());
        out
    }

    /// Feeds the syscalls in turn; returns what was found.
    fn replay(syscalls: &[(Direction, Vec<u8>)]) -> Vec<Outcome> {
        let mut server = Http2::served();
        let mut found = Vec::new();
        let mut sink = Collect(|o| {
            if let Observation::Served(outcome) = o {
                found.push(outcome);
            }
        });
        for (ts, (dir, bytes)) in syscalls.iter().enumerate() {
            let transfer = Transfer::new(ts as u64 * 10, bytes.len() as u64, bytes);
            with_context(|context| server.on_bytes(*dir, &transfer, context, &mut sink));
        }
        server.on_close(1000, &mut sink);
        found
    }

    /// Feeds the syscalls in turn as the probes copy them by following
    /// the frames: pieces, with what lies between left out.
    fn replay_walked(syscalls: &[(Direction, Vec<u8>)]) -> Vec<Outcome> {
        observe_walked(syscalls)
            .into_iter()
            .filter_map(|o| match o {
                Observation::Served(outcome) => Some(outcome),
                _ => None,
            })
            .collect()
    }

    /// [`replay_walked`], every observation.
    fn observe_walked(syscalls: &[(Direction, Vec<u8>)]) -> Vec<Observation> {
        let mut server = Http2::served();
        let mut found = Vec::new();
        let mut sink = Collect(|o| found.push(o));
        let mut probes = [ProbeModel::new(true), ProbeModel::new(false)];
        for (ts, (dir, bytes)) in syscalls.iter().enumerate() {
            let copies = probes[usize::from(*dir == Direction::Sent)].copies(bytes);
            let pieces: Vec<(u64, &[u8])> = copies.iter().map(|(at, b)| (*at, &b[..])).collect();
            let transfer = Transfer {
                pieces: &pieces,
                ..Transfer::new(ts as u64 * 10, bytes.len() as u64, &[])
            };
            with_context(|context| server.on_bytes(*dir, &transfer, context, &mut sink));
        }
        server.on_close(1_000_000, &mut sink);
        found
    }

    /// `requests` GETs of `/items/N` on streams 1, 3, ..., each answered
    /// with a 40 kB body in DATA frames of 16 KiB; the client's bytes and
    /// the server's, each as one stream of octets.
    fn conversation(requests: u32) -> (Vec<u8>, Vec<u8>) {
        let mut client = hello(&[]);
        let mut server = welcome(&[encode(SETTINGS, ACK, 0, &[])]);
        for i in 0..requests {
            let stream = 2 * i + 1;
            // :method GET, :scheme http, :path (literal, new name indexed 4,
            // with indexing: a dynamic entry per request).
            let path = format!("/items/{i}");
            let mut block = vec![0x82, 0x86, 0x44, path.len() as u8];
            block.extend(path.as_bytes());
            client.extend(encode(HEADERS, END_HEADERS | END_STREAM, stream, &block));
            server.extend(encode(HEADERS, END_HEADERS, stream, &[0x88]));
            let body = vec![b'x'; 40_000];
            let chunks: Vec<&[u8]> = body.chunks(16_384).collect();
            for (n, chunk) in chunks.iter().enumerate() {
                let last = n + 1 == chunks.len();
                server.extend(encode(
                    DATA,
                    if last { END_STREAM } else { 0 },
                    stream,
                    chunk,
                ));
            }
        }
        (client, server)
    }

    #[test]
    fn walked_frames_count_the_same_however_the_syscalls_cut_them() {
        use Direction::{Received, Sent};
        let (client, server) = conversation(20);
        for cut in [1, 2, 7, 9, 10, 33, 1000, 16_393, 70_000, usize::MAX] {
            let mut syscalls: Vec<(Direction, Vec<u8>)> = client
                .chunks(cut.min(client.len()))
                .map(|c| (Received, c.to_vec()))
                .collect();
            syscalls.extend(
                server
                    .chunks(cut.min(server.len()))
                    .map(|c| (Sent, c.to_vec())),
            );
            let found = replay_walked(&syscalls);
            assert_eq!(found.len(), 20, "cut {cut}: {found:?}");
            for (i, outcome) in found.iter().enumerate() {
                let (method, path, status, ..) = exchange(outcome);
                assert_eq!((method, status), ("GET", Some(200)), "cut {cut}");
                assert_eq!(path, format!("/items/{i}"), "cut {cut}");
            }
        }
    }

    /// An HPACK literal field without indexing, with a new name.
    fn literal(name: &str, value: &str) -> Vec<u8> {
        let mut out = vec![0, name.len() as u8];
        out.extend(name.as_bytes());
        out.push(value.len() as u8);
        out.extend(value.as_bytes());
        out
    }

    /// A gRPC message of `len` octets in a DATA payload.
    fn message(len: usize) -> Vec<u8> {
        let mut out = vec![0];
        out.extend((len as u32).to_be_bytes());
        out.extend(vec![1; len]);
        out
    }

    #[test]
    fn grpc_calls_end_with_their_status_and_messages() {
        use Direction::{Received, Sent};
        let call = |stream: u32, method: &str| {
            // :method POST, :scheme http, :path (literal), content-type.
            let mut block = vec![0x83, 0x86, 0x04, method.len() as u8];
            block.extend(method.as_bytes());
            block.extend(literal("content-type", "application/grpc"));
            encode(HEADERS, END_HEADERS, stream, &block)
        };
        let status = |code: &str| [vec![0x88], literal("grpc-status", code)].concat();
        let trailers = |stream, code| {
            encode(
                HEADERS,
                END_HEADERS | END_STREAM,
                stream,
                &literal("grpc-status", code),
            )
        };
        // Stream 1: two messages in, three out (coalesced in one DATA
        // frame), OK. Stream 3: trailers only, NOT_FOUND. Stream 5: reset
        // by the client (CANCEL) before any answer.
        let found = observe_walked(&[
            (
                Received,
                hello(&[
                    call(1, "/shop.Cart/Sync"),
                    encode(DATA, 0, 1, &message(3)),
                    encode(DATA, END_STREAM, 1, &message(0)),
                    call(3, "/shop.Cart/Get"),
                    encode(DATA, END_STREAM, 3, &message(2)),
                    call(5, "/shop.Cart/Get"),
                    encode(DATA, END_STREAM, 5, &message(2)),
                ]),
            ),
            (
                Sent,
                welcome(&[
                    encode(HEADERS, END_HEADERS, 1, &[0x88]),
                    encode(DATA, 0, 1, &[message(4), message(40), message(1)].concat()),
                    trailers(1, "0"),
                    encode(HEADERS, END_HEADERS | END_STREAM, 3, &status("5")),
                ]),
            ),
            (Received, encode(RST_STREAM, 0, 5, &[0, 0, 0, 8])),
        ]);
        let calls: Vec<_> = found
            .iter()
            .filter_map(|o| match o {
                Observation::Grpc(Role::Served, grpc::Event::Ended(c)) => Some((
                    c.path.as_str(),
                    c.code.as_str(),
                    c.requests,
                    c.responses,
                    c.kind(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("/shop.Cart/Sync", "OK", 2, 3, grpc::Kind::BidiStream),
                ("/shop.Cart/Get", "NOT_FOUND", 1, 0, grpc::Kind::Unary),
                ("/shop.Cart/Get", "CANCELLED", 1, 0, grpc::Kind::Unary),
            ]
        );
        let started = found
            .iter()
            .filter(|o| matches!(o, Observation::Grpc(Role::Served, grpc::Event::Started(_))))
            .count();
        assert_eq!(started, 3);
    }

    #[test]
    fn a_joined_connection_counts_what_is_certain() {
        use Direction::{Received, Sent};
        let get = |stream: u32, path_field: &[u8]| {
            let block = [&[0x82, 0x86][..], path_field].concat();
            encode(HEADERS, END_HEADERS | END_STREAM, stream, &block)
        };
        let answer =
            |stream: u32, status: &[u8]| encode(HEADERS, END_HEADERS | END_STREAM, stream, status);
        // Stream 41: `:path` from the table before loupe; 43: a new path,
        // inserted (`:path` name indexed 4); 45: that path by index. The
        // answers: `:status 200` (static), one from the table before, and
        // `:status 201` as a literal.
        let mut conn = Http2::joined();
        let mut found = Vec::new();
        let mut sink = Collect(|o| {
            if let Observation::Served(outcome) = o {
                found.push(outcome);
            }
        });
        let mut fresh = vec![0x44, 6];
        fresh.extend(b"/fresh");
        let syscalls = [
            (Received, get(41, &[0xc0])),
            (Sent, answer(41, &[0x88])),
            (Received, [get(43, &fresh), get(45, &[0xbe])].concat()),
            (Sent, answer(43, &[0xbf])),
            (Sent, answer(45, b"\x48\x03201")),
        ];
        with_context(|context| {
            for (ts, (dir, bytes)) in syscalls.iter().enumerate() {
                let transfer = Transfer::new(ts as u64 * 10, bytes.len() as u64, bytes);
                conn.on_bytes(*dir, &transfer, context, &mut sink);
            }
        });
        let seen: Vec<_> = found
            .iter()
            .map(|o| (exchange(o).1, exchange(o).2))
            .collect();
        assert_eq!(
            seen,
            [
                (UNKNOWN_PATH, Some(200)),
                ("/fresh", None),
                ("/fresh", Some(201))
            ]
        );
        // A frame that does not decode even so (index 0) loses it.
        let mut found = Vec::new();
        let mut sink = Collect(|o| found.push(o));
        let bad = get(47, &[0x80]);
        with_context(|context| {
            let transfer = Transfer::new(99, bad.len() as u64, &bad);
            conn.on_bytes(Received, &transfer, context, &mut sink);
        });
        assert_eq!(
            found,
            [Observation::Served(Outcome::Unparsed(Unparsed::Http2))]
        );
    }

    /// A padded DATA frame: pad length `pad`, then `data`, then padding.
    fn padded(flags: u8, stream: u32, data: &[u8], pad: u8) -> Vec<u8> {
        let payload = [&[pad][..], data, &vec![0xff; usize::from(pad)]].concat();
        encode(DATA, flags | PADDED, stream, &payload)
    }

    #[test]
    fn padded_frames_count_messages_however_the_syscalls_cut_them() {
        use Direction::{Received, Sent};
        let mut block = vec![0x83, 0x86, 0x04, 10];
        block.extend(b"/a.B/Watch");
        block.extend(literal("content-type", "application/grpc"));
        let client = hello(&[
            encode(HEADERS, END_HEADERS, 1, &block),
            padded(END_STREAM, 1, &message(6), 9),
        ]);
        // Three messages over three padded frames, cut mid-prefix and
        // mid-message; the padding's octets look like prefixes.
        let out = [message(4), message(40), message(1)].concat();
        let server = welcome(&[
            encode(HEADERS, END_HEADERS, 1, &[0x88]),
            padded(0, 1, &out[..7], 0),
            padded(0, 1, &out[7..30], 5),
            padded(0, 1, &out[30..], 200),
            encode(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &literal("grpc-status", "0"),
            ),
        ]);
        for cut in 1..=server.len() {
            let mut syscalls = vec![(Received, client.clone())];
            syscalls.extend(server.chunks(cut).map(|c| (Sent, c.to_vec())));
            let ended: Vec<_> = observe_walked(&syscalls)
                .into_iter()
                .filter_map(|o| match o {
                    Observation::Grpc(_, grpc::Event::Ended(c)) => Some((c.requests, c.responses)),
                    _ => None,
                })
                .collect();
            assert_eq!(ended, [(1, 3)], "cut {cut}");
        }
    }

    fn exchange(outcome: &Outcome) -> (&str, &str, Option<u16>, u64, u64) {
        let Outcome::Exchange(e) = outcome else {
            panic!("{outcome:?}")
        };
        (
            e.method.as_str(),
            e.path.as_str(),
            e.status,
            e.start_ns,
            e.end_ns,
        )
    }

    #[test]
    fn concurrent_streams_answered_out_of_order() {
        use Direction::{Received, Sent};
        // RFC 7541 C.4.1 and C.4.2: GET / on streams 1 and 3 (the second
        // block indexes the first one's dynamic entry).
        let first = encode(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
        );
        let second = encode(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &hex("828684be5886a8eb10649cbf"),
        );
        let mut answer_3 = encode(HEADERS, END_HEADERS, 3, &[0x8d]); // :status 404
        answer_3.extend(encode(DATA, END_STREAM, 3, b"none"));
        let answer_1 = encode(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]); // 200
        let found = replay(&[
            (Received, hello(&[])),
            (Received, first),
            (Sent, welcome(&[encode(SETTINGS, ACK, 0, &[])])),
            (Received, second),
            (Sent, answer_3),
            (Sent, answer_1),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(exchange(&found[0]), ("GET", "/", Some(404), 30, 40));
        assert_eq!(exchange(&found[1]), ("GET", "/", Some(200), 10, 50));
    }

    #[test]
    fn a_reset_before_the_answer_is_an_abandoned_request() {
        use Direction::{Received, Sent};
        let request = encode(
            HEADERS,
            END_HEADERS,
            1,
            &hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
        );
        let found = replay(&[
            (Received, hello(&[request])),
            (Received, encode(RST_STREAM, 0, 1, &[0, 0, 0, 8])),
            (
                Sent,
                welcome(&[encode(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88])]),
            ),
        ]);
        assert_eq!(
            found,
            [Outcome::Abandoned {
                method: Method::parse("GET"),
                path: "/".into()
            }]
        );
    }

    #[test]
    fn a_header_block_split_over_continuation_frames() {
        use Direction::{Received, Sent};
        let block = hex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
        let split = [
            encode(HEADERS, 0, 5, &block[..3]),
            encode(CONTINUATION, 0, 5, &block[3..9]),
            encode(CONTINUATION, END_HEADERS, 5, &block[9..]),
        ];
        let found = replay(&[
            (Received, hello(&split)),
            (
                Sent,
                welcome(&[encode(HEADERS, END_HEADERS | END_STREAM, 5, &[0x8e])]),
            ),
        ]);
        assert_eq!(exchange(&found[0]), ("GET", "/", Some(500), 0, 10));
    }

    #[test]
    fn a_lost_table_is_reported_once_and_counts_nothing() {
        use Direction::{Received, Sent};
        // Index 62: a dynamic entry this decoder never saw.
        let found = replay(&[
            (
                Received,
                hello(&[encode(HEADERS, END_HEADERS, 1, &[0x82, 0xbe])]),
            ),
            (
                Sent,
                welcome(&[encode(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88])]),
            ),
            (Received, encode(HEADERS, END_HEADERS, 3, &[0x82, 0x84])),
        ]);
        assert_eq!(found, [Outcome::Unparsed(Unparsed::Http2)]);
        // An HTTP/1 server closing on an HTTP/2 client (after or before its
        // first request was read), or answering it.
        let found = replay(&[(
            Received,
            hello(&[encode(HEADERS, END_HEADERS, 1, &[0x82, 0x84])]),
        )]);
        assert_eq!(found, [Outcome::Unparsed(Unparsed::Http2)]);
        let found = replay(&[(Received, hello(&[]))]);
        assert_eq!(found, [Outcome::Unparsed(Unparsed::Http2)]);
        let found = replay(&[
            (
                Received,
                hello(&[encode(HEADERS, END_HEADERS, 1, &[0x82, 0x84])]),
            ),
            (Sent, b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ]);
        assert_eq!(found, [Outcome::Unparsed(Unparsed::Http2)]);
        // Not the preface: the same.
        let found = replay(&[(Received, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec())]);
        assert_eq!(found, [Outcome::Unparsed(Unparsed::Http2)]);
    }

    /// Feeds the syscalls to `conn` with a context whose rules read both
    /// bodies of `POST /login`; returns the observations and the
    /// commands.
    fn with_login_rule(
        mut conn: Http2,
        syscalls: &[(Direction, Vec<u8>)],
    ) -> (Vec<Observation>, Vec<Command>) {
        struct Both(Vec<Observation>, Vec<Command>);
        impl Sink for Both {
            fn observe(&mut self, observation: Observation) {
                self.0.push(observation);
            }
            fn command(&mut self, command: Command) {
                self.1.push(command);
            }
        }
        let login = |method: &Method, path: &str| {
            if *method == Method::Post && path == "/login" {
                BodyWants {
                    request: 64,
                    response: 64,
                    rule: Some(0),
                    live: false,
                }
            } else {
                BodyWants::default()
            }
        };
        let mut sink = Both(Vec::new(), Vec::new());
        with_bodies(&login, |context| {
            for (ts, (dir, bytes)) in syscalls.iter().enumerate() {
                let transfer = Transfer::new(ts as u64 * 10, bytes.len() as u64, bytes);
                conn.on_bytes(*dir, &transfer, context, &mut sink);
            }
        });
        conn.on_close(1000, &mut sink);
        (sink.0, sink.1)
    }

    /// `POST /login` on stream 1 (`:method POST`, `:path /login` literal).
    fn post_login(flags: u8) -> Vec<u8> {
        let mut block = vec![0x83, 0x86, 0x04, 6];
        block.extend(b"/login");
        encode(HEADERS, END_HEADERS | flags, 1, &block)
    }

    #[test]
    fn bodies_a_rule_reads_are_kept_over_frames() {
        use Direction::{Received, Sent};
        let request = br#"{"provider": "github"}"#;
        // The request body in two DATA frames, the second one padded
        // (pad length 3), the response gzip-less JSON in one.
        let mut padded = vec![3];
        padded.extend(&request[10..]);
        padded.extend([0, 0, 0]);
        let mut answer = encode(HEADERS, END_HEADERS, 1, &[0x88]);
        answer.extend(encode(DATA, END_STREAM, 1, br#"{"ok": true}"#));
        let (found, commands) = with_login_rule(
            Http2::served(),
            &[
                (
                    Received,
                    hello(&[post_login(0), encode(DATA, 0, 1, &request[..10])]),
                ),
                (Received, encode(DATA, END_STREAM | PADDED, 1, &padded)),
                (Sent, welcome(&[answer])),
            ],
        );
        assert_eq!(commands, [Command::CaptureReply(64)]);
        let [Observation::Served(Outcome::Exchange(x))] = &found[..] else {
            panic!("{found:?}");
        };
        let (request_body, response_body) = (
            x.request_body.as_ref().unwrap(),
            x.response_body.as_ref().unwrap(),
        );
        assert_eq!(request_body.bytes, request);
        assert!(request_body.complete);
        assert_eq!(response_body.bytes, br#"{"ok": true}"#);
        assert!(response_body.complete && !response_body.event_stream);
    }

    #[test]
    fn a_body_cut_short_or_not_captured_is_not_complete() {
        use Direction::{Received, Sent};
        // The response's DATA was not captured (the probes' budget was
        // spent): its length went by, its octets did not.
        let mut answer = welcome(&[encode(HEADERS, END_HEADERS, 1, &[0x88])]);
        let data = encode(DATA, END_STREAM, 1, br#"{"ok": true}"#);
        answer.extend(&data[..9]);
        let pieces = [(0, &answer[..])];
        let mut conn = Http2::served();
        let mut found = Vec::new();
        let mut sink = Collect(|o| found.push(o));
        with_context(|context| {
            let hello = hello(&[post_login(END_STREAM)]);
            let rx = Transfer::new(0, hello.len() as u64, &hello);
            conn.on_bytes(Received, &rx, context, &mut sink);
            let tx = Transfer {
                pieces: &pieces,
                ..Transfer::new(10, answer.len() as u64 + data.len() as u64 - 9, &[])
            };
            conn.on_bytes(Sent, &tx, context, &mut sink);
        });
        // Without a rule, no body is kept at all.
        let [Observation::Served(Outcome::Exchange(x))] = &found[..] else {
            panic!("{found:?}");
        };
        assert_eq!(
            (x.request_body.as_ref(), x.response_body.as_ref()),
            (None, None)
        );
        // With one: a reset cuts the response short; the request had none.
        let (found, _) = with_login_rule(
            Http2::served(),
            &[
                (Received, hello(&[post_login(END_STREAM)])),
                (
                    Sent,
                    welcome(&[
                        encode(HEADERS, END_HEADERS, 1, &[0x88]),
                        encode(DATA, 0, 1, b"{\"ok\""),
                        encode(RST_STREAM, 0, 1, &[0, 0, 0, 2]),
                    ]),
                ),
            ],
        );
        let [Observation::Served(Outcome::Exchange(x))] = &found[..] else {
            panic!("{found:?}");
        };
        let request_body = x.request_body.as_ref().unwrap();
        assert!(request_body.bytes.is_empty() && request_body.complete);
        let response_body = x.response_body.as_ref().unwrap();
        assert_eq!(response_body.bytes, b"{\"ok\"");
        assert!(!response_body.complete);
    }

    #[test]
    fn a_model_call_over_http2_keeps_its_streamed_answer() {
        use Direction::{Received, Sent};
        // The service calls `POST /login` (the context's rule stands for
        // a model API here) and reads an event stream: `:status 200`,
        // `content-type: text/event-stream`.
        let mut head = vec![0x88];
        head.extend(literal("content-type", "text/event-stream"));
        let events = ["data: {\"a\": 1}\n\n", "data: {\"usage\": 2}\n\n"];
        let mut answer = encode(SETTINGS, 0, 0, &[]);
        answer.extend(encode(HEADERS, END_HEADERS, 1, &head));
        let (found, commands) = with_login_rule(
            Http2::called(),
            &[
                (Sent, hello(&[post_login(END_STREAM)])),
                (Received, answer),
                (Received, encode(DATA, 0, 1, events[0].as_bytes())),
                (Received, encode(DATA, END_STREAM, 1, events[1].as_bytes())),
            ],
        );
        assert_eq!(commands, [Command::CaptureReply(64)]);
        let [Observation::Call(call)] = &found[..] else {
            panic!("{found:?}");
        };
        let body = call.response_body.as_ref().unwrap();
        assert_eq!(body.bytes, events.concat().as_bytes());
        assert!(body.complete && body.event_stream);
        assert_eq!((call.status, call.first_byte_ns), (Some(200), 20));
    }
}
