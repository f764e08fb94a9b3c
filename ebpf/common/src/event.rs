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
/// [`DataHeader`] followed by `captured` bytes.
pub const KIND_DATA: u32 = 5;
/// [`DataHeader`] alone: the fd of a captured connection was closed.
pub const KIND_CLOSE: u32 = 6;

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

/// Data read by the tracked process (a request, for a server).
pub const DIR_RX: u16 = 1;
/// Data written by the tracked process (a response, for a server).
pub const DIR_TX: u16 = 2;

/// The bytes are the last ones the syscall transferred, not the first.
pub const DATA_TAIL: u16 = 1;
/// No bytes were copied (`sendfile`, or an unreadable buffer).
pub const DATA_NONE: u16 = 2;
/// A second record of the same syscall (its tail, for a write longer than
/// the capture); its `len` was counted with the first.
pub const DATA_SAME_SYSCALL: u16 = 4;
/// More records of the same syscall follow on this connection: the next
/// piece of a write copied in pieces, or the syscall's tail.
pub const DATA_MORE: u16 = 8;
/// The bytes continue those of the previous record (same write, next
/// offset); its `len` was counted with the first.
pub const DATA_CONTINUED: u16 = 16;
/// The connection is one the process opened (a client's), not accepted.
pub const DATA_OUTBOUND: u16 = 32;

/// The bytes are pieces of the syscall found by following its HTTP/2
/// frames (`FRAMING_HTTP2`): each a [`Piece`] and its `len` bytes, one after
/// the other (unaligned). A syscall with more than `FRAMES_ROOM` bytes to
/// copy takes several records (`DATA_MORE`, `DATA_CONTINUED`); with
/// `DATA_NONE`, the frames could no longer be followed.
pub const DATA_FRAMES: u16 = 64;

/// Where the bytes of one piece of a [`DATA_FRAMES`] record were in the
/// syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the syscall's bytes.
    pub at: u32,
    pub len: u32,
}
assert_size!(Piece, 8);

/// Bytes of pieces one `DATA_FRAMES` record holds at most.
pub const FRAMES_ROOM: usize = 8192;
/// Most steps (a frame header, a run of payload, the next buffer of a
/// vectored call) a probe takes through one syscall; beyond, the
/// connection's frames are lost (`FRAMING_LOST`). A 64 KiB read of empty
/// frames takes 7,282; a `writev` of 1,024 buffers (the most Linux takes)
/// holding 300 small frames about 1,700.
pub const FRAMES_STEPS: u32 = 16_384;
/// Most bytes of a frame payload copied in one step.
pub const FRAMES_COPY: usize = FRAMES_ROOM / 2;

/// Most bytes copied from one syscall: a request line with its headers, or
/// a status line with its headers, and a small body (a login form).
pub const CAPTURE_MAX: usize = 2048;
/// Records one write may be copied in under a raised capture level.
pub const CAPTURE_PIECES: usize = 8;
/// Reads and writes up to this size use a smaller ring-buffer record.
pub const CAPTURE_SMALL: usize = 256;
/// Room of the record that gathers the first `CAPTURE_MAX` bytes of a
/// vectored syscall across its buffers: each buffer is copied at an offset
/// below `CAPTURE_MAX` with a length of at most `CAPTURE_MAX`, which is
/// what the verifier can bound.
pub const CAPTURE_GATHER: usize = 2 * CAPTURE_MAX;
/// Bytes copied from the end of a write longer than the capture (where a
/// chunked body ends, `0\r\n\r\n`).
pub const CAPTURE_TAIL: usize = 16;
/// Bytes copied from the end of a long read on a client connection (a
/// database's last messages: command tag, ready for query).
pub const CAPTURE_CLIENT_TAIL: usize = 64;

/// The `fd` of records from the TLS uprobes (the `SSL*` is in `conn`).
pub const TLS_FD: u32 = u32::MAX;

/// Bytes transferred on a connection by one syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub header: Header,
    /// The connection (`FdInfo::conn`), unique within the process.
    pub conn: u64,
    /// Bytes the syscall transferred (its return value).
    pub len: u64,
    pub fd: u32,
    pub service: u32,
    /// `DIR_RX` or `DIR_TX` (0 in `KIND_CLOSE` records).
    pub dir: u16,
    /// `DATA_*` bits.
    pub flags: u16,
    /// Bytes that follow the header.
    pub captured: u32,
}
assert_size!(DataHeader, 48);

/// A data record with room for `N` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Data<const N: usize> {
    pub head: DataHeader,
    pub bytes: [u8; N],
}
