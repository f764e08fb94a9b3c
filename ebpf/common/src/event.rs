//! Records the probes write to the `EVENTS` ring buffer. Each starts with a
//! [`Header`] whose `kind` says which record follows.
use crate::{
    assert_size,
    maps::{SockOwner, TupleKey},
};

pub const KIND_TCP_STATE: u32 = 1;
pub const KIND_PROCESS_FORK: u32 = 2;
pub const KIND_PROCESS_EXIT: u32 = 3;
pub const KIND_PROCESS_EXEC: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    /// The current process when the probe ran (unrelated to the socket in
    /// softirq context).
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: monotonic time since boot.
    pub ts_ns: u64,
}
assert_size!(Header, 16);

/// The connection was adopted from `PREEXISTING` (open before loupe attached).
pub const TCP_FLAG_ADOPTED: u32 = 1;

/// A state change of a TCP socket owned by a tracked service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpState {
    pub header: Header,
    /// Kernel address of the socket: its identity while it lives.
    pub skaddr: u64,
    pub owner: SockOwner,
    pub oldstate: u32,
    pub newstate: u32,
    /// `TCP_FLAG_*` bits.
    pub flags: u32,
    /// Inode number of the socket's network namespace (in `LISTEN` and
    /// passive-open records; 0 elsewhere or when unknown).
    pub netns: u32,
    pub tuple: TupleKey,
}
assert_size!(TcpState, 88);

/// A tracked process forked a child (`KIND_PROCESS_FORK`; the probe already
/// tracks the child), replaced its program (`KIND_PROCESS_EXEC`: its fds
/// marked close-on-exec are gone) or its main thread exited
/// (`KIND_PROCESS_EXIT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub header: Header,
    /// The child (fork), or the process itself (exec, exit).
    pub pid: u32,
    pub service: u32,
}
assert_size!(Process, 24);
