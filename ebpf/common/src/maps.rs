//! Map names, capacities, and the key and value types stored in them.
//!
//! The probes declare their maps under these names; the agent opens them by
//! the same constants, so a rename cannot break one side only.
use crate::assert_size;

/// Tracked processes: `tgid -> Target`.
pub const TRACKED: &str = "TRACKED";
/// One bit per PID, set for tracked processes (and, until the agent clears
/// it, for some that exited): the first check of every hot probe, an array
/// index instead of a hash lookup. Word `pid / 64`, bit `pid % 64`.
pub const TRACKED_BITS: &str = "TRACKED_BITS";
/// Open TCP socket fds of tracked processes: `FdKey -> FdInfo`.
pub const FDS: &str = "FDS";
/// Listening ports of tracked services: `ListenKey -> SockOwner`.
pub const LISTENERS: &str = "LISTENERS";
/// TCP sockets owned by a tracked service, by kernel address: `u64 -> SockOwner`.
pub const SOCKETS: &str = "SOCKETS";
/// Connections found in `/proc` at attach time, not yet seen by a probe:
/// `TupleKey -> SockOwner`. A probe adopts an entry into `SOCKETS` on the
/// first state change of that connection.
pub const PREEXISTING: &str = "PREEXISTING";
/// The fd argument of the syscall a tracked thread is in: `tid -> fd`.
/// Entries of threads that died inside a syscall are swept by the agent.
pub const PENDING_FD: &str = "PENDING_FD";
/// Tracked processes that had a thread blocked in `accept` when fexit
/// was attached (the fexit program never runs for a call already in
/// progress): `tgid -> 1`. For them, a data syscall on an fd the probes do
/// not know looks the fd up in the task's file table, which finds the
/// connection such an `accept` returned. Looked up only while
/// `SWITCH_LATE_ACCEPTS` is set; the agent removes a process once its
/// blocked threads have woken.
pub const LATE_ACCEPTS: &str = "LATE_ACCEPTS";
/// Switches the agent sets for the probes, indexed by the `SWITCH_*` constants.
pub const SWITCHES: &str = "SWITCHES";
/// Event ring buffer shared by all probes.
pub const EVENTS: &str = "EVENTS";
/// Request-line prefixes whose responses route rules read:
/// `index -> CaptureRoute`, the first `SWITCH_CAPTURE_ROUTES` in use. A
/// read that starts a request on a served connection is compared with them
/// before its response is written, so the response is copied from its
/// start, the first one too.
pub const CAPTURE_ROUTES: &str = "CAPTURE_ROUTES";
pub const CAPTURE_ROUTES_LEN: u32 = 16;
/// Per-CPU counters, indexed by the `COUNTER_*` constants.
pub const COUNTERS: &str = "COUNTERS";
/// TLS connections of tracked processes, by OpenSSL `SSL*`: `TlsKey ->
/// FdInfo` (the same state the data probes keep per socket fd). LRU: an
/// `SSL_free` missed (a killed process) cannot leak an entry.
pub const TLS_CONNS: &str = "TLS_CONNS";
/// The `SSL_read`/`SSL_write` call a tracked thread is in, between the
/// uprobe and the uretprobe: `pid_tgid -> TlsCall`. LRU for threads that
/// die inside a call.
pub const TLS_CALLS: &str = "TLS_CALLS";
/// HTTP/2 streams inside a message when their last DATA frame ended:
/// `StreamKey -> Messages`. LRU: a stream whose end was missed cannot
/// leak an entry.
pub const STREAM_MESSAGES: &str = "STREAM_MESSAGES";
/// Capture budgets the agent raised for connections (the answer of a
/// model call, a body a route rule reads): `ConnKey -> bytes`. The probe
/// of the connection's next syscall adds the budget to its `FdInfo` and
/// removes the entry, so the agent never rewrites an `FdInfo` the probes
/// are updating. Looked up only while `SWITCH_RAISES` is set.
pub const CAPTURE_RAISES: &str = "CAPTURE_RAISES";

pub const TRACKED_CAPACITY: u32 = 8192;
/// Words of `TRACKED_BITS`: PIDs up to 4,194,304 (the kernel's `PID_MAX_LIMIT`).
pub const TRACKED_BITS_WORDS: u32 = 65_536;
pub const FDS_CAPACITY: u32 = 65_536;
pub const LISTENERS_CAPACITY: u32 = 1024;
pub const SOCKETS_CAPACITY: u32 = 65_536;
pub const PREEXISTING_CAPACITY: u32 = 16_384;
pub const PENDING_FD_CAPACITY: u32 = 16_384;
pub const TLS_CONNS_CAPACITY: u32 = 16_384;
pub const TLS_CALLS_CAPACITY: u32 = 4096;
pub const STREAM_MESSAGES_CAPACITY: u32 = 16_384;
pub const CAPTURE_RAISES_CAPACITY: u32 = 1024;
pub const LATE_ACCEPTS_CAPACITY: u32 = 1024;
/// Bytes of the event ring buffer (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 8 << 20;
/// Records are submitted without waking the agent (which polls on a short
/// timer) until this much data is pending: a wake-up per record costs an
/// interrupt, several microseconds on a virtual machine.
pub const EVENTS_WAKEUP_BYTES: u64 = (EVENTS_BYTES / 8) as u64;

/// Events that did not fit in the ring buffer.
pub const COUNTER_EVENTS_LOST: u32 = 0;
/// Inserts refused because a map was full.
pub const COUNTER_MAP_FULL: u32 = 1;
/// What can change which processes the services select: an `exec` by any
/// process, a socket of any process starting to listen, the exit of a
/// tracked process. The agent scans `/proc` when this moved (and, as a
/// safety net, now and then when it did not).
pub const COUNTER_PROCESS_CHANGES: u32 = 2;
pub const COUNTERS_LEN: u32 = 3;

/// Non-zero while `PREEXISTING` holds entries: otherwise the TCP state probe
/// skips the lookup on the state changes of sockets nobody tracks.
pub const SWITCH_PREEXISTING: u32 = 0;
/// Non-zero: the data probes capture inbound connections (HTTP served).
pub const SWITCH_CAPTURE_INBOUND: u32 = 1;
/// Non-zero: the data probes capture outbound connections too.
pub const SWITCH_CAPTURE_OUTBOUND: u32 = 2;
/// How many `CAPTURE_ROUTES` entries are in use (0: none, no comparison).
pub const SWITCH_CAPTURE_ROUTES: u32 = 3;
/// Non-zero while `CAPTURE_RAISES` may hold entries.
pub const SWITCH_RAISES: u32 = 4;
/// What route rules read of HTTP/2 bodies (`BODIES_*` bits): the DATA of
/// a served HTTP/2 connection is then copied up to `CAPTURE_MAX` bytes per
/// syscall in the directions they read (HTTP/1's first bytes of each
/// syscall), since the probes cannot read which stream a rule matches.
pub const SWITCH_HTTP2_BODIES: u32 = 5;
/// Non-zero while `LATE_ACCEPTS` holds entries.
pub const SWITCH_LATE_ACCEPTS: u32 = 6;
pub const SWITCHES_LEN: u32 = 7;
pub const BODIES_REQUESTS: u32 = 1;
pub const BODIES_RESPONSES: u32 = 2;

/// A tracked process: which service it belongs to, and the tracked process
/// that forked it (0 for a process the agent selected itself). A child looks
/// up fds it inherited (such as a pre-forked worker's listening socket) under
/// its parent until the agent has copied them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub service: u32,
    pub parent: u32,
}
assert_size!(Target, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: u32,
}
assert_size!(FdKey, 8);

/// What a TCP socket fd is used for.
pub const ROLE_LISTENER: u32 = 1;
pub const ROLE_INBOUND: u32 = 2;
pub const ROLE_OUTBOUND: u32 = 3;

/// A TCP socket fd of a tracked process. The data probes update
/// `last_dir` and `capture` in place (no map update per syscall).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdInfo {
    pub service: u32,
    /// One of the `ROLE_*` constants.
    pub role: u32,
    /// Connection id: unique among the process's connections while it lives
    /// (probes use the time of the insert; the agent's seeds set the top bit).
    pub conn: u64,
    /// Direction (`event::DIR_*`) of the last data syscall, 0 before any.
    pub last_dir: u32,
    /// Bytes of further writes copied in full (a route rule wants body
    /// fields): set from `CAPTURE_ROUTES` when a request starts, raised by
    /// the agent through `CAPTURE_RAISES`, consumed by the probes.
    pub capture: u32,
    /// How the probes copy the connection's bytes (`FRAMING_*`): set by
    /// the probes when a connection turns out to speak HTTP/2.
    pub framing: u32,
    pub _pad: u32,
    /// Where each direction's frames are (`[received, sent]`), under
    /// `FRAMING_HTTP2`.
    pub walks: [FrameWalk; 2],
}
assert_size!(FdInfo, 104);

impl FdInfo {
    pub const fn new(service: u32, role: u32, conn: u64) -> Self {
        Self {
            service,
            role,
            conn,
            last_dir: 0,
            capture: 0,
            framing: FRAMING_NONE,
            _pad: 0,
            walks: [FrameWalk::START; 2],
        }
    }
}

/// Each syscall's first bytes (and last, and more under a budget).
pub const FRAMING_NONE: u32 = 0;
/// HTTP/2: each syscall's frame headers and the payloads of the frames the
/// connection's state depends on, found by following the frames (the
/// client's preface was seen at the start of a read or of a write).
pub const FRAMING_HTTP2: u32 = 1;
/// HTTP/2 whose frames could no longer be followed (more frames in one
/// syscall than a probe walks): lengths only from then on.
pub const FRAMING_LOST: u32 = 2;

/// Where one direction of an HTTP/2 connection stands between syscalls:
/// inside a frame's 9-octet header (`have < 9`), or inside its payload
/// (`left` octets still to come).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameWalk {
    /// Octets of the current frame's payload still to come.
    pub left: u32,
    /// The header's first four octets as read so far: length (24 bits)
    /// and type, big-endian.
    pub head: u32,
    /// Octets of the header read so far (9: in the payload).
    pub have: u32,
    /// The header's flags octet and stream (31 bits), as read so far.
    pub flags: u32,
    pub stream: u32,
    /// Inside a DATA frame: where its stream stands in its messages.
    pub messages: Messages,
    /// `messages` came from `STREAM_MESSAGES` (to be updated or removed
    /// when the frame ends).
    pub stored: u32,
}
assert_size!(FrameWalk, 36);

/// Where one direction of an HTTP/2 stream stands in the length-prefixed
/// messages its DATA frames carry (gRPC's: a flag octet and a 4-octet
/// big-endian length, then the message): the probes copy each prefix so
/// that the agent can count the messages, and skip the rest. On a stream
/// that is not gRPC the first "prefix" is the body's first 5 octets, whose
/// "length" then skips the rest of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Messages {
    /// Octets of the current message still to come.
    pub left: u32,
    /// Octets of the current prefix read so far (0: at a prefix's start
    /// once `left` is 0).
    pub have: u32,
    /// The prefix's length octets read so far.
    pub len: u32,
}
assert_size!(Messages, 12);

/// An HTTP/2 stream of a connection, one direction (`side`: 0 received,
/// 1 sent).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub conn: u64,
    pub stream: u32,
    pub side: u32,
}
assert_size!(StreamKey, 16);

/// A frame type no HTTP/2 frame has, whose payload is copied: the walk
/// starts with the client's 24-octet preface as one such pseudo-frame.
pub const FRAME_PREFACE: u32 = 0xff;

impl FrameWalk {
    /// At a frame's start.
    pub const START: Self = Self {
        left: 0,
        head: 0,
        have: 0,
        flags: 0,
        stream: 0,
        messages: Messages {
            left: 0,
            have: 0,
            len: 0,
        },
        stored: 0,
    };
    /// Before the client's preface (`PRI * HTTP/2.0...`, 24 octets).
    pub const PREFACE: Self = Self {
        left: 24,
        head: (24 << 8) | FRAME_PREFACE,
        have: 9,
        ..Self::START
    };
}

/// Top bit of connection ids the agent assigns when it seeds from `/proc`.
pub const CONN_SEEDED: u64 = 1 << 63;
/// Bit of the connection ids of TLS connections (seen through the OpenSSL
/// uprobes): the id is this bit or'ed with the `SSL*` (a user address,
/// below bit 57).
pub const CONN_TLS: u64 = 1 << 62;

/// A TLS connection: the process and its OpenSSL `SSL*`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}
assert_size!(TlsKey, 16);

/// A connection of a process (`FdInfo::conn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub tgid: u32,
    pub _pad: u32,
    pub conn: u64,
}
assert_size!(ConnKey, 16);

/// Arguments of an OpenSSL read or write call, kept for its return.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// `SSL_read_ex`/`SSL_write_ex`: where the byte count is written
    /// (their return value is 1 or 0); 0 for `SSL_read`/`SSL_write`, which
    /// return the count.
    pub len_ptr: u64,
}
assert_size!(TlsCall, 24);

/// A listening port in one network namespace. `netns` is the namespace's
/// inode number, or 0 where the kernel's layout could not be resolved (then
/// ports are matched across namespaces).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub netns: u32,
    pub port: u16,
    pub _pad: u16,
}
assert_size!(ListenKey, 8);

/// Connection direction, as seen from the tracked service.
pub const DIRECTION_INBOUND: u32 = 1;
pub const DIRECTION_OUTBOUND: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockOwner {
    pub service: u32,
    /// One of the `DIRECTION_*` constants.
    pub direction: u32,
}
assert_size!(SockOwner, 8);

/// A TCP connection's addresses as the `sock:inet_sock_set_state` tracepoint
/// reports them: ports in host byte order, IPv4 addresses as IPv4-mapped IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TupleKey {
    pub sport: u16,
    pub dport: u16,
    pub _pad: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}
assert_size!(TupleKey, 40);

/// The IPv4-mapped IPv6 form of an IPv4 address (`::ffff:a.b.c.d`).
pub const fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Words of a request line a [`CaptureRoute`] compares: its first 48 bytes.
pub const CAPTURE_ROUTE_WORDS: usize = 6;

/// A request-line prefix (`POST /api/v1/agents/`) whose responses are
/// copied from their start, up to `budget` bytes: compared word by word
/// under a mask, so the probes' comparison has a fixed shape.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CaptureRoute {
    /// The prefix's bytes, as little-endian words, zero past its end.
    pub words: [u64; CAPTURE_ROUTE_WORDS],
    /// Which bits of each word the prefix covers.
    pub masks: [u64; CAPTURE_ROUTE_WORDS],
    /// The prefix's length: a request needs at least this many bytes.
    pub len: u32,
    /// Response bytes copied from their start.
    pub budget: u32,
}
assert_size!(CaptureRoute, 104);

impl CaptureRoute {
    /// A route for `prefix` (cut to `8 * CAPTURE_ROUTE_WORDS` bytes, which
    /// only widens what it matches).
    pub fn new(prefix: &[u8], budget: u32) -> Self {
        let mut words = [0u64; CAPTURE_ROUTE_WORDS];
        let mut masks = [0u64; CAPTURE_ROUTE_WORDS];
        let len = prefix.len().min(8 * CAPTURE_ROUTE_WORDS);
        let mut i = 0;
        while i < len {
            let shift = 8 * (i % 8);
            words[i / 8] |= u64::from(prefix[i]) << shift;
            masks[i / 8] |= 0xff << shift;
            i += 1;
        }
        Self {
            words,
            masks,
            len: len as u32,
            budget,
        }
    }

    /// Whether a request whose first bytes are `line` (little-endian
    /// words), `captured` of them real, starts with the prefix.
    #[inline(always)]
    pub fn matches(&self, line: &[u64; CAPTURE_ROUTE_WORDS], captured: u32) -> bool {
        if captured < self.len {
            return false;
        }
        let mut i = 0;
        while i < CAPTURE_ROUTE_WORDS {
            if line[i] & self.masks[i] != self.words[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request line as the probes read it: little-endian words.
    fn words(line: &[u8]) -> [u64; CAPTURE_ROUTE_WORDS] {
        let mut out = [0u64; CAPTURE_ROUTE_WORDS];
        for (i, byte) in line.iter().take(8 * CAPTURE_ROUTE_WORDS).enumerate() {
            out[i / 8] |= u64::from(*byte) << (8 * (i % 8));
        }
        out
    }

    #[test]
    fn a_route_matches_request_lines_that_start_with_its_prefix() {
        let route = CaptureRoute::new(b"POST /api/v1/agents/", 16_384);
        let line = b"POST /api/v1/agents/planner/invoke HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(route.matches(&words(line), line.len() as u32));
        assert!(!route.matches(&words(b"GET /api/v1/agents/planner HTTP/1.1\r\n"), 40));
        assert!(!route.matches(&words(b"POST /api/v1/agent/x HTTP/1.1\r\n"), 33));
        // Fewer captured bytes than the prefix: stale bytes never match.
        assert!(!route.matches(&words(line), 10));
        // A prefix longer than the words compares its first 48 bytes.
        let long = [b'a'; 60];
        let route = CaptureRoute::new(&long, 1);
        assert_eq!(route.len, 48);
        assert!(route.matches(&words(&long), 60));
        // The empty prefix matches every request.
        assert!(CaptureRoute::new(b"", 1).matches(&words(b"GET / HTTP/1.1"), 14));
    }
}
