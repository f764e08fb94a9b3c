//! gRPC over HTTP/2 (its wire format: `application/grpc*` requests, messages
//! framed in DATA as a flag octet, a 4-octet big-endian length and the
//! message; the call's status in the `grpc-status` trailer): what a call
//! was, counted from its stream.

/// Where one direction of a stream stands in its messages, as the probes
/// follow them (`ebpf/probes/src/frames.rs` copies each message's prefix
/// and skips the message): the messages counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Messages {
    /// Octets of the current message still to come.
    left: u32,
    /// Octets of the current prefix read so far.
    have: u8,
    /// Its length octets so far.
    len: u32,
    /// Messages whose prefix was read.
    pub count: u32,
    /// A prefix was not captured: the count stopped there.
    pub lost: bool,
}

const PREFIX: u8 = 5;

impl Messages {
    /// A run of `run` DATA payload octets, captured in `visible` (all of
    /// them, or none).
    pub fn data(&mut self, run: u64, visible: &[u8]) {
        let mut pos = 0u64;
        while pos < run && !self.lost {
            if self.left > 0 {
                let skip = u64::from(self.left).min(run - pos);
                self.left -= skip as u32;
                pos += skip;
                continue;
            }
            let Some(&octet) = visible.get(pos as usize) else {
                self.lost = true;
                return;
            };
            if self.have > 0 {
                self.len = (self.len << 8) | u32::from(octet);
            }
            self.have += 1;
            pos += 1;
            if self.have == PREFIX {
                self.count += 1;
                (self.left, self.have, self.len) = (self.len, 0, 0);
            }
        }
    }
}

/// Whether a request's `content-type` makes it a gRPC call.
pub fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .get(..16)
        .is_some_and(|start| start.eq_ignore_ascii_case(b"application/grpc"))
}

/// The status codes of gRPC (`grpc/status.h`), by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A call's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(u8);

impl Code {
    pub const OK: Self = Self(0);
    pub const CANCELLED: Self = Self(1);
    pub const UNKNOWN: Self = Self(2);

    /// From a `grpc-status` value; a number outside the list is UNKNOWN.
    pub fn parse(value: &[u8]) -> Self {
        std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.trim().parse::<u8>().ok())
            .filter(|&code| usize::from(code) < CODES.len())
            .map_or(Self::UNKNOWN, Self)
    }

    pub fn as_str(self) -> &'static str {
        CODES[usize::from(self.0)]
    }
}

/// How messages went on a call: inferred from the messages seen (a
/// streaming method that carried one message each way looks unary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl Kind {
    pub fn of(requests: u32, responses: u32) -> Self {
        match (requests > 1, responses > 1) {
            (false, false) => Self::Unary,
            (true, false) => Self::ClientStream,
            (false, true) => Self::ServerStream,
            (true, true) => Self::BidiStream,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

/// What a served stream tells of a gRPC call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Its request headers were read; `:path`.
    Started(String),
    Ended(Call),
}

/// A gRPC call that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `:path`, `/package.Service/Method`.
    pub path: String,
    pub code: Code,
    /// Messages the client sent, and the server.
    pub requests: u32,
    pub responses: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Call {
    pub fn kind(&self) -> Kind {
        Kind::of(self.requests, self.responses)
    }
}

/// `(service, method)` of a call's path (`/package.Service/Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.rsplit_once('/').unwrap_or(("unknown", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut out = vec![0];
        out.extend((len as u32).to_be_bytes());
        out.extend(vec![7; len]);
        out
    }

    #[test]
    fn messages_are_counted_however_the_runs_cut_them() {
        let wire: Vec<u8> = [message(3), message(0), message(40_000), message(1)].concat();
        for cut in [1, 2, 5, 6, 100, 16_384, wire.len()] {
            let mut messages = Messages::default();
            for run in wire.chunks(cut) {
                messages.data(run.len() as u64, run);
            }
            assert_eq!(messages.count, 4, "cut {cut}");
            assert!(!messages.lost);
        }
    }

    #[test]
    fn a_prefix_not_captured_stops_the_count() {
        let mut messages = Messages::default();
        let first = message(2);
        messages.data(first.len() as u64, &first);
        messages.data(5, &[]);
        assert_eq!((messages.count, messages.lost), (1, true));
        // A gap inside a message is fine.
        let mut messages = Messages::default();
        messages.data(5, &message(100)[..5]);
        messages.data(100, &[]);
        messages.data(5, &message(0));
        assert_eq!((messages.count, messages.lost), (2, false));
    }

    #[test]
    fn codes_kinds_and_paths() {
        assert_eq!(Code::parse(b"5").as_str(), "NOT_FOUND");
        assert_eq!(Code::parse(b"0").as_str(), "OK");
        assert_eq!(Code::parse(b"99").as_str(), "UNKNOWN");
        assert_eq!(Code::parse(b"x").as_str(), "UNKNOWN");
        assert_eq!(Kind::of(1, 1), Kind::Unary);
        assert_eq!(Kind::of(0, 3).as_str(), "server_stream");
        assert_eq!(Kind::of(4, 1).as_str(), "client_stream");
        assert_eq!(Kind::of(2, 2).as_str(), "bidi_stream");
        assert_eq!(split_path("/shop.v1.Cart/Add"), ("shop.v1.Cart", "Add"));
        assert!(is_grpc(b"application/grpc+proto"));
        assert!(!is_grpc(b"application/json"));
    }
}
