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
/// Switches the agent sets for the probes, indexed by the `SWITCH_*` constants.
pub const SWITCHES: &str = "SWITCHES";
/// Event ring buffer shared by all probes.
pub const EVENTS: &str = "EVENTS";
/// Per service (by index): response bytes copied in full from the start of
/// every response (route rules read response bodies), else 0.
pub const SERVICE_CAPTURE: &str = "SERVICE_CAPTURE";
/// Services with their own `SERVICE_CAPTURE` slot (others capture heads only).
pub const SERVICE_CAPTURE_LEN: u32 = 256;
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
pub const COUNTERS_LEN: u32 = 2;

/// Non-zero while `PREEXISTING` holds entries: otherwise the TCP state probe
/// skips the lookup on the state changes of sockets nobody tracks.
pub const SWITCH_PREEXISTING: u32 = 0;
/// Non-zero: the data probes capture inbound connections (HTTP served).
pub const SWITCH_CAPTURE_INBOUND: u32 = 1;
/// Non-zero: the data probes capture outbound connections too.
pub const SWITCH_CAPTURE_OUTBOUND: u32 = 2;
pub const SWITCHES_LEN: u32 = 3;

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
    /// fields): reset from `SERVICE_CAPTURE` when a request starts, raised
    /// by the agent for one connection, consumed by the probes.
    pub capture: u32,
}
assert_size!(FdInfo, 24);

impl FdInfo {
    pub const fn new(service: u32, role: u32, conn: u64) -> Self {
        Self {
            service,
            role,
            conn,
            last_dir: 0,
            capture: 0,
        }
    }
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
